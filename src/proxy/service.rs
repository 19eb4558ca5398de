//! The request service: one call per request, from the client's head to the
//! response head. Loads the snapshot once, validates, routes, picks a server,
//! forwards, retries connect failures elsewhere, and turns every failure into
//! a response in one place.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
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
use super::identity::Identity;
use super::routing::{self, Facts, RequestLine, Routed};
use super::rules::{self, Vars};
use super::{limits, sticky, tunnel};
use crate::model::FrontendName;
use crate::runtime::{BackendPlan, FrontendPlan, RoutePlan, Snapshot};
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
// An `async` block returned by a plain `fn`, not an `async fn`: an `async fn`
// keeps each argument twice in its state, as the argument and as the local it
// is moved into, and this state is the request's (boxed per request by
// `guard::serve`: 2,192 bytes; it was 4,304 with `async fn`s; BENCHMARKS.md).
#[allow(clippy::manual_async_fn)]
pub fn serve(
    ctx: Arc<ConnContext>,
    request: Request<Incoming>,
    request_guard: RequestGuard,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> {
    async move {
        let started = Instant::now();
        let snapshot = ctx.shared.runtime.snapshot();
        let identity = Identity::of(
            ctx.peer.ip(),
            &ctx.peer_ip,
            &snapshot.topology.global,
            request.headers(),
        );
        let line = ctx.shared.log.as_ref().map(|_| RequestLine::of(&request));
        let facts = Facts {
            started,
            line: line.as_ref(),
            identity: &identity,
        };
        let frontend = snapshot
            .frontends
            .iter()
            .position(|f| f.listen == ctx.listen);
        // The request's one wait, for its server's response head, is made
        // here: `forward` and `relay_sent` do the rest without waiting, so no
        // future of theirs is made per request and moved into this one. What
        // `forward` gives is taken apart before that wait, so only its parts
        // stay in this state across it, not its whole result (544 bytes).
        let forwarded = 'forwarded: {
            let Outbound {
                request,
                response_timeout,
                context,
            } = match frontend.map(|f| forward(&ctx, &snapshot, f, request, facts, request_guard)) {
                Some(Ok(Forward::Outbound(outbound))) => outbound,
                Some(Ok(Forward::Answered(response))) => break 'forwarded Ok(response),
                Some(Err(failure)) => break 'forwarded Err(failure),
                None => break 'forwarded Err(Failure::from(ProxyError::NoRoute)),
            };
            let sent = attempt::send_with_retries(
                context.backend,
                context.pinned,
                request,
                context.upgrade.is_some(),
                response_timeout,
            )
            .await;
            relay_sent(&ctx, context, sent)
        };
        let mut response = match forwarded {
            Ok(response) => response,
            Err(failure) => answer_failure(&ctx, &snapshot, failure, facts),
        };
        identity.insert_request_id(response.headers_mut());
        // Every answer of a TLS frontend carries HSTS, the proxy's own too
        // (errors, redirects, direct answers).
        if let Some(hsts) = frontend.and_then(|f| snapshot.frontends[f].hsts.as_ref()) {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        Ok(response)
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
    facts: Facts<'_>,
) -> Response<ProxyBody> {
    let mut response = failure.error.to_response();
    if let Some(page) = snapshot.topology.errors.get(response.status()) {
        *response.body_mut() = ProxyBody::full(page.body.clone());
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, page.content_type.clone());
    }
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
    let frontend_name = frontend.map_or_else(|| FrontendName::new("-"), |f| f.name.clone());
    if let Some(log) = ctx.shared.log.as_ref() {
        if let Some(mut record) = facts.record(ctx, frontend_name, status, Some("proxy")) {
            record.backend = backend.map(|b| b.name.clone());
            record.server = server.map(|s| s.state.server.clone());
            log.record(&record);
        }
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
    facts: Facts<'a>,
    /// The target sent to the server when a rewrite changed it.
    rewritten: Option<PathAndQuery>,
    request_guard: RequestGuard,
    frontend_in_flight: InFlight,
}

/// What `forward` made of a request.
enum Forward<'a> {
    /// Answered without a server: a redirect, a route's own answer.
    Answered(Response<ProxyBody>),
    /// For a server of the backend.
    Outbound(Outbound<'a>),
}

/// A request ready for its backend's servers.
struct Outbound<'a> {
    request: Request<RequestBody>,
    /// The route's response timeout, or the backend's.
    response_timeout: Duration,
    context: ResponseContext<'a>,
}

/// What a request's response is relayed with.
struct ResponseContext<'a> {
    frontend: &'a FrontendPlan,
    backend: &'a BackendPlan,
    route: Option<&'a RoutePlan>,
    place: Place,
    scope: Scope<'a>,
    /// The server the sticky cookie names, if it may serve the request.
    pinned: Option<usize>,
    /// The client side of a protocol switch (WebSocket), if one is asked for.
    upgrade: Option<OnUpgrade>,
    /// The client's `Host`, for `{host}` in response rules.
    host: Option<HeaderValue>,
}

/// Routes one request and prepares it for its backend, or answers it.
fn forward<'a>(
    ctx: &ConnContext,
    snapshot: &'a Snapshot,
    f: usize,
    request: Request<Incoming>,
    facts: Facts<'a>,
    request_guard: RequestGuard,
) -> Result<Forward<'a>, Failure> {
    let frontend = &snapshot.frontends[f];
    ctx.activity.follow_timeouts(&frontend.timeouts);
    let frontend_in_flight = frontend.counters.begin();
    let mut place = Place {
        frontend: f,
        backend: None,
    };
    if let Some(port) = &frontend.redirect_https {
        let response = redirect_https(&request, port).map_err(|e| place.fail(e, None))?;
        frontend.counters.count_response(response.status().as_u16());
        return Ok(Forward::Answered(response));
    }
    let routed =
        routing::route(ctx, snapshot, frontend, &request).map_err(|e| place.fail(e, None))?;
    let (b, route, origin_form, rewritten) = match routed {
        Routed::Answer(response) => {
            return Ok(Forward::Answered(routing::answer_directly(
                ctx, frontend, facts, *response,
            )));
        }
        Routed::Backend {
            backend,
            route,
            origin_form,
            rewritten,
        } => (backend, route, origin_form, rewritten),
    };
    let scope = Scope {
        facts,
        rewritten,
        request_guard,
        frontend_in_flight,
    };
    place.backend = Some(b);
    let backend = &snapshot.backends[b];
    limits::check_declared_body(request.headers(), backend.max_body)
        .map_err(|e| place.fail(e, None))?;
    let prepared = prepare(
        ctx,
        Names { frontend, backend },
        route,
        facts.identity,
        request,
        origin_form,
    );
    let response_timeout = route
        .and_then(|r| r.route.response_timeout)
        .unwrap_or(backend.timeouts.response);
    Ok(Forward::Outbound(Outbound {
        request: prepared.request,
        response_timeout,
        context: ResponseContext {
            frontend,
            backend,
            route,
            place,
            scope,
            pinned: prepared.pinned,
            upgrade: prepared.upgrade,
            host: prepared.host,
        },
    }))
}

/// Turns what the servers answered into the client's response: the
/// backend's and the route's response rules, counts, then the relayed
/// response or the tunnel of a protocol switch.
fn relay_sent(
    ctx: &ConnContext,
    context: ResponseContext<'_>,
    sent: Result<Sent, (ProxyError, Option<usize>)>,
) -> Result<Response<ProxyBody>, Failure> {
    let ResponseContext {
        frontend,
        backend,
        route,
        place,
        scope,
        pinned,
        upgrade,
        host,
    } = context;
    let mut sent = sent.map_err(|(error, server)| place.fail(error, server))?;
    let s = sent.server;
    let vars = Vars {
        client_ip: scope.facts.identity.client_ip_str(),
        request_id: scope.facts.identity.request_id_text(),
        host: host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
        frontend: &frontend.name,
        backend: &backend.name,
        server: &backend.servers[s].state.server,
    };
    rules::apply_response_rules(sent.response.headers_mut(), backend, route, &vars);
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
    match upgrade {
        Some(upgrade) if status == http::StatusCode::SWITCHING_PROTOCOLS => {
            Ok(open_tunnel(ctx, backend, upgrade, sent))
        }
        upgrade => relay(
            ctx,
            frontend,
            backend,
            sent,
            pinned,
            upgrade.is_some(),
            scope,
        )
        .map_err(|e| place.fail(e, Some(s))),
    }
}

/// The frontend and backend of a request, to fill in names.
#[derive(Clone, Copy)]
struct Names<'a> {
    frontend: &'a FrontendPlan,
    backend: &'a BackendPlan,
}

/// `308` to the same host, path and query over `https://` (`port` is `""`
/// or `":8443"`).
fn redirect_https(
    request: &Request<Incoming>,
    port: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    headers::validate_request(
        request.method(),
        request.version(),
        request.uri(),
        request.headers(),
    )?;
    let host = headers::routing_host(request.uri(), request.headers())
        .ok_or(ProxyError::BadRequest("no host to redirect to"))?;
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::try_from(format!("https://{host}{port}{target}"))
        .map_err(|_| ProxyError::BadRequest("host not usable in a redirect"))?;
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(response)
}

/// A request ready for the servers.
struct Prepared {
    request: Request<RequestBody>,
    /// The client side of a protocol switch (WebSocket), if one is asked for.
    upgrade: Option<OnUpgrade>,
    /// The server the sticky cookie names, if it may serve the request.
    pinned: Option<usize>,
    /// The client's `Host`, for `{host}` in response rules.
    host: Option<HeaderValue>,
}

/// Rewrites the request for the servers: origin-form target, HTTP/1.1,
/// headers rewritten, sticky cookie taken out, request id set, then the
/// backend's and the route's header rules.
fn prepare(
    ctx: &ConnContext,
    Names { frontend, backend }: Names<'_>,
    route: Option<&RoutePlan>,
    identity: &Identity,
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
    // Room for what the proxy adds (`X-Forwarded-*`, the request id): a new
    // connection's first map grows once, not once per field (hyper reuses
    // a connection's maps, which then have the room).
    if parts.headers.capacity() < parts.headers.len() + 4 {
        parts.headers.reserve(4);
    }
    let authority = parts.uri.authority().cloned();
    parts.uri = origin_form;
    parts.version = Version::HTTP_11;
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        authority
            .as_ref()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::rewrite_request(
        &mut parts.headers,
        authority.as_ref(),
        &Forwarding {
            peer_ip: &ctx.peer_ip,
            is_tls: ctx.is_tls,
            add_forwarded: frontend.forward_headers,
            is_peer_trusted: identity.is_peer_trusted,
            host_override: backend.host.as_ref(),
        },
    );
    let pinned = sticky::sticky_server(backend, &mut parts.headers);
    identity.insert_request_id(&mut parts.headers);
    let vars = Vars {
        client_ip: identity.client_ip_str(),
        request_id: identity.request_id_text(),
        host: host.as_ref().and_then(|h| h.to_str().ok()).unwrap_or(""),
        frontend: &frontend.name,
        backend: &backend.name,
        server: "",
    };
    rules::apply_request_rules(&mut parts.headers, backend, route, &vars);
    if let Some((_, Some(protocol))) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    Prepared {
        request: Request::from_parts(
            parts,
            RequestBody::new(body, backend.max_body, frontend.timeouts.body_idle),
        ),
        upgrade: upgrade.map(|(on, _)| on),
        pinned,
        host,
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
        response,
        ..
    } = sent;
    let (mut head, body) = response.into_parts();
    let protocol = head.headers.get(header::UPGRADE).cloned();
    headers::rewrite_response(&mut head.headers);
    if let Some(protocol) = protocol {
        head.headers.insert(header::UPGRADE, protocol);
        head.headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let Some(upstream) = body.into_upgraded() else {
        return ProxyError::BadResponse {
            server: attempt::server_name(backend, s),
            reason: "101 while the request was still being sent",
        }
        .to_response();
    };
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
    let facts = scope.facts;
    let log = ctx.shared.log.as_ref().zip(facts.line).map(|(log, line)| {
        Box::new((
            log.clone(),
            LogRecord {
                time: SystemTime::now(),
                client: ctx.peer,
                client_ip: facts.client_ip(ctx),
                request_id: facts.identity.request_id.as_ref().map(|(_, v)| v.clone()),
                rewritten: scope.rewritten,
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
        pool: (!is_upgradable).then_some(pool),
        in_flight: sent.in_flight,
        frontend_in_flight: scope.frontend_in_flight,
        request_guard: scope.request_guard,
        frontend: Arc::clone(&frontend.counters),
        server: Arc::clone(&server.state),
        started: facts.started,
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
