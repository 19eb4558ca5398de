//! Routing one request: validation of what hyper leaves to the proxy, the
//! route choice on the normalised path (host, path and the route's other
//! conditions), the answers the proxy gives itself, and the target to
//! forward (normalised, rewritten if the route says so). Also what the
//! service knows of a request before routing it (`Facts`), for its log line.
//! Invariant: a request is routed and forwarded on the same normalised path
//! (R5), or on what the route's rewrite makes of it; routing allocates only
//! for a path that needed normalising or rewriting.

use std::time::{Instant, SystemTime};

use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::access_log::LogRecord;
use super::body::ProxyBody;
use super::error::ProxyError;
use super::identity::Identity;
use super::normalize::normalize_path;
use super::rules;
use super::service::ConnContext;
use super::{headers, limits};
use crate::model::{FrontendName, RequestView};
use crate::runtime::{FrontendPlan, RoutePlan, Snapshot};

/// What the service knows of a request before routing it.
#[derive(Clone, Copy)]
pub(super) struct Facts<'a> {
    pub(super) started: Instant,
    pub(super) line: Option<&'a RequestLine>,
    pub(super) identity: &'a Identity,
}

impl Facts<'_> {
    /// The access log record of a request answered without a server.
    pub(super) fn record(
        &self,
        ctx: &ConnContext,
        frontend: FrontendName,
        status: u16,
        termination: Option<&'static str>,
    ) -> Option<LogRecord> {
        let line = self.line?;
        Some(LogRecord {
            time: SystemTime::now(),
            client: ctx.peer,
            client_ip: self.client_ip(ctx),
            request_id: self.identity.request_id.as_ref().map(|(_, v)| v.clone()),
            frontend,
            backend: None,
            server: None,
            method: line.method.clone(),
            target: line.target.clone(),
            rewritten: None,
            version: line.version,
            status,
            bytes: 0,
            connect: None,
            response: None,
            total: self.started.elapsed(),
            termination,
        })
    }

    /// The client's address for the log, when it is not the peer's.
    pub(super) fn client_ip(&self, ctx: &ConnContext) -> Option<std::net::IpAddr> {
        (self.identity.client_ip != ctx.peer.ip().to_canonical()).then_some(self.identity.client_ip)
    }
}

/// The parts of the request line kept for the access log.
pub(super) struct RequestLine {
    pub(super) method: http::Method,
    pub(super) target: Option<http::uri::PathAndQuery>,
    pub(super) version: Version,
}

impl RequestLine {
    pub(super) fn of<B>(request: &Request<B>) -> Self {
        RequestLine {
            method: request.method().clone(),
            target: request.uri().path_and_query().cloned(),
            version: request.version(),
        }
    }
}

/// Where routing sends a request.
pub(super) enum Routed<'s> {
    /// The proxy answers itself (redirect, respond, deny).
    Answer(Box<Response<ProxyBody>>),
    Backend {
        backend: usize,
        /// `None`: the frontend's default target.
        route: Option<&'s RoutePlan>,
        /// The target to forward, in origin form, rewritten if the route says so.
        origin_form: Uri,
        rewritten: Option<PathAndQuery>,
    },
}

/// Answers a request the proxy answers itself, counted on the frontend.
pub(super) fn answer_directly(
    ctx: &ConnContext,
    frontend: &FrontendPlan,
    facts: Facts<'_>,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let status = response.status().as_u16();
    frontend.counters.count_response(status);
    if let Some(log) = ctx.shared.log.as_ref() {
        if let Some(record) = facts.record(ctx, frontend.name.clone(), status, None) {
            log.record(&record);
        }
    }
    response
}

/// Validates the request and finds where it goes: an answer of the proxy's
/// own, or a backend with the request target to forward, in origin form
/// with the normalised (and maybe rewritten) path.
pub(super) fn route<'s>(
    ctx: &ConnContext,
    snapshot: &Snapshot,
    frontend: &'s FrontendPlan,
    request: &Request<Incoming>,
) -> Result<Routed<'s>, ProxyError> {
    limits::check_head(request, &frontend.limits)?;
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
    let host = match frontend.routes_on_host {
        true => headers::routing_host(request.uri(), request.headers()),
        false => None,
    };
    let query = request.uri().query();
    let view = RequestView {
        host: host.as_deref(),
        path: &path,
        method: request.method(),
        headers: request.headers(),
        query,
    };
    let chosen = frontend.route(&view).ok_or(ProxyError::NoRoute)?;
    if let Some(response) = rules::answer(chosen.target, &path, query) {
        return Ok(Routed::Answer(Box::new(response)));
    }
    let b = chosen
        .target
        .backend(|b| snapshot.backends[b].has_eligible_server())
        .ok_or(ProxyError::NoServer)?;
    // Route on the normalised path and forward that same path (R5), or
    // what the route's rewrite makes of it.
    let rewritten = rules::rewrite(chosen.route, &path)?;
    let origin_form = origin_form(request.uri(), rewritten.as_deref().unwrap_or(&path))?;
    Ok(Routed::Backend {
        backend: b,
        route: chosen.route,
        rewritten: rewritten.and_then(|_| origin_form.path_and_query().cloned()),
        origin_form,
    })
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
