//! Wiring: starts the runtime, the listeners, the health checker and the
//! admin server from a topology, follows new snapshots, and shuts everything
//! down in order. `main` adds the CLI, signals and logging on top.
//! Invariant: shutdown stops accepting first, then lets in-flight requests
//! finish within `grace`, then stops the background tasks.

pub mod demo;
mod fds;
pub mod healthcheck;
#[doc(hidden)]
pub mod persist;
pub mod preview;
mod state_dir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{AdminOptions, AdminServer, PeerSync, Replication};
use crate::config;
use crate::discovery::{Discoverer, FileWatcher};
use crate::health::{CheckTarget, HealthChecker};
use crate::model::{FrontendName, StateFile, Topology};
use crate::proxy::{AccessLog, Listeners, Shared, Workers};
use crate::runtime::{Runtime, Snapshot};

/// How the process was started.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// The file that reloads re-read; `None` for a topology built in code.
    pub config_file: Option<PathBuf>,
    /// The admin secret, overriding the token file and environment.
    pub admin_token: Option<String>,
    /// Where generated files (the admin token) go.
    pub state_dir: PathBuf,
    /// Where client connections are served.
    pub threads: Threads,
}

/// Where client connections are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Threads {
    /// On the runtime that calls `start`, beside everything else (tests,
    /// `demo`, embedding).
    #[default]
    Caller,
    /// On worker threads of their own, each a single-threaded runtime: this
    /// many (`run --threads`), else `[global] threads`, else one per CPU
    /// this process may run on.
    Own(Option<u16>),
}

impl Threads {
    /// Starts the workers this asks for, given the config's `threads`.
    fn start(self, configured: Option<u16>) -> anyhow::Result<Workers> {
        let Threads::Own(requested) = self else {
            return Ok(Workers::caller());
        };
        let count = match requested.or(configured) {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let workers = Workers::start(count).context("cannot start the worker threads")?;
        tracing::info!(workers = count, "worker threads started");
        Ok(workers)
    }
}

/// A running proxy.
pub struct Running {
    pub runtime: Arc<Runtime>,
    /// Each frontend and the address it was bound to at start
    /// (`runtime.bound()` follows reloads).
    pub frontends: Vec<(FrontendName, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    pub admin_token: Option<String>,
    shared: Arc<Shared>,
    grace: Duration,
    stop_accepting: CancellationToken,
    listeners_done: tokio::task::JoinHandle<()>,
    background: TaskTracker,
    stop_background: CancellationToken,
    log_writer: Option<tokio::task::JoinHandle<()>>,
}

/// Starts serving `topology`.
pub async fn start(topology: Topology, options: StartOptions) -> anyhow::Result<Running> {
    state_dir::warn_if_committable(&options.state_dir);
    let grace = topology.global.grace;
    let state_file = match &topology.global.state_file {
        StateFile::InStateDir => Some(options.state_dir.join("state.json")),
        StateFile::At(path) => Some(path.clone()),
        StateFile::Off => None,
    };
    let access_log = topology.global.access_log;
    let max_connections = fds::max_connections(topology.global.max_connections);
    let replica = crate::admin::peers::replica_name(&topology.admin);
    let has_peers = !topology.admin.peers.is_empty();
    let workers = options.threads.start(topology.global.threads)?;
    let found = crate::discovery::first_lookups(&topology).await;
    let (runtime, mut reloader) =
        Runtime::start(topology, options.config_file.clone(), workers.count()).await;
    if !found.is_empty() {
        reloader.discover_first(found);
    }

    let background = TaskTracker::new();
    let stop_background = CancellationToken::new();
    let mut registers = Vec::new();
    if let Some(path) = &state_file {
        if let Some(saved) = persist::read(path)? {
            registers = saved.registers();
            let (restored, splits) = persist::apply_servers(saved, &runtime);
            reloader.restore(splits);
            if restored > 0 {
                tracing::info!(file = %path.display(), restored, "operator changes restored");
            }
        }
    }
    let replication = Arc::new(Replication::new(replica, registers, has_peers));
    if let Some(path) = state_file {
        background.spawn(persist::keep_saved(
            path,
            Arc::clone(&runtime),
            Arc::clone(&replication),
            stop_background.clone(),
        ));
    }

    let (log, log_writer) = match access_log {
        Some(format) => {
            let counters = Arc::clone(runtime.registry().process());
            let (log, writer) = AccessLog::new(format, counters, tokio::io::stdout());
            (Some(log), Some(tokio::spawn(writer)))
        }
        None => (None, None),
    };
    let shared = Shared::new(Arc::clone(&runtime), log, max_connections, workers);

    let snapshot = runtime.snapshot();
    let admin_server = AdminServer::bind(
        &snapshot.topology.admin,
        Arc::clone(&runtime),
        AdminOptions {
            token: options.admin_token.clone(),
            generated_token_dir: options.state_dir.clone(),
            replication: Some(Arc::clone(&replication)),
        },
    )
    .await?;
    let mut peer_sync = Some(admin_server.peer_sync());
    if has_peers {
        tracing::info!(replica = %replication.replica(), "sharing operator changes with peers");
        if let Some(sync) = peer_sync.take() {
            background.spawn(sync.run(stop_background.clone()));
        }
    }
    let admin = Some(admin_server.local_addr());
    let admin_token = Some(admin_server.token().to_owned());
    background.spawn(admin_server.run(stop_background.clone()));

    let mut listeners = Listeners::new(Arc::clone(&shared));
    reloader.start_listening(&mut listeners)?;
    let frontends = runtime.bound();
    let stop_accepting = CancellationToken::new();
    let listeners_done = tokio::spawn(reloader.run(Box::new(listeners), stop_accepting.clone()));

    if let Some(watcher) = FileWatcher::start(Arc::clone(&runtime)) {
        background.spawn(watcher.run(stop_background.clone()));
    }
    background.spawn(Discoverer::new(Arc::clone(&runtime)).run(stop_background.clone()));

    let (targets_tx, targets_rx) = watch::channel(Arc::new(check_targets(&snapshot)));
    background.spawn(HealthChecker::new(targets_rx, stop_background.clone()).run());
    background.spawn(follow_snapshots(
        runtime.subscribe(),
        targets_tx,
        PeersLater {
            sync: peer_sync,
            tasks: background.clone(),
        },
        stop_background.clone(),
    ));

    Ok(Running {
        runtime,
        frontends,
        admin,
        admin_token,
        shared,
        grace,
        stop_accepting,
        listeners_done,
        background,
        stop_background,
        log_writer,
    })
}

impl Running {
    /// The bound address of a frontend.
    pub fn frontend_addr(&self, name: &str) -> Option<SocketAddr> {
        self.frontends
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, a)| *a)
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish
    /// within `grace` (idle keep-alive connections close at once), then cut
    /// what is left and stop the background tasks.
    pub async fn shutdown(self) {
        self.stop_accepting.cancel();
        let _ = self.listeners_done.await;
        self.shared.drain.cancel();
        self.shared.connections.close();
        self.shared.tunnels.close();
        let in_flight = async {
            self.shared.connections.wait().await;
            self.shared.tunnels.wait().await;
        };
        if tokio::time::timeout(self.grace, in_flight).await.is_err() {
            tracing::warn!(
                connections = self.shared.connections.len(),
                tunnels = self.shared.tunnels.len(),
                "grace period over; cutting the remaining connections"
            );
            self.shared.stop_tunnels.cancel();
        }
        // Worker threads end here, cutting what the grace period left.
        self.shared.workers.stop().await;
        self.stop_background.cancel();
        self.background.close();
        self.background.wait().await;
        drop(self.shared);
        if let Some(writer) = self.log_writer {
            let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
        }
        tracing::info!("stopped");
    }
}

/// The peer replication not started yet (no peers at start), started by
/// the first snapshot that has peers.
struct PeersLater {
    sync: Option<PeerSync>,
    tasks: TaskTracker,
}

/// Keeps the health checks in step with each new snapshot until `stop`,
/// and starts the peer replication when a reload adds peers.
async fn follow_snapshots(
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    targets: watch::Sender<Arc<Vec<CheckTarget>>>,
    mut peers: PeersLater,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snapshot = Arc::clone(&snapshots.borrow_and_update());
                targets.send_replace(Arc::new(check_targets(&snapshot)));
                if !snapshot.topology.admin.peers.is_empty() {
                    if let Some(sync) = peers.sync.take() {
                        tracing::info!("peers configured by a reload: sharing operator changes");
                        peers.tasks.spawn(sync.run(stop.clone()));
                    }
                }
            }
        }
    }
}

/// The servers to check in `snapshot`.
fn check_targets(snapshot: &Snapshot) -> Vec<CheckTarget> {
    snapshot
        .backends
        .iter()
        .zip(&snapshot.topology.backends)
        .filter_map(|(plan, model)| model.check.as_ref().map(|spec| (plan, model, spec)))
        .flat_map(|(plan, model, spec)| {
            plan.servers.iter().map(move |server| CheckTarget {
                state: Arc::clone(&server.state),
                addr: server.pool.as_ref().map(|p| p.addr),
                spec: spec.clone(),
                host: match &spec.kind {
                    crate::model::CheckKind::Http(http) => {
                        http.host.clone().or_else(|| model.host.clone())
                    }
                    crate::model::CheckKind::Tcp => None,
                },
                tls: server.tls.clone(),
            })
        })
        .collect()
}

/// Loads a config file for `run` and `check`, with every error explained.
pub fn load(path: &std::path::Path) -> anyhow::Result<Topology> {
    config::load(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("invalid configuration")
}
