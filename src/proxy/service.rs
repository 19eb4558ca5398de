//! The request service: one call per request, from the client's head to the
//! response head. Loads the snapshot once, validates, routes, picks a server,
//! forwards, retries connect failures elsewhere, and turns every failure into
//! a response in one place.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::Shared;
use super::access_log::LogRecord;
use super::body::{Exchange, ProxyBody};
use super::client_io::{ConnActivity, RequestGuard};
use super::connect::{self, ConnectFailure};
use super::error::ProxyError;
use super::headers::{self, Forwarding};
use super::normalize::normalize_path;
use super::tunnel;
use crate::balance;
use crate::model::FrontendName;
use crate::runtime::{BackendPlan, Snapshot};
use crate::state::{Health, InFlight};
use crate::upstream::{RequestBody, UpstreamSender};

/// What a client connection knows about itself; shared by its requests.
#[derive(Debug)]
pub struct ConnContext {
    pub shared: Arc<Shared>,
    /// Tells the socket's deadlines when requests start and end.
    pub activity: Arc<ConnActivity>,
    /// The frontend's configured address: how a request finds its frontend
    /// in whichever snapshot it loads.
    pub listen: SocketAddr,
    pub peer: SocketAddr,
    /// The peer's IP, formatted once for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    pub is_tls: bool,
}

/// Serves one request; never fails (failures are responses).
pub async fn serve(
    ctx: Arc<ConnContext>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let request_guard = ctx
        .activity
        .request_started(request.version() == Version::HTTP_2);
    let snapshot = ctx.shared.runtime.snapshot();
    let line = ctx.shared.log.as_ref().map(|_| RequestLine::of(&request));
    match forward(
        &ctx,
        &snapshot,
        request,
        started,
        line.as_ref(),
        request_guard,
    )
    .await
    {
        Ok(response) => Ok(response),
        Err(failure) => Ok(answer_failure(&ctx, &snapshot, failure, started, line)),
    }
}

/// The parts of the request line kept for the access log.
struct RequestLine {
    method: http::Method,
    target: Option<http::uri::PathAndQuery>,
    version: Version,
}

impl RequestLine {
    fn of<B>(request: &Request<B>) -> Self {
        RequestLine {
            method: request.method().clone(),
            target: request.uri().path_and_query().cloned(),
            version: request.version(),
        }
    }
}

/// A failure and where it happened.
struct Failure {
    error: ProxyError,
    /// Index into `Snapshot::frontends`.
    frontend: Option<usize>,
    /// (backend index, server index) when known.
    backend: Option<usize>,
    server: Option<usize>,
}

impl From<ProxyError> for Failure {
    fn from(error: ProxyError) -> Self {
        Failure {
            error,
            frontend: None,
            backend: None,
            server: None,
        }
    }
}

/// Logs, counts and answers a failure: the one place that does.
fn answer_failure(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    failure: Failure,
    started: Instant,
    line: Option<RequestLine>,
) -> Response<ProxyBody> {
    let response = failure.error.to_response();
    let status = response.status().as_u16();
    let frontend = failure.frontend.map(|f| &snapshot.frontends[f]);
    if let Some(frontend) = frontend {
        frontend.counters.count_response(status);
    }
    let backend = failure.backend.map(|b| &snapshot.backends[b]);
    let server = backend.zip(failure.server).map(|(b, s)| &b.servers[s]);
    if let Some(server) = server {
        server.state.counters.count_response(status);
    }
    if status >= 500 {
        tracing::warn!(
            client = %ctx.peer,
            backend = backend.map_or("-", |b| &*b.name),
            server = server.map_or("-", |s| &*s.state.server),
            status,
            "{}",
            failure.error
        );
    } else {
        tracing::debug!(client = %ctx.peer, status, "{}", failure.error);
    }
    if let (Some(log), Some(line)) = (ctx.shared.log.as_ref(), line) {
        log.record(LogRecord {
            time: SystemTime::now(),
            client: ctx.peer,
            frontend: frontend.map_or_else(|| FrontendName::new("-"), |f| f.name.clone()),
            backend: backend.map(|b| b.name.clone()),
            server: server.map(|s| s.state.server.clone()),
            method: line.method,
            target: line.target,
            version: line.version,
            status,
            bytes: 0,
            connect: None,
            response: None,
            total: started.elapsed(),
            termination: Some("proxy"),
        });
    }
    response
}

/// Routes and forwards one request.
async fn forward(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    mut request: Request<Incoming>,
    started: Instant,
    line: Option<&RequestLine>,
    request_guard: RequestGuard,
) -> Result<Response<ProxyBody>, Failure> {
    let (f, frontend) = snapshot
        .frontends
        .iter()
        .enumerate()
        .find(|(_, f)| f.listen == ctx.listen)
        .ok_or(ProxyError::NoRoute)?;
    let frontend_in_flight = frontend.counters.begin();
    let in_frontend = |error: ProxyError| Failure {
        error,
        frontend: Some(f),
        backend: None,
        server: None,
    };
    headers::validate_request(
        request.method(),
        request.version(),
        request.uri(),
        request.headers(),
    )
    .map_err(in_frontend)?;
    if ctx.activity.take_ambiguous_framing() {
        return Err(in_frontend(ProxyError::BadRequest(
            "both content-length and transfer-encoding",
        )));
    }
    let path =
        normalize_path(request.uri().path()).map_err(|e| in_frontend(ProxyError::BadPath(e)))?;
    let host = headers::routing_host(request.uri(), request.headers());
    let target = frontend
        .route(host.as_deref(), &path)
        .ok_or_else(|| in_frontend(ProxyError::NoRoute))?;
    let b = target
        .backend(|b| snapshot.backends[b].has_eligible_server())
        .ok_or_else(|| in_frontend(ProxyError::NoServer))?;
    let backend = &snapshot.backends[b];
    let in_backend = |error: ProxyError, server: Option<usize>| Failure {
        error,
        frontend: Some(f),
        backend: Some(b),
        server,
    };

    // Route on the normalised path and forward that same path (R5).
    let origin_form = origin_form(request.uri(), &path).map_err(|e| in_backend(e, None))?;
    drop(host);
    let upgrade = headers::is_upgrade(request.version(), request.headers()).then(|| {
        (
            hyper::upgrade::on(&mut request),
            request.headers().get(header::UPGRADE).cloned(),
        )
    });
    let (mut parts, body) = request.into_parts();
    let authority = parts.uri.authority().cloned();
    parts.uri = origin_form;
    parts.version = Version::HTTP_11;
    headers::rewrite_request(
        &mut parts.headers,
        authority.as_ref(),
        &Forwarding {
            peer_ip: &ctx.peer_ip,
            is_tls: ctx.is_tls,
            add_forwarded: frontend.forward_headers,
            host_override: backend.host.as_ref(),
        },
    );
    let pinned = sticky_server(backend, &mut parts.headers);
    if let Some((_, Some(protocol))) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let request = Request::from_parts(parts, RequestBody::new(body));

    let sent = send_with_retries(backend, pinned, request, upgrade.is_some()).await;
    let Sent {
        server: s,
        in_flight,
        sender,
        mut response,
        connect,
        response_time,
    } = sent.map_err(|(error, server)| in_backend(error, server))?;
    let server = &backend.servers[s];
    if let Err(reason) = headers::check_response_framing(response.headers()) {
        // The connection is dropped with `sender`, never pooled (R4).
        server.state.counters.count_response_error();
        return Err(in_backend(
            ProxyError::BadResponse {
                server: server_name(backend, s),
                reason,
            },
            Some(s),
        ));
    }
    server
        .state
        .counters
        .count_response(response.status().as_u16());

    let is_upgrade = upgrade.is_some();
    if let Some((client_upgrade, _)) = upgrade {
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let (mut head, _) = response.into_parts();
            let protocol = head.headers.get(header::UPGRADE).cloned();
            headers::rewrite_response(&mut head.headers);
            if let Some(protocol) = protocol {
                head.headers.insert(header::UPGRADE, protocol);
                head.headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            ctx.activity.upgraded();
            ctx.shared.tunnels.spawn(tunnel::run(
                client_upgrade,
                upstream_upgrade,
                backend.timeouts.tunnel,
                server.state.clone(),
                ctx.shared.stop_tunnels.clone(),
            ));
            return Ok(Response::from_parts(head, ProxyBody::empty()));
        }
    }
    let (mut head, body) = response.into_parts();

    headers::rewrite_response(&mut head.headers);
    if let Some(cookie) = &backend.cookie {
        if pinned != Some(s) {
            let values = if ctx.is_tls {
                &cookie.set_cookie_secure
            } else {
                &cookie.set_cookie
            };
            head.headers.append(header::SET_COOKIE, values[s].clone());
            head.headers
                .entry(header::CACHE_CONTROL)
                .or_insert(HeaderValue::from_static("private"));
        }
    }
    let log = ctx.shared.log.as_ref().zip(line).map(|(log, line)| {
        Box::new((
            log.clone(),
            LogRecord {
                time: SystemTime::now(),
                client: ctx.peer,
                frontend: frontend.name.clone(),
                backend: Some(backend.name.clone()),
                server: Some(server.state.server.clone()),
                method: line.method.clone(),
                target: line.target.clone(),
                version: line.version,
                status: head.status.as_u16(),
                bytes: 0,
                connect: Some(connect),
                response: Some(response_time),
                total: Duration::ZERO,
                termination: None,
            },
        ))
    });
    let Some(pool) = server.pool.clone() else {
        return Err(in_backend(ProxyError::NoServer, Some(s)));
    };
    let exchange = Exchange {
        // An upgradable connection is never pooled.
        sender: if is_upgrade { None } else { sender },
        pool,
        in_flight,
        frontend_in_flight,
        request_guard,
        frontend: Arc::clone(&frontend.counters),
        server: server.state.clone(),
        started,
        connect,
        response: response_time,
        bytes: 0,
        log,
    };
    Ok(Response::from_parts(
        head,
        ProxyBody::upstream(body, exchange),
    ))
}

/// The request target in origin form, with the normalised path.
fn origin_form(uri: &Uri, path: &str) -> Result<Uri, ProxyError> {
    if uri.authority().is_none() && uri.path() == path {
        return Ok(uri.clone());
    }
    let pq = match (uri.path() == path, uri.query()) {
        (true, _) => uri
            .path_and_query()
            .cloned()
            .ok_or(ProxyError::BadRequest("empty target"))?,
        (false, None) => path
            .parse()
            .map_err(|_| ProxyError::BadPath("unparseable path"))?,
        (false, Some(q)) => format!("{path}?{q}")
            .parse()
            .map_err(|_| ProxyError::BadPath("unparseable path"))?,
    };
    Ok(Uri::from(pq))
}

/// The server the request's sticky cookie names, if it may still serve it.
/// The cookie is removed from the request (HAProxy's `indirect`).
fn sticky_server(backend: &BackendPlan, headers: &mut http::HeaderMap) -> Option<usize> {
    let cookie = backend.cookie.as_ref()?;
    let mut found = None;
    let mut rewritten: Option<Vec<String>> = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        let mut kept = Vec::new();
        let mut matched = false;
        for pair in value.split(';') {
            let pair = pair.trim();
            match pair.split_once('=') {
                Some((name, v)) if name == &*cookie.name => {
                    found = found.or_else(|| backend.server_by_cookie(v));
                    matched = true;
                }
                _ if !pair.is_empty() => kept.push(pair),
                _ => {}
            }
        }
        let out = rewritten.get_or_insert_with(Vec::new);
        if matched {
            if !kept.is_empty() {
                out.push(kept.join("; "));
            }
        } else {
            out.push(value.to_owned());
        }
    }
    if let Some(values) = rewritten {
        if found.is_some() || values.len() != headers.get_all(header::COOKIE).iter().count() {
            headers.remove(header::COOKIE);
            for v in values {
                if let Ok(v) = HeaderValue::try_from(v) {
                    headers.append(header::COOKIE, v);
                }
            }
        }
    }
    found.filter(|&s| balance::accepts_sticky(&backend.servers[s].state))
}

/// A response head from a server.
struct Sent {
    server: usize,
    /// Counts the request as active on the server from the moment it is sent.
    in_flight: InFlight,
    /// The connection, to return to the pool when the body ends.
    sender: Option<UpstreamSender>,
    response: Response<Incoming>,
    connect: Duration,
    response_time: Duration,
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
async fn send_with_retries(
    backend: &BackendPlan,
    pinned: Option<usize>,
    mut request: Request<RequestBody>,
    is_upgrade: bool,
) -> Result<Sent, (ProxyError, Option<usize>)> {
    let mut tried = Tried::new();
    let mut attempts_left = backend.retries.saturating_add(1);
    // The first attempt honours the sticky cookie; an attempt after a stale
    // pooled connection stays on that server with a fresh connection.
    let mut forced = pinned;
    let mut fresh_only = false;
    loop {
        let choice = forced
            .take()
            .or_else(|| backend.balancer.pick(tried.as_slice()));
        let Some(s) = choice else {
            return Err((ProxyError::NoServer, None));
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
                connect::connect_upgradable(pool.addr, backend.timeouts.connect).await
            }
            None => connect::connect(pool.addr, backend.timeouts.connect).await,
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
                continue;
            }
        };
        server.state.record_conn_success();
        let connect = if is_reused {
            Duration::ZERO
        } else {
            connect_started.elapsed()
        };
        request.body_mut().count_into(&server.state.counters);
        let in_flight = server.state.counters.begin();
        let sent_at = Instant::now();
        let outcome =
            tokio::time::timeout(backend.timeouts.response, sender.try_send_request(request)).await;
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
                    server.state.counters.count_response_error();
                    let source = e.into_error();
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

fn server_name(backend: &BackendPlan, s: usize) -> String {
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
        ConnectFailure::Handshake(source) => ProxyError::Upstream { server, source },
    }
}
