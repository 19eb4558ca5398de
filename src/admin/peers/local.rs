//! The registers of a change made on this replica, read from what the
//! change left in `state` and the runtime. Owns the mapping from an API
//! change (state, weight, split, reset) to the `(Key, Value)` pairs that
//! `Replication::record` stamps.
//! Invariant: reads only; called in the turn that made the change.

use std::collections::BTreeMap;

use super::ledger::{Key, Value};
use crate::model::AdminState;
use crate::runtime::{ResetScope, Runtime, splits};
use crate::state::ServerState;

/// A server's admin state set to `wanted` (what the operator asked for,
/// before any `drain_to_maint` follow-up).
pub fn state(server: &ServerState, wanted: AdminState) -> (Key, Value) {
    (
        Key::State {
            backend: server.backend.to_string(),
            server: server.server.to_string(),
        },
        Value::State {
            state: wanted,
            config: server.config_admin_state(),
        },
    )
}

/// A server's weight, as it is now.
pub fn weight(server: &ServerState) -> (Key, Value) {
    (
        Key::Weight {
            backend: server.backend.to_string(),
            server: server.server.to_string(),
        },
        Value::Weight {
            weight: server.weight(),
            config: server.config_weight(),
        },
    )
}

/// A route's split as it serves now, against the file's split.
pub fn split(runtime: &Runtime, frontend: &str, route: usize) -> Option<(Key, Value)> {
    let weights = by_name(&splits::split_of(
        &runtime.snapshot().topology,
        frontend,
        route,
    )?);
    let config = file_split(runtime, frontend, route).unwrap_or_else(|| weights.clone());
    Some((
        Key::Split {
            frontend: frontend.to_owned(),
            route,
        },
        Value::Split { weights, config },
    ))
}

/// The split the file gives a route: the one an operator override was set
/// against, or the serving one when no override holds.
pub fn file_split(
    runtime: &Runtime,
    frontend: &str,
    route: usize,
) -> Option<BTreeMap<String, u32>> {
    let overridden = runtime
        .split_overrides()
        .into_iter()
        .find(|o| &*o.frontend == frontend && o.route == route);
    match overridden {
        Some(o) => Some(by_name(&o.config)),
        None => Some(by_name(&splits::split_of(
            &runtime.snapshot().topology,
            frontend,
            route,
        )?)),
    }
}

/// What a reset to config of `scope` changed: every register in the scope,
/// at the file's value. `split_keys` are the routes an operator changed
/// before (held registers and overrides).
pub fn reset(runtime: &Runtime, scope: &ResetScope, split_keys: &[Key]) -> Vec<(Key, Value)> {
    let server = |s: &ServerState| [state(s, s.config_admin_state()), weight(s)];
    match scope {
        ResetScope::All => {
            let mut changes: Vec<(Key, Value)> = runtime
                .registry()
                .servers()
                .iter()
                .flat_map(|s| server(s))
                .collect();
            changes.extend(split_keys.iter().filter_map(|k| match k {
                Key::Split { frontend, route } => split(runtime, frontend, *route),
                Key::State { .. } | Key::Weight { .. } => None,
            }));
            changes
        }
        ResetScope::Server {
            backend,
            server: name,
        } => runtime
            .registry()
            .get(backend, name)
            .map(|s| server(&s).to_vec())
            .unwrap_or_default(),
        ResetScope::Route { frontend, route } => {
            split(runtime, frontend, *route).into_iter().collect()
        }
    }
}

fn by_name(weights: &[(crate::model::BackendName, u32)]) -> BTreeMap<String, u32> {
    weights.iter().map(|(n, w)| (n.to_string(), *w)).collect()
}
