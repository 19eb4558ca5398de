//! Routes: the conditions a request must meet to take one, where it goes or
//! what answers it (`Target`), and what is done to it on the way (path
//! rewrite, header rules, response timeout). Owns `Route`, `Target`,
//! `HostMatch`, the compiled conditions and `Rewrite`.
//! Invariant: everything is compiled at load (regexes, header names and
//! values); `Route::matches` allocates nothing and tries the cheap
//! conditions (host, path prefix, exact path, method) before the others.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::BackendId;
use super::rules::HeaderRules;

/// One routing rule: every condition present must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub host: Option<HostMatch>,
    /// Matches at segment boundaries: `/api/users` matches `/api/users`,
    /// `/api/users/7` and `/api/users?x`, not `/api/usersx`.
    pub path_prefix: Option<Box<str>>,
    /// The whole normalised path, exactly.
    pub path: Option<Box<str>>,
    /// Searched in the normalised path (anchor it with `^` and `$`).
    pub path_regex: Option<PathRegex>,
    /// Empty: any method.
    pub methods: Box<[Method]>,
    pub headers: Box<[HeaderMatch]>,
    /// Cookie name and exact value.
    pub cookies: Box<[(Box<str>, Box<str>)]>,
    /// Query parameter name and exact value, compared as sent.
    pub query: Box<[(Box<str>, Box<str>)]>,
    pub target: Target,
    /// Applied to the path after routing, before forwarding.
    pub rewrite: Option<Rewrite>,
    /// Applied after the backend's own rules.
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// Replaces the backend's `timeouts.response` for this route.
    pub response_timeout: Option<Duration>,
}

/// What a route looks at in a request; built once per request, borrowing.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Lowercase, without port; `None` when the request names no host.
    pub host: Option<&'a str>,
    /// Normalised.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
}

/// How a route matches the request's host (port removed, lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// `shop.example.com`
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`: any host ending so, with at
    /// least one more label in front.
    Suffix(Box<str>),
}

/// A regular expression compiled at load; equal when the pattern is.
#[derive(Debug, Clone)]
pub struct PathRegex(pub regex::Regex);

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// A request header that must be present, with this exact value if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    pub name: HeaderName,
    /// `None`: any value (`"*"` in the file).
    pub value: Option<HeaderValue>,
}

/// What a matched request gets: a backend, or an answer from the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Backend(BackendId),
    /// Weighted split across backends; weights are relative, at least one > 0.
    Split(Vec<(BackendId, u32)>),
    Redirect(Redirect),
    Respond(Respond),
    /// 403, answered by the proxy.
    Deny,
}

/// A redirect answered by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub code: StatusCode,
    /// The `Location`; with `keep_path`, without a trailing `/`, and the
    /// request's path and query are appended.
    pub location: HeaderValue,
    pub keep_path: bool,
}

/// A fixed answer from the proxy (a maintenance page, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
}

/// A path rewrite. Each kind leaves a path it does not match unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum Rewrite {
    /// Removes a leading path prefix (at a segment boundary).
    StripPrefix(Box<str>),
    /// Replaces a leading path prefix (at a segment boundary); `to` starts with `/`.
    ReplacePrefix { from: Box<str>, to: Box<str> },
    /// Replaces the regex's match with `to`, whose `$1` / `${name}` insert
    /// captures; `to` starts with `/`, so the result does.
    Regex {
        regex: PathRegex,
        to: Box<[Expansion]>,
        /// `to` as written, for descriptions.
        source: Box<str>,
    },
}

/// One piece of a regex rewrite's replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    Literal(Box<str>),
    /// A capture group by index; an unmatched group inserts nothing.
    Group(usize),
}

impl Route {
    /// A route with no condition yet, sending to `target`.
    pub fn new(target: Target) -> Route {
        Route {
            host: None,
            path_prefix: None,
            path: None,
            path_regex: None,
            methods: Box::new([]),
            headers: Box::new([]),
            cookies: Box::new([]),
            query: Box::new([]),
            target,
            rewrite: None,
            request_headers: HeaderRules::default(),
            response_headers: HeaderRules::default(),
            response_timeout: None,
        }
    }

    /// Whether the request takes this route: every condition holds.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        let host_ok = match (&self.host, req.host) {
            (None, _) => true,
            (Some(m), Some(h)) => m.matches(h),
            (Some(_), None) => false,
        };
        host_ok
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path_has_prefix(req.path, p))
            && self.path.as_deref().is_none_or(|p| p == req.path)
            && (self.methods.is_empty() || self.methods.contains(req.method))
            && self
                .path_regex
                .as_ref()
                .is_none_or(|r| r.0.is_match(req.path))
            && self.headers.iter().all(|h| h.matches(req.headers))
            && self
                .cookies
                .iter()
                .all(|(name, value)| has_cookie(req.headers, name, value))
            && self
                .query
                .iter()
                .all(|(name, value)| has_query_param(req.query, name, value))
    }

    /// Whether the route has any condition at all.
    pub fn has_condition(&self) -> bool {
        self.host.is_some()
            || self.path_prefix.is_some()
            || self.path.is_some()
            || self.path_regex.is_some()
            || !self.methods.is_empty()
            || !self.headers.is_empty()
            || !self.cookies.is_empty()
            || !self.query.is_empty()
    }
}

impl HostMatch {
    /// `host` is already lowercase and without port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => **h == *host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(&**s),
        }
    }
}

impl HeaderMatch {
    fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter();
        match &self.value {
            None => values.next().is_some(),
            Some(want) => values.any(|v| v == want),
        }
    }
}

/// Prefix match at a segment boundary: `/api` matches `/api`, `/api/x`, not `/apix`.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// Whether any `Cookie` header carries `name=value`.
fn has_cookie(headers: &HeaderMap, name: &str, value: &str) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .any(|pair| {
            let pair = pair.trim_ascii();
            match pair.iter().position(|&b| b == b'=') {
                Some(i) => {
                    &pair[..i] == name.as_bytes()
                        && strip_quotes(&pair[i + 1..]) == value.as_bytes()
                }
                None => false,
            }
        })
}

fn strip_quotes(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Whether the query string carries `name=value` (a bare `name` has the value "").
fn has_query_param(query: Option<&str>, name: &str, value: &str) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|pair| match pair.split_once('=') {
            Some((n, v)) => n == name && v == value,
            None => pair == name && value.is_empty(),
        })
    })
}

impl Rewrite {
    /// The rewritten path, or `None` when this rewrite leaves `path` as is.
    /// The result is not normalised yet.
    pub fn apply(&self, path: &str) -> Option<String> {
        match self {
            Rewrite::StripPrefix(prefix) => {
                if !path_has_prefix(path, prefix) {
                    return None;
                }
                let rest = &path[prefix.len()..];
                Some(match rest.starts_with('/') {
                    true => rest.to_owned(),
                    false => format!("/{rest}"),
                })
            }
            Rewrite::ReplacePrefix { from, to } => {
                if !path_has_prefix(path, from) {
                    return None;
                }
                let rest = &path[from.len()..];
                let mut out = String::with_capacity(to.len() + rest.len() + 1);
                out.push_str(to);
                match (to.ends_with('/'), rest.starts_with('/')) {
                    (true, true) => out.push_str(&rest[1..]),
                    (false, false) if !rest.is_empty() => {
                        out.push('/');
                        out.push_str(rest);
                    }
                    _ => out.push_str(rest),
                }
                Some(out)
            }
            Rewrite::Regex { regex, to, .. } => {
                let caps = regex.0.captures(path)?;
                let whole = caps.get(0)?;
                let mut out = String::with_capacity(path.len() + 16);
                out.push_str(&path[..whole.start()]);
                for part in to {
                    match part {
                        Expansion::Literal(s) => out.push_str(s),
                        Expansion::Group(i) => {
                            out.push_str(caps.get(*i).map_or("", |m| m.as_str()));
                        }
                    }
                }
                out.push_str(&path[whole.end()..]);
                Some(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<HostMatch>, prefix: Option<&str>) -> Route {
        Route {
            host,
            path_prefix: prefix.map(Into::into),
            ..Route::new(Target::Backend(BackendId(0)))
        }
    }

    fn view<'a>(
        host: Option<&'a str>,
        path: &'a str,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> RequestView<'a> {
        RequestView {
            host,
            path,
            method: &Method::GET,
            headers,
            query,
        }
    }

    #[test]
    fn host_and_prefix_matching() {
        let h = HeaderMap::new();
        let exact = || Some(HostMatch::Exact("a.com".into()));
        let suffix = || Some(HostMatch::Suffix(".a.com".into()));
        let cases: &[(Route, Option<&str>, &str, bool)] = &[
            (route(None, Some("/api/users")), None, "/api/users", true),
            (route(None, Some("/api/users")), None, "/api/users/7", true),
            (route(None, Some("/api/users")), None, "/api/usersx", false),
            (route(None, Some("/api/")), None, "/api/x", true),
            (route(None, Some("/")), None, "/anything", true),
            (route(exact(), None), Some("a.com"), "/", true),
            (route(exact(), None), Some("b.com"), "/", false),
            (route(exact(), None), None, "/", false),
            (route(suffix(), None), Some("x.a.com"), "/", true),
            (route(suffix(), None), Some("a.com"), "/", false),
            (route(suffix(), Some("/p")), Some("x.a.com"), "/q", false),
        ];
        for (r, host, path, expected) in cases {
            assert_eq!(
                r.matches(&view(*host, path, &h, None)),
                *expected,
                "{r:?} {host:?} {path}"
            );
        }
    }

    #[test]
    fn cookie_and_query_conditions() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; beta=yes"));
        h.append(header::COOKIE, HeaderValue::from_static("q=\"x\""));
        assert!(has_cookie(&h, "beta", "yes"));
        assert!(has_cookie(&h, "q", "x"));
        assert!(!has_cookie(&h, "beta", "no"));
        assert!(!has_cookie(&h, "et", "yes"));
        assert!(has_query_param(Some("v=2&x"), "v", "2"));
        assert!(has_query_param(Some("v=2&x"), "x", ""));
        assert!(!has_query_param(Some("v=22"), "v", "2"));
        assert!(!has_query_param(None, "v", "2"));
    }

    fn check_rewrite(rewrite: &Rewrite, path: &str, expected: Option<&str>) {
        assert_eq!(
            rewrite.apply(path).as_deref(),
            expected,
            "{rewrite:?} {path}"
        );
    }

    #[test]
    fn rewrites() {
        let strip = Rewrite::StripPrefix("/api".into());
        check_rewrite(&strip, "/api/users/7", Some("/users/7"));
        check_rewrite(&strip, "/api", Some("/"));
        check_rewrite(&strip, "/apix", None);
        let replace = Rewrite::ReplacePrefix {
            from: "/api/users".into(),
            to: "/users".into(),
        };
        check_rewrite(&replace, "/api/users/7", Some("/users/7"));
        check_rewrite(&replace, "/api/users", Some("/users"));
        let to_root = Rewrite::ReplacePrefix {
            from: "/old".into(),
            to: "/".into(),
        };
        check_rewrite(&to_root, "/old/x", Some("/x"));
        let regex = Rewrite::Regex {
            regex: PathRegex(regex::Regex::new("^/v1/(.*)$").expect("regex")),
            to: Box::new([Expansion::Literal("/".into()), Expansion::Group(1)]),
            source: "/$1".into(),
        };
        check_rewrite(&regex, "/v1/users/7", Some("/users/7"));
        check_rewrite(&regex, "/v2/users", None);
    }
}
