//! The socket side of applying a snapshot. Owns the `ListenerControl` trait,
//! through which the reload writer binds a new snapshot's listeners before it
//! swaps, and `BindError`.
//! Invariant: `prepare` only binds (nothing accepts yet) and either binds
//! every new address or none; `commit` is the only step that starts or stops
//! accepting, and runs right after the swap.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Snapshot;
use crate::model::FrontendName;

/// Binds, starts and stops the proxy's listeners for the reload writer. The
/// implementation lives in `proxy` (accept loops, TLS, hyper); `runtime` only
/// orders the steps: `prepare` -> swap -> `commit`, or `prepare` -> `abort`.
pub trait ListenerControl: Send {
    /// Binds every listener address of `next` that is not bound yet. Nothing
    /// accepts until `commit`. On error nothing stays bound from this call.
    fn prepare(&mut self, next: &Snapshot) -> Result<(), BindError>;

    /// Starts accepting on what `prepare` bound and stops accepting on
    /// addresses `next` no longer has (their open connections finish).
    fn commit(&mut self, next: &Arc<Snapshot>);

    /// Drops what `prepare` bound without accepting on it.
    fn abort(&mut self);

    /// Each frontend and the address it is bound to, in snapshot order.
    fn bound(&self) -> Vec<(FrontendName, SocketAddr)>;

    /// Stops accepting everywhere; open connections are not touched.
    fn close(&mut self);
}

/// A frontend address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("frontend {frontend}: cannot listen on {addr}: {source}")]
pub struct BindError {
    pub frontend: FrontendName,
    pub addr: SocketAddr,
    pub source: std::io::Error,
}
