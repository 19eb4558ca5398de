//! The JSON API: stats, one server, and the operator's changes (admin
//! state with an optional drain wait, weight, checks, route split weights,
//! reset to config; reloads are in `reload`). Edits of the topology
//! (weights, splits, resets) are commands to the runtime's one writer.
//! Errors are `{"error": "..."}`: unknown names 404, bad input 400.
//! Invariant: every change is recorded through `audit::Changes` with the
//! caller `auth::guard` attached, and stamped for the peers
//! (`peers::Replication::record`) in the turn that made it; nothing here
//! answers `GET` with a change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::AdminContext;
use super::auth::Caller;
use super::{peers, stats};
use crate::model::{AdminState, BackendName};
use crate::runtime::{Command, ReloadError, ResetScope, splits};
use crate::state::ServerState;

/// Longest `wait` a drain request may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// How often a drain wait looks at the active-request counter.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Highest weight, as HAProxy.
const MAX_WEIGHT: u32 = 256;

pub(super) fn routes() -> Router<Arc<AdminContext>> {
    Router::new()
        .route("/api/stats", get(all_stats))
        .route("/api/backends/{backend}/servers/{server}", get(one_server))
        .route(
            "/api/backends/{backend}/servers/{server}/state",
            put(set_state),
        )
        .route(
            "/api/backends/{backend}/servers/{server}/weight",
            put(set_weight),
        )
        .route(
            "/api/backends/{backend}/servers/{server}/check",
            put(set_check),
        )
        .route(
            "/api/frontends/{frontend}/routes/{index}/split",
            put(set_split),
        )
        .route("/api/reset", post(reset))
        .merge(super::reload::routes())
}

/// An API failure, answered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(pub(super) StatusCode, pub(super) String);

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

async fn all_stats(State(ctx): State<Arc<AdminContext>>) -> Json<stats::Stats> {
    let mut stats = stats::collect(&ctx.runtime, &ctx.sampler);
    stats.recent_changes = ctx.changes.list();
    stats.peers = peers_view(&ctx);
    Json(stats)
}

async fn one_server(
    State(ctx): State<Arc<AdminContext>>,
    Path((backend, server)): Path<(String, String)>,
) -> Result<Json<stats::ServerStats>, ApiError> {
    let stats = stats::collect(&ctx.runtime, &ctx.sampler);
    let b = stats
        .backends
        .into_iter()
        .find(|b| b.name == backend)
        .ok_or_else(|| ApiError::not_found(format!("no backend {backend:?}")))?;
    b.servers
        .into_iter()
        .find(|s| s.name == server)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no server {server:?} in backend {backend:?}")))
}

/// The live state of a server and whether its backend drains to MAINT.
fn find_server(
    ctx: &AdminContext,
    backend: &str,
    server: &str,
) -> Result<(Arc<ServerState>, bool), ApiError> {
    let snapshot = ctx.runtime.snapshot();
    let (_, plan) = snapshot
        .backend(backend)
        .ok_or_else(|| ApiError::not_found(format!("no backend {backend:?}")))?;
    plan.servers
        .iter()
        .find(|s| &*s.state.server == server)
        .map(|s| (Arc::clone(&s.state), plan.drain_to_maint))
        .ok_or_else(|| ApiError::not_found(format!("no server {server:?} in backend {backend:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateBody {
    state: String,
    /// With `drain`: block until no request is active or this passes.
    wait: Option<String>,
}

async fn set_state(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    Path((backend, server)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: StateBody = parse(&body)?;
    let wanted = AdminState::parse(&body.state).ok_or_else(|| {
        ApiError::bad(format!(
            "unknown state {:?}; expected ready, drain or maint",
            body.state
        ))
    })?;
    let wait = match (&body.wait, wanted) {
        (None, _) => None,
        (Some(text), AdminState::Drain) => {
            let wait = crate::config::parse_duration(text).map_err(ApiError::bad)?;
            if wait > MAX_WAIT {
                return Err(ApiError::bad("wait is at most 1h"));
            }
            Some(wait)
        }
        (Some(_), _) => return Err(ApiError::bad("wait applies to the drain state only")),
    };
    let (state, drain_to_maint) = find_server(&ctx, &backend, &server)?;
    let what = format!("server {backend}/{server} state");
    let turn = ctx.replication.turn().await;
    let old = state.set_admin_state(wanted);
    ctx.replication
        .record(&turn, vec![peers::local::state(&state, wanted)]);
    drop(turn);
    ctx.changes.record(
        &caller,
        what.clone(),
        old.as_str().into(),
        wanted.as_str().into(),
    );
    if wanted == AdminState::Drain && drain_to_maint && state.counters.active() == 0 {
        move_drained_to_maint(&ctx, &state, &what, &caller);
    }
    let mut answer = json!({ "backend": backend, "server": server, "old": old.as_str() });
    if let Some(wait) = wait {
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        while state.counters.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let drained = state.counters.active() == 0;
        if drained && drain_to_maint {
            move_drained_to_maint(&ctx, &state, &what, &caller);
        }
        answer["drained"] = json!(drained);
        answer["result"] = json!(if drained { "drained" } else { "timeout" });
        answer["waited_ms"] =
            json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    }
    answer["state"] = json!(state.admin_state().as_str());
    answer["active"] = json!(state.counters.active());
    Ok(Json(answer))
}

/// `drain_to_maint`: a DRAIN server without active requests goes to MAINT.
fn move_drained_to_maint(ctx: &AdminContext, state: &ServerState, what: &str, caller: &Caller) {
    if state.admin_state() == AdminState::Drain {
        state.set_admin_state(AdminState::Maint);
        let follow = Caller {
            who: format!("{} (drain_to_maint)", caller.who),
            from: caller.from,
        };
        ctx.changes
            .record(&follow, what.to_owned(), "drain".into(), "maint".into());
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u32,
}

async fn set_weight(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    Path((backend, server)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: WeightBody = parse(&body)?;
    if body.weight > MAX_WEIGHT {
        return Err(ApiError::bad(format!(
            "weight {} is above {MAX_WEIGHT}",
            body.weight
        )));
    }
    let (state, _) = find_server(&ctx, &backend, &server)?;
    let turn = ctx.replication.turn().await;
    let old = state.weight();
    let generation = ctx
        .runtime
        .ask(Command::SetWeight {
            backend: backend.clone(),
            server: server.clone(),
            weight: body.weight,
        })
        .await
        .map_err(refused)?;
    ctx.replication
        .record(&turn, vec![peers::local::weight(&state)]);
    drop(turn);
    ctx.changes.record(
        &caller,
        format!("server {backend}/{server} weight"),
        old.to_string(),
        body.weight.to_string(),
    );
    Ok(Json(json!({
        "backend": backend, "server": server, "old": old, "weight": body.weight,
        "generation": generation,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    enabled: bool,
}

async fn set_check(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    Path((backend, server)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body: CheckBody = parse(&body)?;
    let (state, _) = find_server(&ctx, &backend, &server)?;
    let was_enabled = !state.is_check_disabled();
    state.set_check_disabled(!body.enabled);
    let word = |enabled: bool| if enabled { "enabled" } else { "disabled" };
    ctx.changes.record(
        &caller,
        format!("server {backend}/{server} checks"),
        word(was_enabled).into(),
        word(body.enabled).into(),
    );
    Ok(Json(json!({
        "backend": backend, "server": server, "enabled": body.enabled,
        "has_check": state.is_checked(),
    })))
}

async fn set_split(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    Path((frontend, index)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let weights: BTreeMap<String, u32> = parse(&body)?;
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::bad(format!("route index {index:?} is not a number")))?;
    if let Some((name, weight)) = weights.iter().find(|(_, w)| **w > MAX_WEIGHT) {
        return Err(ApiError::bad(format!(
            "weight {weight} of {name:?} is above {MAX_WEIGHT}"
        )));
    }
    let split_now = || {
        splits::split_of(&ctx.runtime.snapshot().topology, &frontend, index)
            .map(|w| splits::describe(&w))
            .unwrap_or_default()
    };
    let turn = ctx.replication.turn().await;
    let old = split_now();
    let generation = ctx
        .runtime
        .ask(Command::SetSplit {
            frontend: frontend.clone(),
            route: index,
            weights: weights
                .iter()
                .map(|(name, w)| (BackendName::new(name), *w))
                .collect(),
        })
        .await
        .map_err(refused)?;
    let new = split_now();
    ctx.replication.record(
        &turn,
        peers::local::split(&ctx.runtime, &frontend, index)
            .into_iter()
            .collect(),
    );
    drop(turn);
    ctx.changes.record(
        &caller,
        format!("route {frontend}#{index} split"),
        old,
        new.clone(),
    );
    Ok(Json(
        json!({ "frontend": frontend, "route": index, "split": new, "generation": generation }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    backend: Option<String>,
    server: Option<String>,
    frontend: Option<String>,
    route: Option<usize>,
}

/// `POST /api/reset`: operator values go back to the file's. `{}` resets
/// everything, `{"backend", "server"}` one server, `{"frontend", "route"}`
/// one route's split.
async fn reset(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let body: ResetBody = if body.iter().all(u8::is_ascii_whitespace) {
        ResetBody::default()
    } else {
        parse(&body)?
    };
    let (scope, what) = match body {
        ResetBody {
            backend: None,
            server: None,
            frontend: None,
            route: None,
        } => (ResetScope::All, "everything".to_owned()),
        ResetBody {
            backend: Some(backend),
            server: Some(server),
            frontend: None,
            route: None,
        } => (
            ResetScope::Server {
                backend: backend.clone(),
                server: server.clone(),
            },
            format!("server {backend}/{server}"),
        ),
        ResetBody {
            backend: None,
            server: None,
            frontend: Some(frontend),
            route: Some(route),
        } => (
            ResetScope::Route {
                frontend: frontend.clone(),
                route,
            },
            format!("route {frontend}#{route} split"),
        ),
        _ => {
            return Err(ApiError::bad(
                "expected {}, {\"backend\", \"server\"} or {\"frontend\", \"route\"}",
            ));
        }
    };
    let turn = ctx.replication.turn().await;
    // Routes an operator changed before: a reset of everything stamps them.
    let mut split_keys = ctx.replication.split_keys();
    split_keys.extend(ctx.runtime.split_overrides().into_iter().map(|o| {
        peers::ledger::Key::Split {
            frontend: o.frontend.to_string(),
            route: o.route,
        }
    }));
    split_keys.sort();
    split_keys.dedup();
    let generation = ctx
        .runtime
        .ask(Command::ResetToConfig(scope.clone()))
        .await
        .map_err(refused)?;
    ctx.replication.record(
        &turn,
        peers::local::reset(&ctx.runtime, &scope, &split_keys),
    );
    drop(turn);
    ctx.changes.record(
        &caller,
        format!("reset to config: {what}"),
        "runtime".into(),
        "config".into(),
    );
    Ok(Json(json!({ "reset": what, "generation": generation })))
}

/// An edit the writer refused: unknown names 404, impossible edits 400.
fn refused(e: ReloadError) -> ApiError {
    match e {
        ReloadError::NotFound(m) => ApiError::not_found(m),
        ReloadError::Rejected(m) => ApiError::bad(m),
        ReloadError::Invalid(_) | ReloadError::Bind(_) | ReloadError::NoFile => {
            ApiError(StatusCode::CONFLICT, e.to_string())
        }
        ReloadError::Stopped => unavailable(e),
    }
}

pub(super) fn unavailable(e: ReloadError) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The peers section: shown while peers are configured.
pub(super) fn peers_view(ctx: &AdminContext) -> Option<peers::PeersView> {
    let has_peers = !ctx.runtime.snapshot().topology.admin.peers.is_empty();
    has_peers.then(|| ctx.replication.view())
}
