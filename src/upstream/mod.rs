//! Upstream resources that outlive a snapshot: idle keep-alive connections
//! per server (`ServerPool`, kept in `PoolRegistry` by server name and
//! address), the request body type they carry (`RequestBody`), and the
//! stream they run over, plain or TLS (`UpstreamStream`, `UpstreamTls`).
//! Invariant: nothing here opens a connection or awaits; pools are lock-free
//! queues, and a connection enters a pool only after its response ended
//! cleanly.

mod body;
mod pool;
mod tls;

pub use body::{BodyError, RequestBody};
pub use pool::{PoolRegistry, ServerPool, UpstreamSender, set_lane};
pub use tls::{UpstreamStream, UpstreamTls};
