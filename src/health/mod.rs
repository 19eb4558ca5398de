//! Active health checks. Owns `HealthChecker`, which runs one task per checked
//! server and writes what it sees into the server's `state::ServerState`.
//!
//! Invariants:
//! - one checker task per (backend, server) name at a time; a task is replaced
//!   only after the old one has ended, so two tasks never write one server;
//! - a task whose target is unchanged by a reload keeps running, so its
//!   rise/fall counters carry over;
//! - checks touch only the server state's atomics and its check mutex, never
//!   anything on the request path; every task is tracked and ends on shutdown.
//!
//! Semantics, as HAProxy:
//! - servers start UP (a new `ServerState` is UP); checks take them DOWN after
//!   `fall` consecutive failures and back UP after `rise` successes;
//! - a server whose check is removed is "no check", which counts as UP;
//! - a server whose address does not resolve is kept DOWN with reason `dns`;
//! - while a server is in MAINT (or its checks are disabled by an operator)
//!   no check runs; the task looks again every interval. On leaving MAINT the
//!   health the checks left may be stale, so the server takes no traffic
//!   (`ServerState::is_awaiting_check`) until the next check, within one
//!   interval of the change, re-evaluates it: a pass lets an UP server take
//!   traffic again, a failure takes it DOWN at once (as HAProxy does on
//!   leaving maintenance) and `rise` passes bring it back. A server that was
//!   DOWN before MAINT still needs `rise` passes.
//! - a change made elsewhere (passive health marking a server DOWN) is taken
//!   over before the next check, so `rise` counts from it;
//! - shutdown stops the tasks and leaves every server's state as it is.

mod probe;
mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::upstream::UpstreamTls;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use probe::{BODY_LIMIT, NetProbe, Probe, USER_AGENT_VALUE};
pub use task::REASON_DNS;

use crate::model::{BackendName, CheckSpec, ServerName};
use crate::state::{CheckStatus, Health, ServerState};
use task::ServerCheck;

/// One server to check, as the runtime describes it after each reload.
#[derive(Clone, Debug)]
pub struct CheckTarget {
    /// Where results go.
    pub state: Arc<ServerState>,
    /// `None`: unresolved (DNS); the server is kept DOWN with reason `dns`.
    pub addr: Option<SocketAddr>,
    pub spec: CheckSpec,
    /// `Host` header to send: the check's own host, else the backend's host;
    /// `None` sends the address.
    pub host: Option<Box<str>>,
    /// TLS to speak, as the backend's requests do.
    pub tls: Option<UpstreamTls>,
}

impl CheckTarget {
    fn key(&self) -> (BackendName, ServerName) {
        (self.state.backend.clone(), self.state.server.clone())
    }

    /// Whether a running check of `self` also serves `other` unchanged.
    fn is_same_check(&self, other: &CheckTarget) -> bool {
        Arc::ptr_eq(&self.state, &other.state)
            && self.addr == other.addr
            && self.spec == other.spec
            && self.host == other.host
            && self.tls.as_ref().map(|t| &t.name) == other.tls.as_ref().map(|t| &t.name)
    }
}

/// Runs every server's check; follows new target lists from the watch
/// channel until shutdown.
pub struct HealthChecker<P = NetProbe> {
    targets: watch::Receiver<Arc<Vec<CheckTarget>>>,
    shutdown: CancellationToken,
    probe: Arc<P>,
}

impl HealthChecker {
    pub fn new(
        targets: watch::Receiver<Arc<Vec<CheckTarget>>>,
        shutdown: CancellationToken,
    ) -> Self {
        HealthChecker::with_probe(targets, shutdown, NetProbe)
    }
}

/// A running checker task and what it checks.
struct Running {
    target: CheckTarget,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl<P: Probe> HealthChecker<P> {
    /// A checker that probes with `probe` (tests inject a fake here).
    pub fn with_probe(
        targets: watch::Receiver<Arc<Vec<CheckTarget>>>,
        shutdown: CancellationToken,
        probe: P,
    ) -> Self {
        HealthChecker {
            targets,
            shutdown,
            probe: Arc::new(probe),
        }
    }

    /// Returns when `shutdown` is cancelled, after all its tasks ended.
    pub async fn run(mut self) {
        let tasks = TaskTracker::new();
        let mut running = HashMap::new();
        loop {
            let targets = Arc::clone(&self.targets.borrow_and_update());
            self.reconcile(&targets, &mut running, &tasks).await;
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                changed = self.targets.changed() => {
                    if changed.is_err() {
                        // No more reloads; keep checking the last list.
                        self.shutdown.cancelled().await;
                        break;
                    }
                }
            }
        }
        // Every task's token is a child of `shutdown`, so they are all ending.
        tasks.close();
        tasks.wait().await;
    }

    /// Stops the tasks whose target changed or left, then starts the new ones.
    async fn reconcile(
        &self,
        targets: &[CheckTarget],
        running: &mut HashMap<(BackendName, ServerName), Running>,
        tasks: &TaskTracker,
    ) {
        let wanted: HashMap<_, _> = targets.iter().map(|t| (t.key(), t)).collect();
        let gone: Vec<_> = running
            .iter()
            .filter(|(key, run)| {
                !wanted
                    .get(*key)
                    .is_some_and(|t| t.is_same_check(&run.target))
            })
            .map(|(key, _)| key.clone())
            .collect();
        let stopped: Vec<Running> = gone.iter().filter_map(|key| running.remove(key)).collect();
        for run in &stopped {
            run.cancel.cancel();
        }
        for run in stopped {
            if let Err(e) = run.handle.await {
                warn!(backend = %run.target.state.backend, server = %run.target.state.server,
                    "health check task failed: {e}");
            }
            let key = run.target.key();
            let is_taken_over = wanted
                .get(&key)
                .is_some_and(|t| Arc::ptr_eq(&t.state, &run.target.state));
            if !is_taken_over {
                release(&run.target.state);
            }
        }
        for (key, target) in wanted {
            if running.contains_key(&key) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            let check = ServerCheck {
                target: target.clone(),
                probe: Arc::clone(&self.probe),
                cancel: cancel.clone(),
            };
            let handle = tasks.spawn(check.run());
            let target = target.clone();
            running.insert(
                key,
                Running {
                    target,
                    cancel,
                    handle,
                },
            );
        }
    }
}

/// A server that lost its check: "no check", which counts as UP.
fn release(state: &ServerState) {
    state.set_checked(false);
    state.end_awaiting_check();
    state.update_check_status(|status| *status = CheckStatus::default());
    if state.set_health(Health::Up) {
        info!(backend = %state.backend, server = %state.server,
            "server DOWN -> UP: health check removed");
    }
}

#[cfg(test)]
mod tests;
