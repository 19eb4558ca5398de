//! One request's attempts to reach a server: pick (honouring a sticky
//! server first), take a pooled connection or open one, send, and retry
//! connect failures on another server. A request whose bytes reached a
//! server is never sent again, with one exception (HARDENING.md, stale
//! pooled connection): an idempotent request without a body, sent on a
//! reused connection that closed before any byte of a response, goes once
//! more on a fresh connection to the same server.

use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Body as _;
use hyper::body::Incoming;

use super::connect::{self, ConnectFailure};
use super::error::ProxyError;
use crate::runtime::BackendPlan;
use crate::state::{Health, InFlight};
use crate::upstream::{BodyError, RequestBody, UpstreamSender};

/// A response head from a server.
pub struct Sent {
    pub server: usize,
    /// Counts the request as active on the server from the moment it is sent.
    pub in_flight: InFlight,
    /// The connection, to return to the pool when the body ends.
    pub sender: Option<UpstreamSender>,
    pub response: Response<Incoming>,
    pub connect: Duration,
    pub response_time: Duration,
}

/// Servers already tried for one request.
struct Tried {
    servers: [usize; 12],
    len: usize,
}

impl Tried {
    fn new() -> Self {
        Tried {
            servers: [usize::MAX; 12],
            len: 0,
        }
    }

    fn push(&mut self, server: usize) {
        if self.len < self.servers.len() {
            self.servers[self.len] = server;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[usize] {
        &self.servers[..self.len]
    }
}

/// Sends the request to a server, retrying connect failures on other
/// servers. A request whose bytes reached a server is never sent again.
/// `response_timeout` is the backend's, or the route's when it sets one.
pub async fn send_with_retries(
    backend: &BackendPlan,
    pinned: Option<usize>,
    mut request: Request<RequestBody>,
    is_upgrade: bool,
    response_timeout: Duration,
) -> Result<Sent, (ProxyError, Option<usize>)> {
    let mut tried = Tried::new();
    let mut attempts_left = backend.retries.saturating_add(1);
    // The first attempt honours the sticky cookie; an attempt after a stale
    // pooled connection stays on that server with a fresh connection.
    let mut forced = pinned;
    let mut fresh_only = false;
    // The last connect failure, answered when no server is left to try.
    let mut failed: Option<(ProxyError, Option<usize>)> = None;
    loop {
        let choice = forced
            .take()
            .or_else(|| backend.balancer.pick(tried.as_slice()));
        let Some(s) = choice else {
            return Err(failed.unwrap_or((ProxyError::NoServer, None)));
        };
        let server = &backend.servers[s];
        let Some(pool) = &server.pool else {
            tried.push(s);
            continue;
        };
        let connect_started = Instant::now();
        let mut reused = None;
        if !is_upgrade && !fresh_only {
            while let Some(mut sender) = pool.checkout() {
                if sender.ready().await.is_ok() {
                    reused = Some(sender);
                    break;
                }
            }
        }
        let is_reused = reused.is_some();
        let sender = match reused {
            Some(sender) => Ok(sender),
            None if is_upgrade => {
                connect::connect_upgradable(
                    pool.addr,
                    server.tls.as_ref(),
                    backend.timeouts.connect,
                )
                .await
            }
            None => {
                connect::connect(pool.addr, server.tls.as_ref(), backend.timeouts.connect).await
            }
        };
        let mut sender = match sender {
            Ok(sender) => sender,
            Err(failure) => {
                let error = connect_error(backend, s, failure);
                tried.push(s);
                attempts_left -= 1;
                if attempts_left == 0 {
                    return Err((error, Some(s)));
                }
                server.state.counters.count_retry();
                server.state.counters.count_redispatch();
                failed = Some((error, Some(s)));
                continue;
            }
        };
        server.state.record_conn_success();
        let connect = if is_reused {
            Duration::ZERO
        } else {
            connect_started.elapsed()
        };
        // A copy of the head, to send again if the reused connection turns
        // out to have been closed by the server (its keep-alive ended while
        // the request was on the way).
        let mut replay = match is_reused {
            true => replayable(&request),
            false => None,
        };
        request.body_mut().count_into(&server.state.counters);
        let in_flight = server.state.counters.begin();
        let sent_at = Instant::now();
        let outcome =
            tokio::time::timeout(response_timeout, sender.try_send_request(request)).await;
        match outcome {
            Ok(Ok(response)) => {
                return Ok(Sent {
                    server: s,
                    in_flight,
                    sender: Some(sender),
                    response,
                    connect,
                    response_time: sent_at.elapsed(),
                });
            }
            Ok(Err(mut e)) => match e.take_message() {
                // Not sent: the pooled connection closed under us. Try again
                // on a fresh connection; this is no retry.
                Some(unsent) if is_reused => {
                    request = unsent;
                    forced = Some(s);
                    fresh_only = true;
                    continue;
                }
                _ => {
                    let source = e.into_error();
                    // The client's body broke, stalled for `body_idle` or
                    // passed `max_body`: the client's fault, not the
                    // server's (the upstream request was aborted, R3).
                    match BodyError::find(&source) {
                        Some(BodyError::TooLarge(_)) => {
                            return Err((ProxyError::BodyTooLarge, Some(s)));
                        }
                        Some(BodyError::Client(_)) => {
                            let error = ProxyError::BadRequest("malformed request body");
                            return Err((error, Some(s)));
                        }
                        Some(BodyError::Idle(_)) => {
                            return Err((ProxyError::ClientBodyTimeout, Some(s)));
                        }
                        None => {}
                    }
                    // No response byte came: the server closed the pooled
                    // connection under the request. Once, on a fresh one.
                    if let Some(again) = replay.take().filter(|_| !source.is_parse()) {
                        drop(in_flight);
                        request = again;
                        forced = Some(s);
                        fresh_only = true;
                        continue;
                    }
                    server.state.counters.count_response_error();
                    return Err((
                        if source.is_parse() {
                            ProxyError::BadResponse {
                                server: server_name(backend, s),
                                reason: "unparseable response",
                            }
                        } else {
                            ProxyError::Upstream {
                                server: server_name(backend, s),
                                source,
                            }
                        },
                        Some(s),
                    ));
                }
            },
            Err(_elapsed) => {
                server.state.counters.count_response_error();
                return Err((
                    ProxyError::ResponseTimeout {
                        server: server_name(backend, s),
                    },
                    Some(s),
                ));
            }
        }
    }
}

pub fn server_name(backend: &BackendPlan, s: usize) -> String {
    format!("{}/{}", backend.name, backend.servers[s].state.server)
}

/// Counts a connect failure, applies passive health, and names the error.
fn connect_error(backend: &BackendPlan, s: usize, failure: ConnectFailure) -> ProxyError {
    let state = &backend.servers[s].state;
    state.counters.count_connection_error();
    let consecutive = state.record_conn_failure();
    if let Some(fall) = backend.passive_fall {
        // Only a checked server can come back, so only it is taken out.
        if state.is_checked() && consecutive >= fall && state.set_health(Health::Down) {
            state.update_check_status(|c| c.reason = Some("passive".to_owned()));
            tracing::warn!(
                backend = %backend.name,
                server = %state.server,
                consecutive,
                "server DOWN: consecutive connection failures"
            );
        }
    }
    let server = server_name(backend, s);
    match failure {
        ConnectFailure::Io(source) => ProxyError::Connect { server, source },
        ConnectFailure::Timeout => ProxyError::ConnectTimeout { server },
        ConnectFailure::Tls(source) => ProxyError::UpstreamTls { server, source },
        ConnectFailure::Handshake(source) => ProxyError::Upstream { server, source },
    }
}

/// A copy of `request`'s head with an empty body, when sending it twice is
/// safe: an idempotent method (RFC 9110, 9.2.2) and no body.
fn replayable(request: &Request<RequestBody>) -> Option<Request<RequestBody>> {
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RequestBody::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}
