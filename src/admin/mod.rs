//! The admin server: the stats page, the JSON API, state toggles, the HAProxy
//! CSV export and Prometheus `/metrics`, on a listener of its own so that a
//! flood on the proxy does not lock operators out.
//!
//! Owns `AdminServer` and the modules behind it: `auth` (secret, host
//! allow-list, CSRF rules, failed-auth rate limit), `api` (JSON handlers),
//! `stats` (the one view of the live counters that every output renders),
//! `reload` (reload, its status, the running config), `page`, `csv`,
//! `metrics`, `sampler` (request-rate history), `audit` (the
//! recent-changes ring) and `peers` (replicas sharing operator changes
//! through this same API).
//!
//! Invariants: only `/healthz` and `/readyz` answer without the secret;
//! nothing changes state on `GET`; every state change passes the CSRF rules
//! and is audit-logged; every number shown is read from `state`'s counters
//! through `stats`, never kept here. The admin reads `runtime` and `state`
//! and never reaches into `proxy`.

mod api;
mod audit;
mod auth;
mod csv;
mod metrics;
mod metrics_peers;
mod metrics_tls;
mod page;
mod page_servers;
pub mod peers;
mod reload;
mod sampler;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::generated_token_path;
pub use peers::{PeerSync, Replication};

use crate::model;
use crate::runtime::Runtime;

/// Why the admin server did not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "admin listen address {0} is not loopback and no admin secret is configured; \
         set [admin] token_file or SWITCHYARD_ADMIN_TOKEN, or listen on 127.0.0.1"
    )]
    UnprotectedNonLoopback(SocketAddr),
    #[error("cannot read the admin token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin secret from {0} is empty; expected a token")]
    EmptyToken(String),
    #[error("cannot store the generated admin token in {path}: {source}")]
    TokenWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read random bytes for the admin token: {0}")]
    Random(std::io::Error),
    #[error("cannot listen on {addr} for the admin server: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up the metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Options the app (or a test) passes besides the config's `[admin]` table.
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// An explicit secret; wins over the token file and the environment.
    pub token: Option<String>,
    /// Where a generated token is stored (`admin-token`, mode 0600).
    pub generated_token_dir: PathBuf,
    /// This replica's operator-change registers (restored from the state
    /// file); `None`: empty ones, named after the config or the host.
    pub replication: Option<Arc<Replication>>,
}

/// Everything the handlers share. Held as `Arc<AdminContext>`; a clone costs
/// one atomic increment.
pub(crate) struct AdminContext {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) guard: auth::Guard,
    pub(crate) changes: audit::Changes,
    pub(crate) sampler: Arc<sampler::Sampler>,
    pub(crate) metrics: metrics::Registries,
    pub(crate) replication: Arc<Replication>,
}

/// A bound admin server, ready to `run`.
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: Arc<AdminContext>,
}

impl AdminServer {
    /// Binds `config.listen` and resolves the secret: `options.token`, else
    /// the token file, else `SWITCHYARD_ADMIN_TOKEN`, else (loopback only) a
    /// generated one stored in `options.generated_token_dir`. A non-loopback
    /// address without a configured secret is refused.
    pub async fn bind(
        config: &model::Admin,
        runtime: Arc<Runtime>,
        options: AdminOptions,
    ) -> Result<AdminServer, AdminError> {
        let token = auth::resolve_secret(config, options.token, &options.generated_token_dir)?;
        let replication = options.replication.unwrap_or_else(|| {
            Arc::new(Replication::new(
                peers::replica_name(config),
                Vec::new(),
                !config.peers.is_empty(),
            ))
        });
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| AdminError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| AdminError::Bind {
            addr: config.listen,
            source,
        })?;
        let sampler = Arc::new(sampler::Sampler::default());
        let metrics = metrics::Registries::new(&runtime, &sampler, &replication)?;
        let context = Arc::new(AdminContext {
            guard: auth::Guard::new(token, local_addr),
            runtime,
            changes: audit::Changes::new(replication.replica().to_owned()),
            sampler,
            metrics,
            replication,
        });
        tracing::info!(listen = %local_addr, "admin server listening");
        Ok(AdminServer {
            listener,
            local_addr,
            context,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The secret: bearer token, and basic-auth password for any user.
    pub fn token(&self) -> &str {
        self.context.guard.token()
    }

    /// The replication with `[admin] peers`, to run while peers are
    /// configured.
    pub fn peer_sync(&self) -> PeerSync {
        PeerSync {
            ctx: Arc::clone(&self.context),
            own: self.local_addr,
        }
    }

    /// This replica's operator-change registers.
    pub fn replication(&self) -> &Arc<Replication> {
        &self.context.replication
    }

    /// Serves until `shutdown`, with the rate sampler beside it.
    pub async fn run(self, shutdown: CancellationToken) {
        let sampler = tokio::spawn(sampler::Sampler::run(
            Arc::clone(&self.context.sampler),
            Arc::clone(&self.context.runtime),
            shutdown.clone(),
        ));
        let app = router(Arc::clone(&self.context));
        let served = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
        if let Err(error) = served {
            tracing::error!(%error, "admin server stopped");
        }
        shutdown.cancel();
        if let Err(error) = sampler.await {
            tracing::error!(%error, "admin rate sampler ended abnormally");
        }
    }
}

/// Every route, behind the guard (which lets the probes through).
fn router(context: Arc<AdminContext>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(page::render))
        .route("/metrics", get(metrics::render))
        .route("/{csv}", get(csv::render))
        .merge(api::routes())
        .merge(peers::routes())
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&context),
            auth::guard,
        ))
        .with_state(context)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: a snapshot with at least one frontend is serving, and with
/// peers, their operator state was pulled (or none answered in time).
async fn readyz(State(context): State<Arc<AdminContext>>) -> (StatusCode, &'static str) {
    if context.runtime.snapshot().frontends.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no frontend serving\n")
    } else if !context.replication.is_ready() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "pulling the operator state from a peer\n",
        )
    } else {
        (StatusCode::OK, "ready\n")
    }
}
