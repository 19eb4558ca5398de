//! The request path's pure steps, reachable from `benches/hot_path.rs` so
//! that each can be measured alone: the CL+TE head scanner, the request
//! checks, the header rewrites. Not an API.
//! Invariant: nothing here is used by the proxy itself; it only re-exports.

pub use super::head_scan::{HeadScan, Verdict};
pub use super::headers::{Forwarding, rewrite_request, rewrite_response, validate_request};
pub use super::limits::check_head;
