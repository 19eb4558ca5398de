//! The registry of live server state, keyed by stable names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Counters, ProcessCounters, ServerState, TlsCounters};
use crate::model::{Backend, BackendName, FrontendName, Server, ServerName, Topology};

/// Live state by (backend, server) name.
type ServerMap = HashMap<(BackendName, ServerName), Arc<ServerState>>;

/// Owns every `ServerState` across reloads. Cloning the registry shares it.
/// Its mutex is taken when a snapshot is built and by the admin pages'
/// listings, never on the request path.
#[derive(Debug, Clone, Default)]
pub struct StateRegistry {
    servers: Arc<Mutex<ServerMap>>,
    frontends: Arc<Mutex<HashMap<FrontendName, Arc<Counters>>>>,
    tls: Arc<Mutex<HashMap<FrontendName, Arc<TlsCounters>>>>,
    process: Arc<ProcessCounters>,
}

impl StateRegistry {
    /// The state for this server of `backend`, created from the config on
    /// first sight. An existing server's state is not touched: the config's
    /// changes apply with `apply_config`, once the new snapshot is sure to
    /// be served.
    pub fn server(&self, backend: &Backend, server: &Server) -> Arc<ServerState> {
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (backend.name.clone(), server.name.clone());
        let state = map.entry(key).or_insert_with(|| {
            let state = ServerState::new(
                backend.name.clone(),
                server.name.clone(),
                server.state,
                server.weight,
            );
            state.set_drain_to_maint(backend.drain_to_maint);
            Arc::new(state)
        });
        Arc::clone(state)
    }

    /// The process-wide counters.
    pub fn process(&self) -> &Arc<ProcessCounters> {
        &self.process
    }

    /// Updates every server of `topology` with the config's admin state and
    /// weight where they changed, and with the backend's `drain_to_maint`.
    /// Returns whether any weight changed (balancers must be rebuilt).
    pub fn apply_config(&self, topology: &Topology) -> bool {
        let mut weights_changed = false;
        for backend in &topology.backends {
            for server in &backend.servers {
                let state = self.server(backend, server);
                // Before the admin state, so a DRAIN from the config follows it.
                state.set_drain_to_maint(backend.drain_to_maint);
                weights_changed |= state.apply_config(server.state, server.weight);
            }
        }
        weights_changed
    }

    /// The counters of a frontend, kept across reloads by name.
    pub fn frontend(&self, name: &FrontendName) -> Arc<Counters> {
        let mut map = self.frontends.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(name.clone()).or_default())
    }

    /// The TLS handshake counters of a frontend, kept across reloads by name.
    pub fn frontend_tls(&self, name: &FrontendName) -> Arc<TlsCounters> {
        let mut map = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(name.clone()).or_default())
    }

    /// Drops the state of servers and frontends that left the topology.
    pub fn retain(&self, topology: &Topology) {
        self.tls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| topology.frontends.iter().any(|f| f.name == *name));
        self.frontends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| topology.frontends.iter().any(|f| f.name == *name));
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(b, s), _| {
            topology
                .backends
                .iter()
                .any(|be| be.name == *b && be.servers.iter().any(|sv| sv.name == *s))
        });
    }

    /// Every server's state, in no particular order.
    pub fn servers(&self) -> Vec<Arc<ServerState>> {
        let map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        map.values().cloned().collect()
    }

    /// The state of one server, if it exists.
    pub fn get(&self, backend: &str, server: &str) -> Option<Arc<ServerState>> {
        let map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(BackendName::new(backend), ServerName::new(server)))
            .cloned()
    }
}
