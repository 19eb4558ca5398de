//! Live per-server state that outlives a snapshot: admin state, health,
//! effective weight, counters and check results, keyed by (backend, server)
//! name so that reloads keep it.
//! Invariant: the request path only touches atomics here; the registry's
//! mutex is taken when a snapshot is built, never per request.

mod counters;
mod health;
mod process;
mod registry;
mod tls;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use counters::{Counters, CountersSnapshot, InFlight, StatusClass, TIME_BUCKETS};
pub use health::{CheckOutcome, Health, HealthTracker};
pub use process::ProcessCounters;
pub use registry::StateRegistry;
pub use tls::{Alpn, HandshakeFailure, TlsCounters, TlsCountersSnapshot, TlsVersion};

use crate::model::{AdminState, BackendName, ServerName};

/// Milliseconds since the Unix epoch, the clock of every timestamp here.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything live about one server. Shared as `Arc<ServerState>`; a clone of
/// the `Arc` costs one atomic increment.
#[derive(Debug)]
pub struct ServerState {
    pub backend: BackendName,
    pub server: ServerName,
    admin: AtomicU8,
    /// The admin state the config last asked for; a runtime change wins until
    /// the config's line changes.
    config_admin: AtomicU8,
    health: AtomicU8,
    /// Whether the server has an active check at all (else health is "no check").
    is_checked: AtomicBool,
    /// Operator switch: checks paused from the admin API.
    is_check_disabled: AtomicBool,
    /// Left MAINT with checks running: takes no traffic until the next
    /// check has re-evaluated its health.
    is_awaiting_check: AtomicBool,
    /// Effective weight; the config's value unless an operator changed it.
    weight: AtomicU32,
    config_weight: AtomicU32,
    /// Unix ms when DRAIN began, 0 when not draining.
    drain_since: AtomicU64,
    /// The backend's `drain_to_maint`: DRAIN turns into MAINT by itself once
    /// no request is active.
    drain_to_maint: AtomicBool,
    /// Unix ms of the last admin state or health change.
    last_change: AtomicU64,
    /// Unix ms when the server last went DOWN, 0 when UP.
    down_since: AtomicU64,
    /// Total milliseconds spent DOWN before `down_since`.
    downtime_ms: AtomicU64,
    /// UP -> DOWN transitions.
    transitions_down: AtomicU64,
    /// Consecutive connection failures seen by the proxy (passive health).
    consecutive_conn_failures: AtomicU32,
    pub counters: Arc<Counters>,
    check: Mutex<CheckStatus>,
}

/// The last health check, as the stats page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckStatus {
    /// `None` until the first check completes.
    pub last: Option<CheckOutcome>,
    pub duration: Duration,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    /// Why the server is DOWN when not because of a check (`dns`, `passive`).
    pub reason: Option<String>,
}

impl ServerState {
    pub fn new(backend: BackendName, server: ServerName, admin: AdminState, weight: u32) -> Self {
        ServerState {
            backend,
            server,
            admin: AtomicU8::new(encode_admin(admin)),
            config_admin: AtomicU8::new(encode_admin(admin)),
            health: AtomicU8::new(encode_health(Health::Up)),
            is_checked: AtomicBool::new(false),
            is_check_disabled: AtomicBool::new(false),
            is_awaiting_check: AtomicBool::new(false),
            weight: AtomicU32::new(weight),
            config_weight: AtomicU32::new(weight),
            drain_since: AtomicU64::new(if admin == AdminState::Drain {
                now_millis()
            } else {
                0
            }),
            drain_to_maint: AtomicBool::new(false),
            last_change: AtomicU64::new(now_millis()),
            down_since: AtomicU64::new(0),
            downtime_ms: AtomicU64::new(0),
            transitions_down: AtomicU64::new(0),
            consecutive_conn_failures: AtomicU32::new(0),
            counters: Arc::default(),
            check: Mutex::new(CheckStatus::default()),
        }
    }

    pub fn admin_state(&self) -> AdminState {
        decode_admin(self.admin.load(Ordering::Relaxed))
    }

    /// Sets the admin state; returns the previous one. DRAIN on a server
    /// with `drain_to_maint` and no active request goes on to MAINT at once.
    pub fn set_admin_state(&self, state: AdminState) -> AdminState {
        let old = decode_admin(self.admin.swap(encode_admin(state), Ordering::AcqRel));
        if old != state {
            self.last_change.store(now_millis(), Ordering::Relaxed);
            let since = if state == AdminState::Drain {
                now_millis()
            } else {
                0
            };
            self.drain_since.store(since, Ordering::Relaxed);
        }
        if old == AdminState::Maint && state != AdminState::Maint {
            // Checks were stopped; the health they left may be stale.
            let is_checking = self.is_checked() && !self.is_check_disabled();
            self.is_awaiting_check.store(is_checking, Ordering::Relaxed);
        }
        if state == AdminState::Drain {
            self.finish_drain();
        }
        old
    }

    /// Follows the backend's `drain_to_maint`; a server already draining with
    /// no active request goes to MAINT at once when it is turned on.
    pub fn set_drain_to_maint(&self, enabled: bool) {
        self.drain_to_maint.store(enabled, Ordering::Relaxed);
        if enabled {
            self.finish_drain();
        }
    }

    /// Moves DRAIN to MAINT if `drain_to_maint` is on and no request is
    /// active; returns whether it did. Called when DRAIN begins and whenever
    /// a request ends. Only DRAIN is replaced, so a state an operator set
    /// meanwhile is never overwritten.
    pub fn finish_drain(&self) -> bool {
        if !self.drain_to_maint.load(Ordering::Relaxed) || self.counters.active() != 0 {
            return false;
        }
        let drained = self
            .admin
            .compare_exchange(
                encode_admin(AdminState::Drain),
                encode_admin(AdminState::Maint),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if drained {
            self.last_change.store(now_millis(), Ordering::Relaxed);
            self.drain_since.store(0, Ordering::Relaxed);
            tracing::info!(
                backend = %self.backend,
                server = %self.server,
                "server DRAIN -> MAINT: drained, no request active"
            );
        }
        drained
    }

    pub fn health(&self) -> Health {
        decode_health(self.health.load(Ordering::Relaxed))
    }

    /// Records a health change; returns true if it flipped.
    pub fn set_health(&self, health: Health) -> bool {
        let old = decode_health(self.health.swap(encode_health(health), Ordering::AcqRel));
        if old == health {
            return false;
        }
        let now = now_millis();
        self.last_change.store(now, Ordering::Relaxed);
        match health {
            Health::Down => {
                self.transitions_down.fetch_add(1, Ordering::Relaxed);
                self.down_since.store(now, Ordering::Relaxed);
            }
            Health::Up => {
                let since = self.down_since.swap(0, Ordering::Relaxed);
                if since != 0 {
                    self.downtime_ms
                        .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
                }
                self.consecutive_conn_failures.store(0, Ordering::Relaxed);
            }
        }
        true
    }

    pub fn is_checked(&self) -> bool {
        self.is_checked.load(Ordering::Relaxed)
    }

    pub fn set_checked(&self, checked: bool) {
        self.is_checked.store(checked, Ordering::Relaxed);
    }

    pub fn is_check_disabled(&self) -> bool {
        self.is_check_disabled.load(Ordering::Relaxed)
    }

    pub fn set_check_disabled(&self, disabled: bool) {
        self.is_check_disabled.store(disabled, Ordering::Relaxed);
        if disabled {
            // No check is coming to re-evaluate it.
            self.end_awaiting_check();
        }
    }

    /// Whether the server left MAINT and waits for a check before it takes
    /// traffic again.
    pub fn is_awaiting_check(&self) -> bool {
        self.is_awaiting_check.load(Ordering::Relaxed)
    }

    /// A check re-evaluated the server's health after MAINT (or checks
    /// stopped): its health decides again.
    pub fn end_awaiting_check(&self) {
        self.is_awaiting_check.store(false, Ordering::Relaxed);
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Operator weight change; returns the previous weight.
    pub fn set_weight(&self, weight: u32) -> u32 {
        self.weight.swap(weight, Ordering::AcqRel)
    }

    /// Unix ms when DRAIN began.
    pub fn drain_since(&self) -> Option<u64> {
        non_zero(self.drain_since.load(Ordering::Relaxed))
    }

    pub fn last_change(&self) -> u64 {
        self.last_change.load(Ordering::Relaxed)
    }

    pub fn transitions_down(&self) -> u64 {
        self.transitions_down.load(Ordering::Relaxed)
    }

    /// Total time spent DOWN, including the current outage.
    pub fn downtime(&self) -> Duration {
        let past = self.downtime_ms.load(Ordering::Relaxed);
        let current = non_zero(self.down_since.load(Ordering::Relaxed))
            .map_or(0, |since| now_millis().saturating_sub(since));
        Duration::from_millis(past + current)
    }

    /// Records a connection failure; returns the consecutive count.
    pub fn record_conn_failure(&self) -> u32 {
        self.consecutive_conn_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    /// Records a successful connection.
    pub fn record_conn_success(&self) {
        if self.consecutive_conn_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_conn_failures.store(0, Ordering::Relaxed);
        }
    }

    pub fn check_status(&self) -> CheckStatus {
        self.check.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Replaces the check status (by the checker task, never per request).
    pub fn update_check_status(&self, update: impl FnOnce(&mut CheckStatus)) {
        if let Ok(mut status) = self.check.lock() {
            update(&mut status);
        }
    }

    /// The admin state the config last asked for.
    pub fn config_admin_state(&self) -> AdminState {
        decode_admin(self.config_admin.load(Ordering::Relaxed))
    }

    /// The weight the config last asked for.
    pub fn config_weight(&self) -> u32 {
        self.config_weight.load(Ordering::Relaxed)
    }

    /// Applies the config's admin state and weight on reload: they win only
    /// when the config's own value changed since the last build. Returns
    /// whether the weight changed.
    pub fn apply_config(&self, admin: AdminState, weight: u32) -> bool {
        let old_admin = decode_admin(
            self.config_admin
                .swap(encode_admin(admin), Ordering::AcqRel),
        );
        if old_admin != admin {
            self.set_admin_state(admin);
        }
        let old_weight = self.config_weight.swap(weight, Ordering::AcqRel);
        old_weight != weight && self.set_weight(weight) != weight
    }
}

fn non_zero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn encode_admin(s: AdminState) -> u8 {
    match s {
        AdminState::Ready => 0,
        AdminState::Drain => 1,
        AdminState::Maint => 2,
    }
}

fn decode_admin(v: u8) -> AdminState {
    match v {
        0 => AdminState::Ready,
        1 => AdminState::Drain,
        _ => AdminState::Maint,
    }
}

fn encode_health(h: Health) -> u8 {
    match h {
        Health::Up => 0,
        Health::Down => 1,
    }
}

fn decode_health(v: u8) -> Health {
    match v {
        0 => Health::Up,
        _ => Health::Down,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ServerState {
        ServerState::new(
            BackendName::new("b"),
            ServerName::new("s"),
            AdminState::Ready,
            10,
        )
    }

    #[test]
    fn runtime_admin_state_survives_an_unchanged_config_line() {
        let s = server();
        s.set_admin_state(AdminState::Maint);
        s.apply_config(AdminState::Ready, 10);
        assert_eq!(s.admin_state(), AdminState::Maint);
        s.apply_config(AdminState::Drain, 10);
        assert_eq!(s.admin_state(), AdminState::Drain);
    }

    #[test]
    fn runtime_weight_survives_an_unchanged_config_weight() {
        let s = server();
        s.set_weight(3);
        s.apply_config(AdminState::Ready, 10);
        assert_eq!(s.weight(), 3);
        s.apply_config(AdminState::Ready, 20);
        assert_eq!(s.weight(), 20);
    }

    #[test]
    fn health_flips_count_transitions_and_downtime() {
        let s = server();
        assert!(s.set_health(Health::Down));
        assert!(!s.set_health(Health::Down));
        assert_eq!(s.transitions_down(), 1);
        assert!(s.set_health(Health::Up));
        assert_eq!(s.health(), Health::Up);
    }

    #[test]
    fn drain_to_maint_waits_for_the_last_active_request() {
        let s = server();
        s.set_drain_to_maint(true);
        let request = s.counters.begin();
        s.set_admin_state(AdminState::Drain);
        assert_eq!(s.admin_state(), AdminState::Drain);
        assert!(!s.finish_drain(), "a request is active");
        drop(request);
        assert!(s.finish_drain());
        assert_eq!(s.admin_state(), AdminState::Maint);
        assert_eq!(s.drain_since(), None);
        // Idle: DRAIN goes on to MAINT at once; other states are left alone.
        s.set_admin_state(AdminState::Drain);
        assert_eq!(s.admin_state(), AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        assert!(!s.finish_drain());
        assert_eq!(s.admin_state(), AdminState::Ready);
        // Off: DRAIN stays.
        s.set_drain_to_maint(false);
        s.set_admin_state(AdminState::Drain);
        assert_eq!(s.admin_state(), AdminState::Drain);
        s.set_drain_to_maint(true);
        assert_eq!(s.admin_state(), AdminState::Maint);
    }

    #[test]
    fn leaving_maint_awaits_a_check_only_when_checks_run() {
        let s = server();
        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        assert!(!s.is_awaiting_check(), "no check configured");
        s.set_checked(true);
        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Drain);
        assert!(s.is_awaiting_check());
        s.set_admin_state(AdminState::Ready);
        assert!(s.is_awaiting_check(), "DRAIN -> READY keeps waiting");
        s.set_check_disabled(true);
        assert!(!s.is_awaiting_check(), "no check is coming");
        s.set_admin_state(AdminState::Maint);
        s.set_admin_state(AdminState::Ready);
        assert!(!s.is_awaiting_check());
    }

    #[test]
    fn drain_records_its_start() {
        let s = server();
        assert_eq!(s.drain_since(), None);
        s.set_admin_state(AdminState::Drain);
        assert!(s.drain_since().is_some());
        s.set_admin_state(AdminState::Ready);
        assert_eq!(s.drain_since(), None);
    }
}
