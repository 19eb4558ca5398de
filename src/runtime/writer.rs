//! The single writer of the snapshot: `Reloader` serves `Command`s one at a
//! time (file reloads, operator edits, restored state) and refreshes DNS.
//! It keeps the topology as the file says it, the servers found in DNS
//! (`discover`) and the split weights operators set, and composes the served
//! topology from the three, so a reload, a discovery and an edit can never
//! undo each other.
//! Invariant: a command either swaps one complete snapshot (listeners bound
//! first) or changes nothing, and its outcome goes back to whoever asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::discovered::{self, Discovered, Discoveries};
use super::splits::{self, SplitEditError, SplitOverride};
use super::{
    BindError, Command, DNS_REFRESH, ListenerControl, Outcome, POOL_SWEEP, ReloadAttempt,
    ReloadCause, ReloadError, ReloadStatus, ResetScope, Runtime, Snapshot, dns, snapshot,
};
use crate::model::{BackendName, ServerAddress, Topology};
use crate::state::StateRegistry;
use crate::upstream::PoolRegistry;

/// The single writer of the snapshot.
pub struct Reloader {
    runtime: Arc<Runtime>,
    commands: mpsc::Receiver<(Command, oneshot::Sender<Outcome>)>,
    watch: watch::Sender<Arc<Snapshot>>,
    /// The topology as the file (or `Replace`) says it.
    file: Arc<Topology>,
    /// `file` with the discovered servers and the operators' split weights:
    /// what is serving.
    topology: Arc<Topology>,
    overrides: Vec<SplitOverride>,
    /// The servers found in DNS for each backend with `discover`.
    discoveries: Discoveries,
    resolved: HashMap<ServerAddress, Option<SocketAddr>>,
    /// Addresses kept for names that stopped resolving (`hold_valid`).
    last_good: dns::LastGood,
    registry: StateRegistry,
    pools: PoolRegistry,
    config_file: Option<PathBuf>,
}

/// Builds the first snapshot and the writer that owns it from now on.
pub(super) async fn start(
    topology: Topology,
    config_file: Option<PathBuf>,
    pool_lanes: usize,
) -> (Arc<Runtime>, Reloader) {
    let registry = StateRegistry::default();
    let pools = PoolRegistry::new(pool_lanes);
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
    let source = match &config_file {
        Some(path) => std::fs::read_to_string(path).ok().map(Arc::from),
        None => None,
    };
    let (tx, rx) = mpsc::channel(16);
    let (watch_tx, watch_rx) = watch::channel(Arc::clone(&first));
    let runtime = Arc::new(Runtime {
        current: arc_swap::ArcSwap::new(first),
        registry: registry.clone(),
        commands: tx,
        snapshots: watch_rx,
        config_file: config_file.clone(),
        status: std::sync::Mutex::new(ReloadStatus {
            last_success: Some(SystemTime::now()),
            ..ReloadStatus::default()
        }),
        splits: std::sync::Mutex::new(Vec::new()),
        source: std::sync::Mutex::new(source),
        bound: std::sync::Mutex::new(Vec::new()),
        generation: std::sync::atomic::AtomicU64::new(1),
        started: std::time::Instant::now(),
    });
    let reloader = Reloader {
        runtime: Arc::clone(&runtime),
        commands: rx,
        watch: watch_tx,
        file: Arc::clone(&topology),
        topology,
        overrides: Vec::new(),
        discoveries: Discoveries::default(),
        resolved,
        last_good,
        registry,
        pools,
        config_file,
    };
    (runtime, reloader)
}

impl Reloader {
    /// Binds the first snapshot's listeners and starts accepting on them;
    /// the caller fails to start when this fails.
    pub fn start_listening(
        &mut self,
        listeners: &mut dyn ListenerControl,
    ) -> Result<(), BindError> {
        let first = self.runtime.snapshot();
        listeners.prepare(&first)?;
        listeners.commit(&first);
        self.record_bound(listeners);
        Ok(())
    }

    /// Before serving: rebuilds the first snapshot with the operator values
    /// saved before a restart (weights already set in `state`, and these
    /// split weights where the file still splits the route the same way).
    pub fn restore(&mut self, saved: Vec<SplitOverride>) {
        self.registry.apply_config(&self.file);
        let kept = self.rebuild_first(saved);
        self.set_overrides(kept);
    }

    /// Before serving: takes the first lookups of the `discover` names
    /// (backend, name, records) into the first snapshot, so its servers are
    /// there from the start (and saved operator changes find them).
    pub fn discover_first(&mut self, answers: Vec<(BackendName, ServerAddress, Vec<SocketAddr>)>) {
        for (backend, dns, records) in answers {
            if let Ok(Some(found)) = self.discoveries.answer(&self.file, backend, dns, &records) {
                self.discoveries.commit(found);
            }
        }
        let kept = self.rebuild_first(self.overrides.clone());
        self.set_overrides(kept);
    }

    /// Replaces the first snapshot (nothing serves yet) with one composed
    /// from the file, the discovered servers and `overrides`; returns the
    /// overrides that apply.
    fn rebuild_first(&mut self, overrides: Vec<SplitOverride>) -> Vec<SplitOverride> {
        let (topology, kept) = compose(&self.file, self.discoveries.found(), overrides);
        let topology = Arc::new(topology);
        let first = Arc::new(Snapshot::build(
            self.runtime.generation.load(Ordering::Relaxed),
            Arc::clone(&topology),
            &self.resolved,
            &self.registry,
            &self.pools,
        ));
        self.runtime.current.store(Arc::clone(&first));
        self.watch.send_replace(first);
        self.topology = topology;
        kept
    }

    /// Serves commands and refreshes DNS until `stop`; then closes the
    /// listeners (open connections are not touched) and returns.
    pub async fn run(mut self, mut listeners: Box<dyn ListenerControl>, stop: CancellationToken) {
        let mut dns_tick = tokio::time::interval(DNS_REFRESH);
        dns_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        dns_tick.tick().await;
        let mut pool_tick = tokio::time::interval(POOL_SWEEP);
        pool_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pool_tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                request = self.commands.recv() => match request {
                    None => break,
                    Some((command, reply)) => {
                        let outcome = self.serve(command, listeners.as_mut()).await;
                        let _ignored = reply.send(outcome);
                    }
                },
                _ = dns_tick.tick() => self.refresh_dns(listeners.as_mut()).await,
                _ = pool_tick.tick() => self.pools.sweep(),
            }
        }
        listeners.close();
    }

    async fn serve(&mut self, command: Command, listeners: &mut dyn ListenerControl) -> Outcome {
        match command {
            Command::Reload(cause) => self.reload_file(cause, listeners).await,
            Command::Replace(topology) => self.install(*topology, listeners).await,
            Command::Rebuild => self.rebuild(listeners),
            Command::SetWeight {
                backend,
                server,
                weight,
            } => {
                let state = self
                    .registry
                    .get(&backend, &server)
                    .ok_or_else(|| not_found_server(&backend, &server))?;
                state.set_weight(weight);
                self.rebuild(listeners)
            }
            Command::SetSplit {
                frontend,
                route,
                weights,
            } => self.set_split(&frontend, route, &weights, listeners),
            Command::RestoreSplits(saved) => {
                let mut overrides = self.overrides.clone();
                for o in saved {
                    overrides.retain(|k| (&k.frontend, k.route) != (&o.frontend, o.route));
                    overrides.push(o);
                }
                self.apply_overrides(overrides, listeners)
            }
            Command::ResetToConfig(scope) => self.reset(&scope, listeners),
            Command::Discovered {
                backend,
                dns,
                records,
            } => self.discovered(backend, dns, &records, listeners),
        }
    }

    /// Takes a successful lookup of `backend`'s `discover` name into its
    /// slots; rebuilds only when a slot changed.
    fn discovered(
        &mut self,
        backend: BackendName,
        dns: ServerAddress,
        records: &[SocketAddr],
        listeners: &mut dyn ListenerControl,
    ) -> Outcome {
        let Some(found) = self
            .discoveries
            .answer(&self.file, backend, dns, records)
            .map_err(ReloadError::NotFound)?
        else {
            return Ok(self.runtime.generation.load(Ordering::Relaxed));
        };
        let (topology, kept) = compose(&self.file, &found, self.overrides.clone());
        let resolved = self.resolved.clone();
        let generation = self.swap(Arc::new(topology), resolved, listeners)?;
        self.discoveries.commit(found);
        self.set_overrides(kept);
        Ok(generation)
    }

    async fn reload_file(
        &mut self,
        cause: ReloadCause,
        listeners: &mut dyn ListenerControl,
    ) -> Outcome {
        let Some(path) = self.config_file.clone() else {
            return Err(ReloadError::NoFile);
        };
        let loaded = match std::fs::read_to_string(&path) {
            Ok(source) => crate::config::parse(&source, &path).map(|t| (t, source)),
            Err(e) => Err(crate::config::ConfigErrors::unreadable(&path, &e)),
        };
        let outcome = match loaded {
            Ok((topology, source)) => {
                let outcome = self.install(topology, listeners).await;
                if outcome.is_ok() {
                    if let Ok(mut slot) = self.runtime.source.lock() {
                        *slot = Some(Arc::from(source));
                    }
                }
                outcome
            }
            Err(errors) => Err(ReloadError::Invalid(errors)),
        };
        match &outcome {
            Ok(generation) => {
                tracing::info!(generation, file = %path.display(), cause = cause.as_str(), "config reloaded");
            }
            Err(e) => {
                tracing::error!(file = %path.display(), cause = cause.as_str(), "config reload failed, keeping the running config:\n{e}");
            }
        }
        if let Ok(mut status) = self.runtime.status.lock() {
            status.record(ReloadAttempt {
                at: SystemTime::now(),
                cause,
                outcome: outcome.clone(),
            });
        }
        outcome
    }

    /// Serves `file` from now on, with the discovered servers of the names
    /// it still discovers and the split overrides that still match.
    async fn install(&mut self, file: Topology, listeners: &mut dyn ListenerControl) -> Outcome {
        let found = self.discoveries.still_wanted(&file);
        let (topology, kept) = compose(&file, &found, self.overrides.clone());
        let resolved = self.resolve(&snapshot::names_to_resolve(&topology)).await;
        let generation = self.swap(Arc::new(topology), resolved, listeners)?;
        self.file = Arc::new(file);
        self.discoveries.commit(found);
        self.set_overrides(kept);
        Ok(generation)
    }

    fn rebuild(&mut self, listeners: &mut dyn ListenerControl) -> Outcome {
        let topology = Arc::clone(&self.topology);
        let resolved = self.resolved.clone();
        self.swap(topology, resolved, listeners)
    }

    fn set_split(
        &mut self,
        frontend: &str,
        route: usize,
        weights: &splits::SplitWeights,
        listeners: &mut dyn ListenerControl,
    ) -> Outcome {
        let mut edited = (*self.topology).clone();
        splits::set_weights(&mut edited, frontend, route, weights).map_err(|e| match e {
            SplitEditError::NoFrontend(_) | SplitEditError::NoRoute(..) => {
                ReloadError::NotFound(e.to_string())
            }
            SplitEditError::NotSplit(..)
            | SplitEditError::NotInSplit(_)
            | SplitEditError::AllZero => ReloadError::Rejected(e.to_string()),
        })?;
        let (Some(config), Some(now)) = (
            splits::split_of(&self.file, frontend, route),
            splits::split_of(&edited, frontend, route),
        ) else {
            return Err(ReloadError::NotFound(format!(
                "frontend {frontend:?} has no split route {route}"
            )));
        };
        let mut overrides = self.overrides.clone();
        overrides.retain(|o| !(&*o.frontend == frontend && o.route == route));
        if now != config {
            overrides.push(SplitOverride {
                frontend: crate::model::FrontendName::new(frontend),
                route,
                config,
                weights: now,
            });
        }
        self.apply_overrides(overrides, listeners)
    }

    fn apply_overrides(
        &mut self,
        overrides: Vec<SplitOverride>,
        listeners: &mut dyn ListenerControl,
    ) -> Outcome {
        let (topology, kept) = compose(&self.file, self.discoveries.found(), overrides);
        let resolved = self.resolved.clone();
        let generation = self.swap(Arc::new(topology), resolved, listeners)?;
        self.set_overrides(kept);
        Ok(generation)
    }

    fn reset(&mut self, scope: &ResetScope, listeners: &mut dyn ListenerControl) -> Outcome {
        let mut overrides = self.overrides.clone();
        match scope {
            ResetScope::All => {
                for state in self.registry.servers() {
                    state.set_admin_state(state.config_admin_state());
                    state.set_weight(state.config_weight());
                }
                overrides.clear();
            }
            ResetScope::Server { backend, server } => {
                let state = self
                    .registry
                    .get(backend, server)
                    .ok_or_else(|| not_found_server(backend, server))?;
                state.set_admin_state(state.config_admin_state());
                state.set_weight(state.config_weight());
            }
            ResetScope::Route { frontend, route } => {
                if splits::split_of(&self.file, frontend, *route).is_none() {
                    return Err(ReloadError::NotFound(format!(
                        "frontend {frontend:?} has no split route {route}"
                    )));
                }
                overrides.retain(|o| !(&*o.frontend == frontend && o.route == *route));
            }
        }
        self.apply_overrides(overrides, listeners)
    }

    fn set_overrides(&mut self, overrides: Vec<SplitOverride>) {
        if let Ok(mut slot) = self.runtime.splits.lock() {
            slot.clone_from(&overrides);
        }
        self.overrides = overrides;
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

    async fn refresh_dns(&mut self, listeners: &mut dyn ListenerControl) {
        let names = snapshot::names_to_resolve(&self.topology);
        if names.is_empty() {
            return;
        }
        let resolved = self.resolve(&names).await;
        if resolved != self.resolved {
            tracing::info!("server addresses changed in DNS");
            let topology = Arc::clone(&self.topology);
            if let Err(e) = self.swap(topology, resolved, listeners) {
                tracing::error!("applying new server addresses failed: {e}");
            }
        }
    }

    /// Builds a snapshot of `topology`, binds its new listeners and stores
    /// it; all or nothing: when a bind fails, the running snapshot, its
    /// listeners and the live state stay as they were.
    fn swap(
        &mut self,
        topology: Arc<Topology>,
        resolved: HashMap<ServerAddress, Option<SocketAddr>>,
        listeners: &mut dyn ListenerControl,
    ) -> Outcome {
        let generation = self.runtime.generation.load(Ordering::Relaxed) + 1;
        let build = || {
            Arc::new(Snapshot::build(
                generation,
                Arc::clone(&topology),
                &resolved,
                &self.registry,
                &self.pools,
            ))
        };
        let mut snapshot = build();
        if let Err(e) = listeners.prepare(&snapshot) {
            listeners.abort();
            // Servers only the failed topology had leave no state behind.
            self.registry.retain(&self.topology);
            return Err(ReloadError::Bind(e.to_string()));
        }
        // From here on the snapshot will serve: the config's changes to
        // admin states and weights apply (weights are in the balancers).
        if self.registry.apply_config(&topology) {
            snapshot = build();
        }
        self.runtime.generation.store(generation, Ordering::Relaxed);
        self.runtime.current.store(Arc::clone(&snapshot));
        listeners.commit(&snapshot);
        self.record_bound(listeners);
        snapshot.forget_removed(&self.registry, &self.pools);
        self.topology = topology;
        self.resolved = resolved;
        self.watch.send_replace(snapshot);
        Ok(generation)
    }

    fn record_bound(&self, listeners: &dyn ListenerControl) {
        if let Ok(mut slot) = self.runtime.bound.lock() {
            *slot = listeners.bound();
        }
    }
}

/// The topology to serve: the file's, with the discovered servers added
/// and the split overrides that still match applied; and those overrides.
fn compose(
    file: &Topology,
    found: &Discovered,
    overrides: Vec<SplitOverride>,
) -> (Topology, Vec<SplitOverride>) {
    splits::apply(discovered::apply(file.clone(), found), overrides)
}

fn not_found_server(backend: &str, server: &str) -> ReloadError {
    ReloadError::NotFound(format!("no server {server:?} in backend {backend:?}"))
}
