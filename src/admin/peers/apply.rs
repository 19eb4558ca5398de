//! Applying the registers a peer sent: merged into this replica's registers
//! in one turn, and each one taken applied through the same paths as the
//! admin API (`state` for admin states, the writer's `Command`s for weights
//! and splits), then audit-logged naming the replica where it was made.
//! Invariant: a register applies only where the config still says what it
//! said where the change was made; otherwise it is held but the config wins,
//! as on reload.

use super::super::AdminContext;
use super::ledger::{Accepted, Key, Stamp, Value};
use super::local;
use crate::model::BackendName;
use crate::runtime::{Command, splits};

/// Merges `incoming` and applies what was newer; returns how many applied.
pub(super) async fn merge_and_apply(
    ctx: &AdminContext,
    incoming: Vec<(Key, Value, Stamp)>,
    peer: &str,
) -> usize {
    let replication = &ctx.replication;
    let _turn = replication.turn().await;
    let accepted = replication.lock().merge(incoming);
    for change in &accepted {
        apply(ctx, change, peer).await;
    }
    if !accepted.is_empty() {
        replication.unsaved.notify_one();
    }
    accepted.len()
}

async fn apply(ctx: &AdminContext, change: &Accepted, peer: &str) {
    let Accepted { key, value, stamp } = change;
    let record = |what: String, old: String, new: String| {
        ctx.changes
            .record_from_peer(&stamp.replica, peer, what, old, new);
    };
    let registry = ctx.runtime.registry();
    match (key, value) {
        (Key::State { backend, server }, Value::State { state, config }) => {
            let Some(s) = registry.get(backend, server) else {
                return;
            };
            if s.config_admin_state() != *config {
                return skipped(key, "the config changed this server's state since");
            }
            let old = s.set_admin_state(*state);
            if old == *state {
                return;
            }
            record(
                format!("server {backend}/{server} state"),
                old.as_str().into(),
                state.as_str().into(),
            );
        }
        (Key::Weight { backend, server }, Value::Weight { weight, config }) => {
            let Some(s) = registry.get(backend, server) else {
                return;
            };
            if s.config_weight() != *config {
                return skipped(key, "the config changed this server's weight since");
            }
            let old = s.weight();
            if old == *weight {
                return;
            }
            let command = Command::SetWeight {
                backend: backend.clone(),
                server: server.clone(),
                weight: *weight,
            };
            match ctx.runtime.ask(command).await {
                Ok(_) => record(
                    format!("server {backend}/{server} weight"),
                    old.to_string(),
                    weight.to_string(),
                ),
                Err(e) => tracing::warn!(?key, "cannot apply a peer's weight: {e}"),
            }
        }
        (Key::Split { frontend, route }, Value::Split { weights, config }) => {
            if local::file_split(&ctx.runtime, frontend, *route).as_ref() != Some(config) {
                return skipped(key, "the config changed this route's split since");
            }
            let describe = || {
                splits::split_of(&ctx.runtime.snapshot().topology, frontend, *route)
                    .map(|w| splits::describe(&w))
                    .unwrap_or_default()
            };
            let old = describe();
            let command = Command::SetSplit {
                frontend: frontend.clone(),
                route: *route,
                weights: weights
                    .iter()
                    .map(|(name, w)| (BackendName::new(name), *w))
                    .collect(),
            };
            match ctx.runtime.ask(command).await {
                Ok(_) => record(format!("route {frontend}#{route} split"), old, describe()),
                Err(e) => tracing::warn!(?key, "cannot apply a peer's split: {e}"),
            }
        }
        (Key::State { .. } | Key::Weight { .. } | Key::Split { .. }, _) => {
            tracing::warn!(
                ?key,
                "a peer's register has a value of another kind; ignored"
            );
        }
    }
}

fn skipped(key: &Key, why: &str) {
    tracing::info!(?key, "a peer's change is held but not applied: {why}");
}
