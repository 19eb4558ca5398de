//! The registry of live server state, keyed by stable names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::ServerState;
use crate::model::{BackendName, Server, ServerName, Topology};

/// Live state by (backend, server) name.
type ServerMap = HashMap<(BackendName, ServerName), Arc<ServerState>>;

/// Owns every `ServerState` across reloads. Cloning the registry shares it.
/// Its mutex is taken when a snapshot is built and by the admin pages'
/// listings, never on the request path.
#[derive(Debug, Clone, Default)]
pub struct StateRegistry {
    servers: Arc<Mutex<ServerMap>>,
}

impl StateRegistry {
    /// The state for this server, created from the config on first sight and
    /// updated with the config's admin state and weight when they changed.
    pub fn server(&self, backend: &BackendName, server: &Server) -> Arc<ServerState> {
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let key = (backend.clone(), server.name.clone());
        let state = map.entry(key).or_insert_with(|| {
            Arc::new(ServerState::new(
                backend.clone(),
                server.name.clone(),
                server.state,
                server.weight,
            ))
        });
        state.apply_config(server.state, server.weight);
        Arc::clone(state)
    }

    /// Drops the state of servers that left the topology.
    pub fn retain(&self, topology: &Topology) {
        let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(b, s), _| {
            topology
                .backends
                .iter()
                .any(|be| be.name == *b && be.servers.iter().any(|sv| sv.name == *s))
        });
    }

    /// The state of one server, if it exists.
    pub fn get(&self, backend: &str, server: &str) -> Option<Arc<ServerState>> {
        let map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(BackendName::new(backend), ServerName::new(server)))
            .cloned()
    }
}
