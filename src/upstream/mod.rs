//! Upstream resources that outlive a snapshot: idle keep-alive connections
//! per server (`ServerPool`, kept in `PoolRegistry` by server name and
//! address), the connection they hold (`UpstreamConn`: a socket, plain or
//! TLS, and its unread bytes), and the request body type sent over it
//! (`RequestBody`).
//! Invariant: nothing here opens a connection or awaits; pools are lock-free
//! queues, and a connection enters a pool only after its response ended
//! cleanly.

mod body;
mod conn;
mod pool;
mod socket;
mod tls;

pub use body::{BodyError, RequestBody};
#[cfg(test)]
pub use conn::connected;
pub use conn::{LARGE_BUFFER, UpgradedConn, UpstreamConn};
pub use pool::{PoolRegistry, ServerPool, set_lane};
pub use socket::Socket;
pub use tls::{UpstreamStream, UpstreamTls};
