//! The live snapshot and its single writer. Owns `Runtime` (one `ArcSwap`
//! of `Snapshot`, read once per request, and the handle every change goes
//! through) and `Reloader` (the one task that loads, validates, builds and
//! swaps; see `writer`).
//! Invariant: only the reloader stores into the `ArcSwap`, and every change
//! to the running topology (file reload, signal, API edit, DNS, weights) is
//! a `Command` on its one channel, answered with its outcome; a failed
//! request changes nothing; background tasks follow snapshots through a
//! `watch` channel, never the request path.

pub mod discovered;
mod dns;
mod listen;
mod snapshot;
pub mod splits;
mod status;
mod tls;
mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

pub use discovered::{Found, Slots};
pub use listen::{BindError, ListenerControl};
pub use snapshot::{
    BackendPlan, Chosen, CookiePlan, FrontendPlan, POOL_IDLE_TIMEOUT, RoutePlan, ServerPlan,
    Snapshot, TargetPlan,
};
pub use splits::{SplitOverride, SplitWeights};
pub use status::{ReloadAttempt, ReloadCause, ReloadError, ReloadStatus};
pub use writer::Reloader;

use crate::model::{BackendName, FrontendName, ServerAddress, Topology};
use crate::state::StateRegistry;

/// How often server host names are resolved again.
pub const DNS_REFRESH: Duration = Duration::from_secs(30);
/// How often idle pooled connections are looked at, so that those the
/// server closed or that outlived the idle timeout free their sockets even
/// when no request comes to take them.
pub const POOL_SWEEP: Duration = Duration::from_secs(2);

/// What a request to the writer ends in: the generation now serving, or why
/// nothing changed.
pub type Outcome = Result<u64, ReloadError>;

/// A change to the running topology, sent to the one writer. Changes that
/// peer replicas share (`admin::peers`) arrive as the same variants as the
/// API's.
#[derive(Debug)]
pub enum Command {
    /// Re-read the config file.
    Reload(ReloadCause),
    /// Serve this topology (validated by the caller) as if the file said it.
    Replace(Box<Topology>),
    /// Rebuild from the current topology (weights changed in `state`).
    Rebuild,
    /// Set a server's weight and rebuild its backend's balancer.
    SetWeight {
        backend: String,
        server: String,
        weight: u32,
    },
    /// Set weights in a route's split; held until the file changes it.
    SetSplit {
        frontend: String,
        route: usize,
        weights: SplitWeights,
    },
    /// Split weights saved before a restart; those whose route the file
    /// still splits the same way apply.
    RestoreSplits(Vec<SplitOverride>),
    /// Drop operator changes: the file's values apply again.
    ResetToConfig(ResetScope),
    /// A successful lookup of a backend's `discover` name: every address it
    /// returned. Answered with the generation serving afterwards (the same
    /// one when the slots did not change).
    Discovered {
        backend: BackendName,
        dns: ServerAddress,
        records: Vec<SocketAddr>,
    },
}

/// What "reset to config" covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetScope {
    /// Every server and route.
    All,
    /// One server's admin state and weight.
    Server { backend: String, server: String },
    /// One route's split weights.
    Route { frontend: String, route: usize },
}

/// The live snapshot and the handles to change it. Shared as `Arc<Runtime>`.
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    registry: StateRegistry,
    commands: mpsc::Sender<(Command, oneshot::Sender<Outcome>)>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    config_file: Option<PathBuf>,
    /// Written by the reloader only (never per request).
    status: Mutex<ReloadStatus>,
    /// The split weights operators set, by the reloader only.
    splits: Mutex<Vec<SplitOverride>>,
    /// The text of the config file the running topology was loaded from.
    source: Mutex<Option<Arc<str>>>,
    /// Each frontend and the address its listener is bound to; read by the
    /// admin server and tests, written by the reloader (never per request).
    bound: Mutex<Vec<(FrontendName, SocketAddr)>>,
    generation: AtomicU64,
    started: std::time::Instant,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the first snapshot from `topology` (loaded from `config_file`
    /// when there is one) and returns the runtime with its reloader, which
    /// the caller runs (`Reloader::run`). Upstream pools get `pool_lanes`
    /// lanes, one per worker thread.
    pub async fn start(
        topology: Topology,
        config_file: Option<PathBuf>,
        pool_lanes: usize,
    ) -> (Arc<Runtime>, Reloader) {
        writer::start(topology, config_file, pool_lanes).await
    }

    /// The snapshot to use for one whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Follows every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    pub fn registry(&self) -> &StateRegistry {
        &self.registry
    }

    /// The file reloads re-read, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The split weights operators set that hold now.
    pub fn split_overrides(&self) -> Vec<SplitOverride> {
        self.splits.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The config text the running topology was loaded from; `None` when it
    /// was built in code.
    pub fn config_source(&self) -> Option<Arc<str>> {
        self.source.lock().ok().and_then(|s| s.clone())
    }

    /// Each frontend and the address its listener is bound to now.
    pub fn bound(&self) -> Vec<(FrontendName, SocketAddr)> {
        self.bound.lock().map(|b| b.clone()).unwrap_or_default()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Re-reads the config file; returns the new generation or why not.
    pub async fn reload(&self, cause: ReloadCause) -> Outcome {
        self.ask(Command::Reload(cause)).await
    }

    /// Rebuilds the snapshot from the current topology, taking operator
    /// weight changes into the balancers.
    pub async fn rebuild(&self) -> Outcome {
        self.ask(Command::Rebuild).await
    }

    /// Swaps in `topology` (validated by the caller).
    pub async fn replace(&self, topology: Topology) -> Outcome {
        self.ask(Command::Replace(Box::new(topology))).await
    }

    /// Sends `command` to the writer and waits for its outcome.
    pub async fn ask(&self, command: Command) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send((command, tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }
}
