//! Reloads through the admin server: `POST /api/reload`, `GET
//! /api/reload/status` (generation, who asked last, when, and the outcome
//! with every error's file, line, column and key) and `GET /api/config`
//! (the config text the running instance serves, for `check --diff`).
//! Invariant: everything shown is read from the runtime's `ReloadStatus`,
//! which only the writer records into.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::json;

use super::AdminContext;
use super::api::{ApiError, unavailable};
use super::auth::Caller;
use crate::runtime::{ReloadCause, ReloadError, ReloadStatus, Runtime};

pub(super) fn routes() -> Router<Arc<AdminContext>> {
    Router::new()
        .route("/api/reload", post(reload))
        .route("/api/reload/status", get(status))
        .route("/api/config", get(config))
}

/// `GET /api/reload/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// Generation of the serving snapshot.
    pub generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Unix seconds when the file last applied (at start or by a reload).
    pub last_success: Option<u64>,
    /// The last reload of the file, if any since the start.
    pub last: Option<AttemptView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    /// Unix milliseconds.
    pub at: u64,
    /// `file`, `signal` or `api`.
    pub cause: &'static str,
    /// `ok` or `failed`.
    pub result: &'static str,
    /// The generation it produced, when ok.
    pub generation: Option<u64>,
    /// Every error, when failed.
    pub errors: Vec<ErrorView>,
}

/// One reason a reload failed. `line`, `column` and `key` are absent when
/// the error concerns no place in the file (unreadable file, bind failure).
#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

/// The view of `status` with the serving `generation`.
pub fn view(status: &ReloadStatus, generation: u64) -> StatusView {
    StatusView {
        generation,
        reloads_ok: status.ok,
        reloads_failed: status.failed,
        last_success: status.last_success.map(|t| unix_millis(t) / 1000),
        last: status.last.as_ref().map(|a| AttemptView {
            at: unix_millis(a.at),
            cause: a.cause.as_str(),
            result: if a.outcome.is_ok() { "ok" } else { "failed" },
            generation: a.outcome.as_ref().ok().copied(),
            errors: a.outcome.as_ref().err().map(errors).unwrap_or_default(),
        }),
    }
}

/// Every error of a failed reload, structured.
pub fn errors(e: &ReloadError) -> Vec<ErrorView> {
    match e {
        ReloadError::Invalid(all) => all
            .errors
            .iter()
            .map(|one| ErrorView {
                file: Some(all.file.display().to_string()),
                line: (one.line > 0).then_some(one.line),
                column: (one.line > 0).then_some(one.column),
                key: (!one.field.is_empty()).then(|| one.field.clone()),
                message: one.message.clone(),
            })
            .collect(),
        ReloadError::NoFile
        | ReloadError::Bind(_)
        | ReloadError::NotFound(_)
        | ReloadError::Rejected(_)
        | ReloadError::Stopped => vec![ErrorView {
            file: None,
            line: None,
            column: None,
            key: None,
            message: e.to_string(),
        }],
    }
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn status(State(ctx): State<Arc<AdminContext>>) -> Json<StatusView> {
    Json(current(&ctx.runtime))
}

fn current(runtime: &Runtime) -> StatusView {
    view(&runtime.reload_status(), runtime.snapshot().generation)
}

async fn reload(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let old = ctx.runtime.snapshot().generation;
    let outcome = ctx.runtime.reload(ReloadCause::Api).await;
    let new = match &outcome {
        Ok(generation) => generation.to_string(),
        Err(_) => "failed".to_owned(),
    };
    if !matches!(outcome, Err(ReloadError::NoFile | ReloadError::Stopped)) {
        ctx.changes
            .record(&caller, "config reload".into(), old.to_string(), new);
    }
    match outcome {
        Ok(generation) => Json(json!({ "generation": generation })).into_response(),
        Err(e @ (ReloadError::Invalid(_) | ReloadError::Bind(_))) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": e.to_string(), "errors": errors(&e), "generation": old })),
        )
            .into_response(),
        Err(e @ (ReloadError::NoFile | ReloadError::NotFound(_) | ReloadError::Rejected(_))) => {
            ApiError(StatusCode::CONFLICT, e.to_string()).into_response()
        }
        Err(e @ ReloadError::Stopped) => unavailable(e).into_response(),
    }
}

/// `GET /api/config`: the file the running topology was loaded from, as
/// `{"file": path, "source": text}`; 404 when it was built in code.
async fn config(State(ctx): State<Arc<AdminContext>>) -> Result<Json<serde_json::Value>, ApiError> {
    let source = ctx.runtime.config_source().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "the running config was not loaded from a file".to_owned(),
        )
    })?;
    let file = ctx.runtime.config_file().map(|p| p.display().to_string());
    Ok(Json(json!({ "file": file, "source": &*source })))
}
