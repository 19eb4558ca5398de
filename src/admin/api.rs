//! The JSON API: stats, one server, and the operator's changes (admin
//! state with an optional drain wait, weight, checks, route split weights,
//! reload). Errors are `{"error": "..."}`: unknown names 404, bad input 400.
//! Invariant: every change is recorded through `audit::Changes` with the
//! caller `auth::guard` attached; nothing here answers `GET` with a change.

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
use super::stats;
use crate::model::{AdminState, Target};
use crate::runtime::ReloadError;
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
        .route("/api/reload", post(reload))
}

/// An API failure, answered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

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
    let old = state.set_admin_state(wanted);
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
    let old = state.set_weight(body.weight);
    ctx.changes.record(
        &caller,
        format!("server {backend}/{server} weight"),
        old.to_string(),
        body.weight.to_string(),
    );
    let generation = ctx.runtime.rebuild().await.map_err(unavailable)?;
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
    let snapshot = ctx.runtime.snapshot();
    let mut topology = (*snapshot.topology).clone();
    let names: Vec<String> = topology
        .backends
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    let f = topology
        .frontends
        .iter_mut()
        .find(|f| *f.name == *frontend)
        .ok_or_else(|| ApiError::not_found(format!("no frontend {frontend:?}")))?;
    let route = f.routes.get_mut(index).ok_or_else(|| {
        ApiError::not_found(format!("frontend {frontend:?} has no route {index}"))
    })?;
    let Target::Split(parts) = &mut route.target else {
        return Err(ApiError::bad(format!(
            "route {index} of {frontend:?} is not a weighted split"
        )));
    };
    let describe = |parts: &[(crate::model::BackendId, u32)]| {
        parts
            .iter()
            .map(|(id, w)| format!("{}={w}", names.get(id.0).map_or("?", String::as_str)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let old = describe(parts);
    for (name, weight) in &weights {
        if *weight > MAX_WEIGHT {
            return Err(ApiError::bad(format!(
                "weight {weight} of {name:?} is above {MAX_WEIGHT}"
            )));
        }
        let part = parts
            .iter_mut()
            .find(|(id, _)| names.get(id.0) == Some(name))
            .ok_or_else(|| ApiError::bad(format!("backend {name:?} is not part of this split")))?;
        part.1 = *weight;
    }
    if parts.iter().all(|(_, w)| *w == 0) {
        return Err(ApiError::bad("expected at least one weight above 0"));
    }
    let new = describe(parts);
    let generation = ctx.runtime.replace(topology).await.map_err(unavailable)?;
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

async fn reload(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let old = ctx.runtime.snapshot().generation;
    match ctx.runtime.reload().await {
        Ok(generation) => {
            ctx.changes.record(
                &caller,
                "config reload".into(),
                old.to_string(),
                generation.to_string(),
            );
            Json(json!({ "generation": generation })).into_response()
        }
        Err(ReloadError::Invalid(message) | ReloadError::Bind(message)) => {
            ctx.changes.record(
                &caller,
                "config reload".into(),
                old.to_string(),
                "failed".into(),
            );
            ApiError(StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
        }
        Err(e @ ReloadError::NoFile) => {
            ApiError(StatusCode::CONFLICT, e.to_string()).into_response()
        }
        Err(e @ ReloadError::Stopped) => unavailable(e).into_response(),
    }
}

fn unavailable(e: ReloadError) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}
