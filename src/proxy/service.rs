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
use hyper::upgrade::OnUpgrade;

use super::Shared;
use super::access_log::LogRecord;
use super::attempt::{self, Sent};
use super::body::{Exchange, ProxyBody};
use super::client_io::{ConnActivity, RequestGuard};
use super::error::ProxyError;
use super::guard::ResetWatch;
use super::headers::{self, Forwarding};
use super::normalize::normalize_path;
use super::{sticky, tunnel};
use crate::model::FrontendName;
use crate::runtime::{BackendPlan, FrontendPlan, Snapshot};
use crate::state::InFlight;
use crate::upstream::RequestBody;

/// What a client connection knows about itself; shared by its requests.
#[derive(Debug)]
pub struct ConnContext {
    pub shared: Arc<Shared>,
    /// Tells the socket's deadlines when requests start and end.
    pub activity: Arc<ConnActivity>,
    /// HTTP/2 streams reset right after they started.
    pub resets: ResetWatch,
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

/// Where a failure happened, to attribute it.
#[derive(Clone, Copy)]
struct Place {
    frontend: usize,
    backend: Option<usize>,
}

impl Place {
    fn fail(self, error: ProxyError, server: Option<usize>) -> Failure {
        Failure {
            error,
            frontend: Some(self.frontend),
            backend: self.backend,
            server,
        }
    }
}

/// What a request holds from its head to the end of its response body.
struct Scope<'a> {
    started: Instant,
    line: Option<&'a RequestLine>,
    request_guard: RequestGuard,
    frontend_in_flight: InFlight,
}

/// Routes and forwards one request.
async fn forward(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    request: Request<Incoming>,
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
    let scope = Scope {
        started,
        line,
        request_guard,
        frontend_in_flight: frontend.counters.begin(),
    };
    let mut place = Place {
        frontend: f,
        backend: None,
    };
    let (b, origin_form) =
        route(ctx, snapshot, frontend, &request).map_err(|e| place.fail(e, None))?;
    place.backend = Some(b);
    let backend = &snapshot.backends[b];
    let prepared = prepare(ctx, frontend, backend, request, origin_form);
    let sent = attempt::send_with_retries(
        backend,
        prepared.pinned,
        prepared.request,
        prepared.upgrade.is_some(),
    )
    .await
    .map_err(|(error, server)| place.fail(error, server))?;
    let s = sent.server;
    if let Err(reason) = headers::check_response_framing(sent.response.headers()) {
        // The connection is dropped with `sent.sender`, never pooled (R4).
        backend.servers[s].state.counters.count_response_error();
        let server = attempt::server_name(backend, s);
        return Err(place.fail(ProxyError::BadResponse { server, reason }, Some(s)));
    }
    let status = sent.response.status();
    backend.servers[s]
        .state
        .counters
        .count_response(status.as_u16());
    frontend.counters.count_response(status.as_u16());
    match prepared.upgrade {
        Some(upgrade) if status == http::StatusCode::SWITCHING_PROTOCOLS => {
            Ok(open_tunnel(ctx, backend, upgrade, sent))
        }
        upgrade => relay(
            ctx,
            frontend,
            backend,
            sent,
            prepared.pinned,
            upgrade.is_some(),
            scope,
        )
        .map_err(|e| place.fail(e, Some(s))),
    }
}

/// Validates the request and finds its backend; returns the backend and the
/// request target to forward, in origin form with the normalised path.
fn route(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    frontend: &FrontendPlan,
    request: &Request<Incoming>,
) -> Result<(usize, Uri), ProxyError> {
    headers::validate_request(
        request.method(),
        request.version(),
        request.uri(),
        request.headers(),
    )?;
    if ctx.activity.take_ambiguous_framing() {
        return Err(ProxyError::BadRequest(
            "both content-length and transfer-encoding",
        ));
    }
    let path = normalize_path(request.uri().path()).map_err(ProxyError::BadPath)?;
    let host = headers::routing_host(request.uri(), request.headers());
    let target = frontend
        .route(host.as_deref(), &path)
        .ok_or(ProxyError::NoRoute)?;
    let b = target
        .backend(|b| snapshot.backends[b].has_eligible_server())
        .ok_or(ProxyError::NoServer)?;
    // Route on the normalised path and forward that same path (R5).
    Ok((b, origin_form(request.uri(), &path)?))
}

/// A request ready for the servers.
struct Prepared {
    request: Request<RequestBody>,
    /// The client side of a protocol switch (WebSocket), if one is asked for.
    upgrade: Option<OnUpgrade>,
    /// The server the sticky cookie names, if it may serve the request.
    pinned: Option<usize>,
}

/// Rewrites the request for the servers: origin-form target, HTTP/1.1,
/// headers rewritten, sticky cookie taken out.
fn prepare(
    ctx: &ConnContext,
    frontend: &FrontendPlan,
    backend: &BackendPlan,
    mut request: Request<Incoming>,
    origin_form: Uri,
) -> Prepared {
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
    let pinned = sticky::sticky_server(backend, &mut parts.headers);
    if let Some((_, Some(protocol))) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    Prepared {
        request: Request::from_parts(parts, RequestBody::new(body, frontend.timeouts.body_idle)),
        upgrade: upgrade.map(|(on, _)| on),
        pinned,
    }
}

/// Answers 101 and hands both upgraded connections to a tunnel task.
fn open_tunnel(
    ctx: &ConnContext,
    backend: &BackendPlan,
    client: OnUpgrade,
    sent: Sent,
) -> Response<ProxyBody> {
    let Sent {
        server: s,
        mut response,
        ..
    } = sent;
    let upstream = hyper::upgrade::on(&mut response);
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
        client,
        upstream,
        backend.timeouts.tunnel,
        Arc::clone(&backend.servers[s].state),
        ctx.shared.stop_tunnels.clone(),
    ));
    Response::from_parts(head, ProxyBody::empty())
}

/// Streams a server's response back; its body ends the exchange.
fn relay(
    ctx: &ConnContext,
    frontend: &FrontendPlan,
    backend: &BackendPlan,
    sent: Sent,
    pinned: Option<usize>,
    is_upgradable: bool,
    scope: Scope<'_>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let s = sent.server;
    let server = &backend.servers[s];
    let pool = server.pool.clone().ok_or(ProxyError::NoServer)?;
    let (mut head, body) = sent.response.into_parts();
    headers::rewrite_response(&mut head.headers);
    sticky::set_cookie(backend, s, pinned, ctx.is_tls, &mut head.headers);
    let log = ctx.shared.log.as_ref().zip(scope.line).map(|(log, line)| {
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
                connect: Some(sent.connect),
                response: Some(sent.response_time),
                total: Duration::ZERO,
                termination: None,
            },
        ))
    });
    let exchange = Exchange {
        // A connection that may switch protocols is never pooled.
        sender: if is_upgradable { None } else { sent.sender },
        pool,
        in_flight: sent.in_flight,
        frontend_in_flight: scope.frontend_in_flight,
        request_guard: scope.request_guard,
        frontend: Arc::clone(&frontend.counters),
        server: Arc::clone(&server.state),
        started: scope.started,
        connect: sent.connect,
        response: sent.response_time,
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
