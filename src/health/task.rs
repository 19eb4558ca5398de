//! The check loop of one server: when to probe, and what a result does to the
//! server's health. A thin loop around `HealthTracker::observe`.
//! Invariant: at most one probe of a server is in flight; each is bounded by
//! the check's timeout, and the next starts only after it ended.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::CheckTarget;
use super::probe::Probe;
use crate::model::AdminState;
use crate::state::{CheckOutcome, Health, HealthTracker, ServerState};

/// Why an unresolved server is DOWN, as `CheckStatus::reason` shows it.
pub const REASON_DNS: &str = "dns";

/// Shortest check period, so a zero interval cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One server's checker task.
pub(super) struct ServerCheck<P> {
    pub target: CheckTarget,
    pub probe: Arc<P>,
    pub cancel: CancellationToken,
}

impl<P: Probe> ServerCheck<P> {
    /// Checks the server until cancelled.
    pub async fn run(self) {
        self.target.state.set_checked(true);
        match self.target.addr {
            Some(addr) => self.check_loop(addr).await,
            None => {
                mark_unresolved(&self.target.state);
                self.cancel.cancelled().await;
            }
        }
    }

    async fn check_loop(&self, addr: SocketAddr) {
        let state = &self.target.state;
        let spec = &self.target.spec;
        let host = self
            .target
            .host
            .as_deref()
            .map_or_else(|| addr.to_string(), str::to_owned);
        let period = spec.interval.max(MIN_INTERVAL);
        let mut next = Instant::now() + spread(period, state);
        let mut tracker = HealthTracker::new(state.health(), spec.rise, spec.fall);
        let mut is_paused = false;

        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep_until(next) => {}
            }
            if is_paused != checks_paused(state) {
                is_paused = !is_paused;
                log_pause(state, is_paused);
            }
            if !is_paused {
                // Passive health (or anything else) may have changed it meanwhile.
                tracker.force(state.health());
                // Only a probe started after MAINT ended may re-evaluate it.
                let is_recheck = state.is_awaiting_check();
                let Some((outcome, took)) = self.probe_once(addr, &host).await else {
                    return;
                };
                let is_ok = outcome.is_ok();
                record(state, &mut tracker, outcome, took);
                if is_recheck {
                    end_recheck(state, &mut tracker, is_ok);
                }
            }
            next = next_check(next, period, Instant::now());
        }
    }

    /// One probe bounded by the check's timeout; `None` when cancelled.
    async fn probe_once(&self, addr: SocketAddr, host: &str) -> Option<(CheckOutcome, Duration)> {
        let spec = &self.target.spec;
        let started = Instant::now();
        let probe = tokio::time::timeout(
            spec.timeout,
            self.probe
                .check(addr, &spec.kind, host, self.target.tls.as_ref()),
        );
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return None,
            result = probe => result.unwrap_or_else(|_| CheckOutcome::Error {
                message: format!("timeout after {:?}", spec.timeout),
            }),
        };
        Some((outcome, started.elapsed()))
    }
}

/// When the check after the one due at `due` runs: one `period` later, or,
/// if that moment has passed (a slow check), one `period` from `now`, so a
/// check never follows a timed-out one back to back.
fn next_check(due: Instant, period: Duration, now: Instant) -> Instant {
    let next = due + period;
    if next > now { next } else { now + period }
}

/// Whether checks of this server are stopped: MAINT, or paused by an operator.
fn checks_paused(state: &ServerState) -> bool {
    state.admin_state() == AdminState::Maint || state.is_check_disabled()
}

/// Feeds one result to the tracker and publishes it to the server's state.
fn record(
    state: &ServerState,
    tracker: &mut HealthTracker,
    outcome: CheckOutcome,
    duration: Duration,
) {
    let flip = tracker.observe(outcome.is_ok());
    let text = describe(&outcome);
    state.update_check_status(|status| {
        status.last = Some(outcome);
        status.duration = duration;
        status.consecutive_ok = tracker.consecutive_ok;
        status.consecutive_fail = tracker.consecutive_fail;
        status.reason = None;
    });
    if let Some(health) = flip {
        if state.set_health(health) {
            log_flip(state, health, &text);
        }
    }
}

/// The first check after MAINT decides: a pass lets traffic return (if
/// the server is UP), a failure takes it DOWN at once, so it needs `rise`
/// passes to come back (HAProxy's rule on leaving maintenance).
fn end_recheck(state: &ServerState, tracker: &mut HealthTracker, is_ok: bool) {
    if !is_ok {
        tracker.force(Health::Down);
        if state.set_health(Health::Down) {
            log_flip(state, Health::Down, "first check after MAINT failed");
        }
    }
    state.end_awaiting_check();
}

/// Keeps a server whose address does not resolve DOWN, with reason `dns`.
fn mark_unresolved(state: &ServerState) {
    state.update_check_status(|status| status.reason = Some(REASON_DNS.to_owned()));
    if state.set_health(Health::Down) {
        log_flip(state, Health::Down, "address not resolved");
    }
}

fn log_flip(state: &ServerState, health: Health, reason: &str) {
    let (backend, server) = (&state.backend, &state.server);
    match health {
        Health::Up => info!(%backend, %server, "server DOWN -> UP: {reason}"),
        Health::Down => warn!(%backend, %server, "server UP -> DOWN: {reason}"),
    }
}

fn log_pause(state: &ServerState, is_paused: bool) {
    let (backend, server) = (&state.backend, &state.server);
    if is_paused {
        info!(%backend, %server, "health checks stopped (maint or disabled)");
    } else {
        info!(%backend, %server, "health checks resumed, checking now");
    }
}

/// The check result as a log line shows it.
pub(super) fn describe(outcome: &CheckOutcome) -> String {
    match outcome {
        CheckOutcome::Passed { status: Some(s) } => format!("check passed, status {s}"),
        CheckOutcome::Passed { status: None } => "check passed".to_owned(),
        CheckOutcome::BadStatus { status } => format!("check failed, status {status}"),
        CheckOutcome::Error { message } => format!("check failed: {message}"),
    }
}

/// Offset of a server's first check within `period`, stable per name, so
/// that servers are not all checked at the same instant.
pub(super) fn spread(period: Duration, state: &ServerState) -> Duration {
    const STEPS: u64 = 1024;
    let mut hasher = DefaultHasher::new();
    state.backend.hash(&mut hasher);
    state.server.hash(&mut hasher);
    let step = u32::try_from(hasher.finish() % STEPS).unwrap_or(0);
    period * step / 1024
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendName, ServerName};

    fn server(name: &str) -> ServerState {
        ServerState::new(
            BackendName::new("b"),
            ServerName::new(name),
            AdminState::Ready,
            1,
        )
    }

    #[test]
    fn spread_stays_within_the_period_and_differs_by_name() {
        let period = Duration::from_secs(2);
        let offsets: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| spread(period, &server(n)))
            .collect();
        assert!(offsets.iter().all(|o| *o < period), "{offsets:?}");
        assert!(offsets.windows(2).any(|w| w[0] != w[1]), "{offsets:?}");
        assert_eq!(spread(period, &server("a")), offsets[0]);
    }

    #[test]
    fn next_check_keeps_the_beat_unless_a_check_overran_it() {
        let t0 = Instant::now();
        let period = Duration::from_secs(2);
        let check = |now_ms: u64, expected_ms: u64| {
            let now = t0 + Duration::from_millis(now_ms);
            let got = next_check(t0, period, now) - t0;
            assert_eq!(got, Duration::from_millis(expected_ms), "now {now_ms}ms");
        };
        check(0, 2000);
        check(1500, 2000);
        check(2000, 4000);
        check(3000, 5000);
    }

    #[test]
    fn describes_outcomes() {
        let check = |outcome: CheckOutcome, expected: &str| {
            assert_eq!(describe(&outcome), expected);
        };
        check(
            CheckOutcome::Passed { status: Some(200) },
            "check passed, status 200",
        );
        check(CheckOutcome::Passed { status: None }, "check passed");
        check(
            CheckOutcome::BadStatus { status: 503 },
            "check failed, status 503",
        );
        let message = "connect: connection refused".to_owned();
        check(
            CheckOutcome::Error { message },
            "check failed: connect: connection refused",
        );
    }

    #[test]
    fn record_publishes_status_and_flips_health() {
        let s = server("s");
        let mut tracker = HealthTracker::new(Health::Up, 2, 2);
        let bad = CheckOutcome::BadStatus { status: 500 };
        record(&s, &mut tracker, bad.clone(), Duration::from_millis(3));
        assert_eq!(s.health(), Health::Up);
        record(&s, &mut tracker, bad.clone(), Duration::from_millis(4));
        assert_eq!(s.health(), Health::Down);
        let status = s.check_status();
        assert_eq!(status.last, Some(bad));
        assert_eq!(status.duration, Duration::from_millis(4));
        assert_eq!((status.consecutive_ok, status.consecutive_fail), (0, 2));
        assert_eq!(status.reason, None);
    }

    #[test]
    fn the_first_check_after_maint_decides_at_once() {
        let s = server("s");
        let mut tracker = HealthTracker::new(Health::Up, 2, 3);
        s.set_checked(true);
        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        end_recheck(&s, &mut tracker, true);
        assert_eq!((s.health(), s.is_awaiting_check()), (Health::Up, false));

        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        end_recheck(&s, &mut tracker, false);
        assert_eq!((s.health(), s.is_awaiting_check()), (Health::Down, false));
        assert_eq!(tracker.health, Health::Down);
        assert_eq!(tracker.observe(true), None, "rise counts from here");
        assert_eq!(tracker.observe(true), Some(Health::Up));
    }

    #[test]
    fn unresolved_server_is_down_for_dns() {
        let s = server("s");
        mark_unresolved(&s);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(s.check_status().reason.as_deref(), Some(REASON_DNS));
    }
}
