//! The data path: listeners and accept loops, TLS handshakes, hyper connection
//! serving (HTTP/1.1 and h2), the request service, header rewriting, route rules
//! (rewrites, header rules, direct answers), request ids, upstream
//! connections, retries, tunnels and error responses.
//! Invariant: a request loads one snapshot and uses it to the end; nothing
//! here takes a lock per request; every failure becomes a response in
//! `error::ProxyError::status`, logged and counted once.

mod access_log;
mod attempt;
mod body;
mod client_io;
mod conn_limit;
mod connect;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod goaway;
mod guard;
mod h1_client;
mod h2_streams;
mod head_scan;
mod headers;
#[doc(hidden)]
pub mod hot;
mod identity;
mod limits;
mod listener;
mod normalize;
mod routing;
pub mod rules;
mod service;
mod signal;
mod sticky;
mod tls;
mod tunnel;
mod workers;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use access_log::{AccessLog, LogRecord};
pub use body::ProxyBody;
pub use error::ProxyError;
pub use identity::{Identity, generate_id};
pub use listener::Listeners;
pub use normalize::normalize_path;
pub use workers::Workers;

use crate::runtime::Runtime;
use conn_limit::ConnectionLimit;

/// What every connection of the proxy shares. Cloning the `Arc` costs one
/// atomic increment.
#[derive(Debug)]
pub struct Shared {
    pub runtime: Arc<Runtime>,
    /// `None` writes no access log.
    pub log: Option<AccessLog>,
    /// Client connections, for graceful shutdown.
    pub connections: TaskTracker,
    /// Cancelled to ask every connection to finish its in-flight requests
    /// and close.
    pub drain: CancellationToken,
    /// Upgraded tunnels, waited for at shutdown.
    pub tunnels: TaskTracker,
    /// Cancelled to cut tunnels when the grace period ends.
    pub stop_tunnels: CancellationToken,
    /// The cap on client connections over all frontends.
    pub connection_limit: Arc<ConnectionLimit>,
    /// The runtimes that accept and serve client connections.
    pub workers: Workers,
}

impl Shared {
    pub fn new(
        runtime: Arc<Runtime>,
        log: Option<AccessLog>,
        max_connections: usize,
        workers: Workers,
    ) -> Arc<Self> {
        Arc::new(Shared {
            runtime,
            log,
            connections: TaskTracker::new(),
            drain: CancellationToken::new(),
            tunnels: TaskTracker::new(),
            stop_tunnels: CancellationToken::new(),
            connection_limit: ConnectionLimit::new(max_connections),
            workers,
        })
    }
}

/// Boxes the future `make` returns, allocating first so that the future is
/// made in its heap slot: `Box::pin(future)` makes it on the stack and
/// copies all of its (multi-KiB) size into the box. For the futures made per
/// connection and per request.
fn boxed_in_place<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
