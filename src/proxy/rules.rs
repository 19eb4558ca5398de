//! A route's actions on the data path: the answers the proxy gives itself
//! (redirect, respond, deny), the path rewrite, and the header rules of the
//! backend and the route with their variables filled in.
//! Invariant: everything applied here was compiled at load; the only
//! allocations are a rewritten path, a templated header value and a
//! `keep_path` redirect's `Location`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::normalize::normalize_path;
use crate::model::{Redirect, Respond, Rewrite, Variable};
use crate::runtime::{BackendPlan, RoutePlan, TargetPlan};

/// The answer when the target is one the proxy gives itself.
pub fn answer(target: &TargetPlan, path: &str, query: Option<&str>) -> Option<Response<ProxyBody>> {
    match target {
        TargetPlan::Backend(_) | TargetPlan::Split { .. } => None,
        TargetPlan::Redirect(redirect) => Some(redirect_response(redirect, path, query)),
        TargetPlan::Respond(respond) => Some(respond_response(respond)),
        TargetPlan::Deny => Some(fixed(
            StatusCode::FORBIDDEN,
            Bytes::from_static(b"403 Forbidden\n"),
            HeaderValue::from_static("text/plain"),
        )),
    }
}

fn redirect_response(redirect: &Redirect, path: &str, query: Option<&str>) -> Response<ProxyBody> {
    let location = match redirect.keep_path {
        false => redirect.location.clone(),
        true => {
            let base = redirect.location.as_bytes();
            let mut value =
                Vec::with_capacity(base.len() + path.len() + query.map_or(0, str::len) + 1);
            value.extend_from_slice(base);
            value.extend_from_slice(path.as_bytes());
            if let Some(q) = query {
                value.push(b'?');
                value.extend_from_slice(q.as_bytes());
            }
            HeaderValue::from_maybe_shared(Bytes::from(value))
                .unwrap_or_else(|_| redirect.location.clone())
        }
    };
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = redirect.code;
    response.headers_mut().insert(header::LOCATION, location);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

fn respond_response(respond: &Respond) -> Response<ProxyBody> {
    fixed(
        respond.status,
        respond.body.clone(),
        respond.content_type.clone(),
    )
}

fn fixed(status: StatusCode, body: Bytes, content_type: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The path after the route's rewrite, normalised again; `None` when the
/// route has none or it leaves the path as is.
pub fn rewrite(route: Option<&RoutePlan>, path: &str) -> Result<Option<String>, ProxyError> {
    let Some(rewrite) = route.and_then(|r| r.route.rewrite.as_ref()) else {
        return Ok(None);
    };
    rewrite_path(rewrite, path)
}

/// Applies one rewrite and normalises the result, which must start with `/`.
pub fn rewrite_path(rewrite: &Rewrite, path: &str) -> Result<Option<String>, ProxyError> {
    let Some(new) = rewrite.apply(path) else {
        return Ok(None);
    };
    let normal = normalize_path(&new).map_err(ProxyError::BadPath)?;
    if !normal.starts_with('/') {
        return Err(ProxyError::BadPath(
            "rewritten path does not start with '/'",
        ));
    }
    Ok(Some(normal.into_owned()))
}

/// The values of a message's template variables.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub client_ip: &'a str,
    pub request_id: &'a str,
    pub host: &'a str,
    pub frontend: &'a str,
    pub backend: &'a str,
    /// Empty on requests: the server is not chosen yet.
    pub server: &'a str,
}

impl<'a> Vars<'a> {
    pub fn value(&self, variable: Variable) -> &'a str {
        match variable {
            Variable::ClientIp => self.client_ip,
            Variable::RequestId => self.request_id,
            Variable::Host => self.host,
            Variable::Frontend => self.frontend,
            Variable::Backend => self.backend,
            Variable::Server => self.server,
        }
    }
}

/// The backend's request rules, then the route's.
pub fn apply_request_rules(
    headers: &mut HeaderMap,
    backend: &BackendPlan,
    route: Option<&RoutePlan>,
    vars: &Vars<'_>,
) {
    let value_of = |v| vars.value(v);
    backend.request_headers.apply(headers, &value_of);
    if let Some(route) = route {
        route.route.request_headers.apply(headers, &value_of);
    }
}

/// The backend's response rules, then the route's.
pub fn apply_response_rules(
    headers: &mut HeaderMap,
    backend: &BackendPlan,
    route: Option<&RoutePlan>,
    vars: &Vars<'_>,
) {
    let value_of = |v| vars.value(v);
    backend.response_headers.apply(headers, &value_of);
    if let Some(route) = route {
        route.route.response_headers.apply(headers, &value_of);
    }
}
