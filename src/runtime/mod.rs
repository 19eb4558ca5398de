//! The live snapshot and its single writer. Owns `Runtime` (one `ArcSwap`
//! of `Snapshot`, read once per request) and `Reloader` (the one task that
//! loads, validates, builds and swaps).
//! Invariant: only the reloader stores into the `ArcSwap`; a failed load
//! changes nothing; background tasks follow snapshots through a `watch`
//! channel, never the request path.

mod dns;
mod snapshot;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use snapshot::{
    BackendPlan, CookiePlan, FrontendPlan, POOL_IDLE_TIMEOUT, RoutePlan, ServerPlan, Snapshot,
    TargetPlan,
};

use crate::model::{ServerAddress, Topology};
use crate::state::StateRegistry;
use crate::upstream::PoolRegistry;

/// How often server host names are resolved again.
pub const DNS_REFRESH: Duration = Duration::from_secs(30);

/// Why a reload did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The file failed to load or validate; the text names file, line, field.
    #[error("{0}")]
    Invalid(String),
    /// The runtime has no config file to reload from.
    #[error("no config file to reload")]
    NoFile,
    #[error("reloader stopped")]
    Stopped,
}

/// The last reload's outcome, for the admin API and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    pub reloads: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

/// Loads and validates a config file into a topology, or explains why not.
pub type Loader = Box<dyn Fn(&std::path::Path) -> Result<Topology, String> + Send + Sync>;

enum Command {
    /// Re-read the config file.
    Reload(oneshot::Sender<Result<u64, ReloadError>>),
    /// Rebuild from the current topology (weights changed, names resolved).
    Rebuild(oneshot::Sender<Result<u64, ReloadError>>),
    /// Replace the topology with this one.
    Replace(Box<Topology>, oneshot::Sender<Result<u64, ReloadError>>),
}

/// The live snapshot and the handles to change it. Shared as `Arc<Runtime>`.
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    registry: StateRegistry,
    commands: mpsc::Sender<Command>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    status: Mutex<ReloadStatus>,
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
    /// Builds the first snapshot from `topology` and returns the runtime with
    /// its reloader, which the caller runs (`Reloader::run`).
    pub async fn start(
        topology: Topology,
        config_file: Option<PathBuf>,
        loader: Loader,
    ) -> (Arc<Runtime>, Reloader) {
        let registry = StateRegistry::default();
        let pools = PoolRegistry::default();
        let topology = Arc::new(topology);
        let mut last_good = dns::LastGood::default();
        let resolved = last_good.apply(
            dns::resolve_all(&snapshot::names_to_resolve(&topology)).await,
            std::time::Instant::now(),
            dns::HOLD_VALID,
        );
        let first = Arc::new(Snapshot::build(
            1,
            Arc::clone(&topology),
            &resolved,
            &registry,
            &pools,
        ));
        let (tx, rx) = mpsc::channel(16);
        let (watch_tx, watch_rx) = watch::channel(Arc::clone(&first));
        let runtime = Arc::new(Runtime {
            current: ArcSwap::new(first),
            registry: registry.clone(),
            commands: tx,
            snapshots: watch_rx,
            status: Mutex::new(ReloadStatus::default()),
            generation: AtomicU64::new(1),
            started: std::time::Instant::now(),
        });
        let reloader = Reloader {
            runtime: Arc::clone(&runtime),
            commands: rx,
            watch: watch_tx,
            topology,
            resolved,
            last_good,
            registry,
            pools,
            config_file,
            loader,
        };
        (runtime, reloader)
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

    pub fn reload_status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Re-reads the config file; returns the new generation or why not.
    pub async fn reload(&self) -> Result<u64, ReloadError> {
        self.ask(Command::Reload).await
    }

    /// Rebuilds the snapshot from the current topology, taking operator
    /// weight changes into the balancers.
    pub async fn rebuild(&self) -> Result<u64, ReloadError> {
        self.ask(Command::Rebuild).await
    }

    /// Swaps in `topology` (validated by the caller).
    pub async fn replace(&self, topology: Topology) -> Result<u64, ReloadError> {
        self.ask(|tx| Command::Replace(Box::new(topology), tx))
            .await
    }

    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<u64, ReloadError>>) -> Command,
    ) -> Result<u64, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }
}

/// The single writer of the snapshot.
pub struct Reloader {
    runtime: Arc<Runtime>,
    commands: mpsc::Receiver<Command>,
    watch: watch::Sender<Arc<Snapshot>>,
    topology: Arc<Topology>,
    resolved: HashMap<ServerAddress, Option<SocketAddr>>,
    /// Addresses kept for names that stopped resolving (`hold_valid`).
    last_good: dns::LastGood,
    registry: StateRegistry,
    pools: PoolRegistry,
    config_file: Option<PathBuf>,
    loader: Loader,
}

impl Reloader {
    /// Serves reload requests and refreshes DNS until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut dns_tick = tokio::time::interval(DNS_REFRESH);
        dns_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        dns_tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                command = self.commands.recv() => match command {
                    None => return,
                    Some(Command::Reload(reply)) => {
                        let result = self.reload_file().await;
                        let _ignored = reply.send(result);
                    }
                    Some(Command::Rebuild(reply)) => {
                        let _ignored = reply.send(Ok(self.swap()));
                    }
                    Some(Command::Replace(topology, reply)) => {
                        let result = self.install(*topology).await;
                        let _ignored = reply.send(Ok(result));
                    }
                },
                _ = dns_tick.tick() => self.refresh_dns().await,
            }
        }
    }

    async fn reload_file(&mut self) -> Result<u64, ReloadError> {
        let Some(path) = self.config_file.clone() else {
            return Err(ReloadError::NoFile);
        };
        match (self.loader)(&path) {
            Ok(topology) => {
                let generation = self.install(topology).await;
                self.record(None);
                tracing::info!(generation, file = %path.display(), "config reloaded");
                Ok(generation)
            }
            Err(message) => {
                tracing::error!(file = %path.display(), "config reload failed, keeping the running config:\n{message}");
                self.record(Some(message.clone()));
                Err(ReloadError::Invalid(message))
            }
        }
    }

    fn record(&self, error: Option<String>) {
        if let Ok(mut status) = self.runtime.status.lock() {
            status.reloads += 1;
            if error.is_some() {
                status.failures += 1;
            }
            status.last_error = error;
        }
    }

    async fn install(&mut self, topology: Topology) -> u64 {
        let names = snapshot::names_to_resolve(&topology);
        self.resolved = self.resolve(&names).await;
        self.topology = Arc::new(topology);
        self.swap()
    }

    async fn refresh_dns(&mut self) {
        let names = snapshot::names_to_resolve(&self.topology);
        if names.is_empty() {
            return;
        }
        let resolved = self.resolve(&names).await;
        if resolved != self.resolved {
            tracing::info!("server addresses changed in DNS");
            self.resolved = resolved;
            self.swap();
        }
    }

    /// Resolves `names`, keeping the last good address of a name that
    /// fails for `HOLD_VALID`.
    async fn resolve(
        &mut self,
        names: &[ServerAddress],
    ) -> HashMap<ServerAddress, Option<SocketAddr>> {
        let fresh = dns::resolve_all(names).await;
        self.last_good
            .apply(fresh, std::time::Instant::now(), dns::HOLD_VALID)
    }

    /// Builds a snapshot of the current topology and stores it.
    fn swap(&mut self) -> u64 {
        let generation = self.runtime.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot = Arc::new(Snapshot::build(
            generation,
            Arc::clone(&self.topology),
            &self.resolved,
            &self.registry,
            &self.pools,
        ));
        self.runtime.current.store(Arc::clone(&snapshot));
        self.watch.send_replace(snapshot);
        generation
    }
}
