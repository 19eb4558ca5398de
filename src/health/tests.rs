//! Scheduling and the health state machine, against a fake probe on paused
//! time: the runtime's clock only moves when every task waits, so the
//! timings asserted here are exact and free of real sleeps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::model::{AdminState, BackendName, CheckKind, CheckSpec, ServerName};
use crate::state::CheckOutcome;

const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Fail,
    Hang,
}

/// A probe that answers as told per address and records every call.
#[derive(Clone, Default)]
struct FakeProbe(Arc<Shared>);

#[derive(Default)]
struct Shared {
    modes: Mutex<HashMap<SocketAddr, Mode>>,
    calls: Mutex<Vec<(SocketAddr, Instant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl FakeProbe {
    fn set(&self, addr: SocketAddr, mode: Mode) {
        self.0.modes.lock().expect("modes").insert(addr, mode);
    }

    fn calls(&self, addr: SocketAddr) -> Vec<Instant> {
        let calls = self.0.calls.lock().expect("calls");
        calls
            .iter()
            .filter(|(a, _)| *a == addr)
            .map(|(_, t)| *t)
            .collect()
    }

    fn count(&self, addr: SocketAddr) -> usize {
        self.calls(addr).len()
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe for FakeProbe {
    async fn check(
        &self,
        addr: SocketAddr,
        _kind: &CheckKind,
        _host: &str,
        _tls: Option<&crate::upstream::UpstreamTls>,
    ) -> CheckOutcome {
        let shared = &self.0;
        shared
            .calls
            .lock()
            .expect("calls")
            .push((addr, Instant::now()));
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _guard = InFlight(&shared.in_flight);
        let mode = shared.modes.lock().expect("modes").get(&addr).copied();
        match mode.unwrap_or(Mode::Pass) {
            Mode::Pass => CheckOutcome::Passed { status: Some(200) },
            Mode::Fail => CheckOutcome::BadStatus { status: 500 },
            Mode::Hang => std::future::pending().await,
        }
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spec(rise: u32, fall: u32) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Tcp,
        interval: INTERVAL,
        timeout: Duration::from_millis(300),
        rise,
        fall,
    }
}

fn target(server: &str, port: u16, spec: CheckSpec) -> CheckTarget {
    let state = ServerState::new(
        BackendName::new("b"),
        ServerName::new(server),
        AdminState::Ready,
        1,
    );
    CheckTarget {
        state: Arc::new(state),
        addr: Some(addr(port)),
        spec,
        host: None,
        tls: None,
    }
}

struct Harness {
    probe: FakeProbe,
    targets: watch::Sender<Arc<Vec<CheckTarget>>>,
    shutdown: CancellationToken,
    checker: JoinHandle<()>,
}

fn start(targets: Vec<CheckTarget>) -> Harness {
    let probe = FakeProbe::default();
    let (tx, rx) = watch::channel(Arc::new(targets));
    let shutdown = CancellationToken::new();
    let checker = HealthChecker::with_probe(rx, shutdown.clone(), probe.clone());
    Harness {
        probe,
        targets: tx,
        shutdown,
        checker: tokio::spawn(checker.run()),
    }
}

impl Harness {
    fn reload(&self, targets: Vec<CheckTarget>) {
        self.targets.send_replace(Arc::new(targets));
    }
}

/// Lets (virtual) time pass until `cond` holds; panics after a virtual minute.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn falls_after_fall_failures_and_rises_after_rise_successes() {
    let t = target("s", 1, spec(2, 3));
    let (state, a) = (Arc::clone(&t.state), addr(1));
    let h = start(vec![t]);
    h.probe.set(a, Mode::Fail);
    until("checked", || state.is_checked()).await;
    assert_eq!(state.health(), Health::Up, "servers start UP");

    until("2 checks", || h.probe.count(a) == 2).await;
    assert_eq!(state.health(), Health::Up);
    until("3 checks", || h.probe.count(a) == 3).await;
    assert_eq!(state.health(), Health::Down);
    let status = state.check_status();
    assert_eq!(status.last, Some(CheckOutcome::BadStatus { status: 500 }));
    assert_eq!((status.consecutive_ok, status.consecutive_fail), (0, 3));

    h.probe.set(a, Mode::Pass);
    until("4 checks", || h.probe.count(a) == 4).await;
    assert_eq!(state.health(), Health::Down);
    until("5 checks", || h.probe.count(a) == 5).await;
    assert_eq!(state.health(), Health::Up);
    assert_eq!(state.check_status().consecutive_ok, 2);
}

#[tokio::test(start_paused = true)]
async fn first_check_is_spread_within_the_interval_then_every_interval() {
    let started = Instant::now();
    let h = start(vec![target("s", 1, spec(2, 3))]);
    until("4 checks", || h.probe.count(addr(1)) == 4).await;
    let calls = h.probe.calls(addr(1));
    assert!(
        calls[0] - started < INTERVAL,
        "first check at {:?}",
        calls[0] - started
    );
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= INTERVAL && gap <= INTERVAL + Duration::from_millis(2),
            "{gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_check_times_out_and_checks_never_overlap() {
    for timeout in [Duration::from_millis(300), Duration::from_millis(2500)] {
        let mut t = target("s", 1, spec(2, 3));
        t.spec.timeout = timeout;
        let state = Arc::clone(&t.state);
        let h = start(vec![t]);
        h.probe.set(addr(1), Mode::Hang);
        until("DOWN", || state.health() == Health::Down).await;
        assert_eq!(h.probe.count(addr(1)), 3);
        assert_eq!(h.probe.0.max_in_flight.load(Ordering::SeqCst), 1);
        let message = format!("timeout after {timeout:?}");
        assert_eq!(
            state.check_status().last,
            Some(CheckOutcome::Error { message })
        );
        let calls = h.probe.calls(addr(1));
        assert!(
            calls
                .windows(2)
                .all(|w| w[1] - w[0] >= INTERVAL.max(timeout))
        );
        h.shutdown.cancel();
        h.checker.await.expect("checker");
    }
}

#[tokio::test(start_paused = true)]
async fn maint_stops_checks_and_leaving_it_checks_at_once() {
    let t = target("s", 1, spec(2, 3));
    let (state, a) = (Arc::clone(&t.state), addr(1));
    let h = start(vec![t]);
    until("2 checks", || h.probe.count(a) == 2).await;

    state.set_admin_state(AdminState::Maint);
    let before = h.probe.count(a);
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(h.probe.count(a), before, "no check in MAINT");
    assert_eq!(state.health(), Health::Up, "MAINT keeps the last health");

    let resumed = Instant::now();
    state.set_admin_state(AdminState::Ready);
    until("a check after MAINT", || h.probe.count(a) == before + 1).await;
    assert!(Instant::now() - resumed <= INTERVAL);

    state.set_check_disabled(true);
    let before = h.probe.count(a);
    tokio::time::sleep(INTERVAL * 5).await;
    assert_eq!(h.probe.count(a), before, "no check while disabled");
    state.set_check_disabled(false);
    until("a check after enabling", || h.probe.count(a) == before + 1).await;
}

#[tokio::test(start_paused = true)]
async fn an_unresolved_server_is_down_for_dns_and_not_checked() {
    let mut t = target("s", 1, spec(2, 3));
    t.addr = None;
    let state = Arc::clone(&t.state);
    let h = start(vec![t]);
    until("DOWN", || state.health() == Health::Down).await;
    assert!(state.is_checked());
    assert_eq!(state.check_status().reason.as_deref(), Some(REASON_DNS));
    tokio::time::sleep(INTERVAL * 3).await;
    assert!(h.probe.0.calls.lock().expect("calls").is_empty());

    // Resolved: checked from DOWN, so it needs `rise` successes.
    let mut resolved = target("s", 1, spec(2, 3));
    resolved.state = Arc::clone(&state);
    h.reload(vec![resolved]);
    until("2 checks", || h.probe.count(addr(1)) == 2).await;
    assert_eq!(state.health(), Health::Up);
    assert_eq!(state.check_status().reason, None);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_target_keeps_its_counters_across_reloads() {
    let t = target("s", 1, spec(2, 3));
    let (state, a) = (Arc::clone(&t.state), addr(1));
    let h = start(vec![t.clone()]);
    h.probe.set(a, Mode::Fail);
    until("2 checks", || h.probe.count(a) == 2).await;
    h.reload(vec![t.clone()]);
    until("3 checks", || h.probe.count(a) == 3).await;
    assert_eq!(state.health(), Health::Down, "the third failure counts");
}

#[tokio::test(start_paused = true)]
async fn a_changed_spec_restarts_the_check_and_keeps_the_server_checked() {
    let t = target("s", 1, spec(2, 3));
    let (state, a) = (Arc::clone(&t.state), addr(1));
    let h = start(vec![t.clone()]);
    h.probe.set(a, Mode::Fail);
    until("2 checks", || h.probe.count(a) == 2).await;

    let mut changed = t.clone();
    changed.spec.timeout = Duration::from_millis(400);
    h.reload(vec![changed]);
    until("4 checks", || h.probe.count(a) == 4).await;
    assert_eq!(
        state.health(),
        Health::Up,
        "counters restart with the new spec"
    );
    assert!(state.is_checked());
    until("5 checks", || h.probe.count(a) == 5).await;
    assert_eq!(state.health(), Health::Down);
    assert_eq!(h.probe.0.max_in_flight.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_loses_its_check_is_up_and_unchecked() {
    let (t, other) = (target("s", 1, spec(2, 1)), target("o", 2, spec(2, 1)));
    let state = Arc::clone(&t.state);
    let h = start(vec![t, other.clone()]);
    h.probe.set(addr(1), Mode::Fail);
    until("DOWN", || state.health() == Health::Down).await;

    h.reload(vec![other]);
    until("unchecked", || !state.is_checked()).await;
    assert_eq!(state.health(), Health::Up, "no check counts as UP");
    assert_eq!(state.check_status(), CheckStatus::default());
    let before = h.probe.count(addr(1));
    until("3 checks of the other", || h.probe.count(addr(2)) >= 3).await;
    assert_eq!(h.probe.count(addr(1)), before);
}

#[tokio::test(start_paused = true)]
async fn passive_down_is_taken_over_and_rise_counts_from_it() {
    let t = target("s", 1, spec(2, 3));
    let (state, a) = (Arc::clone(&t.state), addr(1));
    let h = start(vec![t]);
    until("1 check", || h.probe.count(a) == 1).await;
    state.set_health(Health::Down);
    until("2 checks", || h.probe.count(a) == 2).await;
    assert_eq!(state.health(), Health::Down);
    until("3 checks", || h.probe.count(a) == 3).await;
    assert_eq!(state.health(), Health::Up);
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_every_task_even_mid_check() {
    let h = start(vec![target("s", 1, spec(2, 3)), target("o", 2, spec(2, 3))]);
    h.probe.set(addr(1), Mode::Hang);
    until("a hanging check", || {
        h.probe.0.in_flight.load(Ordering::SeqCst) == 1
    })
    .await;
    h.shutdown.cancel();
    h.checker.await.expect("checker");
    assert_eq!(h.probe.0.in_flight.load(Ordering::SeqCst), 0);
}
