//! One request's attempts to reach a server: pick (honouring a sticky
//! server first), take a pooled connection or open one, send, and retry
//! connect failures on another server. A request whose bytes reached a
//! server is never sent again, with one exception (HARDENING.md, stale
//! pooled connection): an idempotent request without a body, sent on a
//! reused connection that closed before any byte of a response, goes once
//! more on a fresh connection to the same server.

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use hyper::body::Body as _;

use super::connect::{self, ConnectFailure};
use super::error::ProxyError;
use super::h1_client::{self, H1Error, SendError, UpstreamBody};
use crate::runtime::BackendPlan;
use crate::state::{Health, InFlight};
use crate::upstream::{BodyError, RequestBody};

/// A response head from a server.
pub struct Sent {
    pub server: usize,
    /// Counts the request as active on the server from the moment it is sent.
    pub in_flight: InFlight,
    /// Its body holds the connection, which goes back to the pool when the
    /// body ends cleanly.
    pub response: Response<UpstreamBody>,
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
/// servers. A request whose bytes reached a server is never sent again,
/// but for a stale pooled connection (see the module's head).
/// `response_timeout` is the backend's, or the route's when it sets one.
// Not an `async fn`, which would keep its arguments twice in the request's
// state (see `service::serve`).
#[allow(clippy::manual_async_fn)]
pub fn send_with_retries(
    backend: &BackendPlan,
    pinned: Option<usize>,
    mut request: Request<RequestBody>,
    is_upgrade: bool,
    response_timeout: Duration,
) -> impl Future<Output = Result<Sent, (ProxyError, Option<usize>)>> {
    async move {
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
            // One clock read: a pooled connection's age, the start of a new
            // one's connect, and the send on a pooled one.
            let now = Instant::now();
            let reused = match is_upgrade || fresh_only {
                true => None,
                false => pool.checkout(now),
            };
            let is_reused = reused.is_some();
            let (conn, connect) = match reused {
                Some(conn) => (Ok(conn), Duration::ZERO),
                // Boxed: opening a connection is the rare case, and its future
                // (a TLS handshake's state) would otherwise make every
                // request's state larger.
                None => {
                    let conn = Box::pin(connect::connect(
                        pool.addr,
                        server.tls.as_ref(),
                        backend.timeouts.connect,
                    ))
                    .await;
                    (conn, now.elapsed())
                }
            };
            let conn = match conn {
                Ok(conn) => conn,
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
            let is_replayable = is_reused && is_idempotent(request.method());
            request.body_mut().count_into(&server.state.counters);
            let in_flight = server.state.counters.begin();
            let sent_at = match is_reused {
                true => now,
                false => Instant::now(),
            };
            let start = match is_reused {
                true => h1_client::Start::AfterReadyTasks,
                false => h1_client::Start::Now,
            };
            // The exchange and its deadline live in this future's state and
            // are polled here, not moved into futures of their own
            // (`h1_client::Exchange`). The deadline comes from the clock read
            // above; `sleep` copes with one past the clock's range.
            let mut exchange = h1_client::Exchange::start(conn, request, is_upgrade, start);
            let deadline = match sent_at.checked_add(response_timeout) {
                Some(deadline) => tokio::time::sleep_until(deadline.into()),
                None => tokio::time::sleep(response_timeout),
            };
            let mut deadline = pin!(deadline);
            // The exchange first, as `tokio::time::timeout` polls its future.
            let head = poll_fn(|cx| match exchange.poll_head(cx) {
                Poll::Ready(head) => Poll::Ready(Some(head)),
                Poll::Pending => deadline.as_mut().poll(cx).map(|()| None),
            })
            .await;
            let Some(head) = head else {
                server.state.counters.count_response_error();
                return Err((
                    ProxyError::ResponseTimeout {
                        server: server_name(backend, s),
                    },
                    Some(s),
                ));
            };
            let SendError {
                error,
                request: unsent,
                nothing_sent,
            } = match exchange.finish(head) {
                Ok(response) => {
                    return Ok(Sent {
                        server: s,
                        in_flight,
                        response,
                        connect,
                        response_time: sent_at.elapsed(),
                    });
                }
                Err(failure) => failure,
            };
            // The client's body broke, stalled for `body_idle` or passed
            // `max_body`: the client's fault, not the server's (the upstream
            // request was aborted, R3).
            if let H1Error::Body(body) = &error {
                return Err((
                    match body {
                        BodyError::TooLarge(_) => ProxyError::BodyTooLarge,
                        BodyError::Idle(_) => ProxyError::ClientBodyTimeout,
                        BodyError::Client(_) | BodyError::Short => {
                            ProxyError::BadRequest("malformed request body")
                        }
                    },
                    Some(s),
                ));
            }
            // No byte of a response came on a reused connection: the server
            // closed it under the request. Not one byte written: again, on a
            // fresh connection, whatever the method; an idempotent request
            // without a body: once more.
            if let Some(again) = unsent.filter(|r| {
                error.invalid_reason().is_none()
                    && is_reused
                    && (nothing_sent || (is_replayable && r.body().is_end_stream()))
            }) {
                drop(in_flight);
                request = again;
                forced = Some(s);
                fresh_only = true;
                continue;
            }
            server.state.counters.count_response_error();
            let server = server_name(backend, s);
            return Err((
                match error.invalid_reason() {
                    Some(reason) => ProxyError::BadResponse { server, reason },
                    None => ProxyError::Upstream {
                        server,
                        source: error,
                    },
                },
                Some(s),
            ));
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
    }
}

/// Whether sending the request twice is safe (RFC 9110, 9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
