//! Request validation and header rewriting in both directions: the client's
//! framing is checked once, hop-by-hop headers never cross the proxy, and the
//! `X-Forwarded-*` headers are added.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use super::error::ProxyError;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
/// `Upgrade` is handled by the tunnel path.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRANSFER_ENCODING
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Checks what hyper (and h2) leave to the proxy: framing (R1), the
/// asterisk-form target (OPTIONS only) and `Host`. On HTTP/2 the target's
/// authority is `:authority`, which a `host` field must agree with (RFC
/// 9113 section 8.3.1).
pub fn validate_request(
    method: &Method,
    version: Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    if method == Method::CONNECT {
        return Err(ProxyError::MethodNotAllowed("CONNECT"));
    }
    if uri.path() == "*" && method != Method::OPTIONS {
        return Err(ProxyError::BadRequest(
            "asterisk-form target without OPTIONS",
        ));
    }
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(ProxyError::BadRequest(
                "both content-length and transfer-encoding",
            ));
        }
        let only_chunked = first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if !only_chunked || te.next().is_some() {
            return Err(ProxyError::BadRequest(
                "transfer-encoding other than chunked",
            ));
        }
        if version == Version::HTTP_10 {
            return Err(ProxyError::BadRequest("transfer-encoding in HTTP/1.0"));
        }
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one host header"));
    }
    if let Some(host) = host {
        if !is_valid_host(host.as_bytes()) {
            return Err(ProxyError::BadRequest("invalid host header"));
        }
        if let Some(authority) = uri.authority() {
            if !same_authority(authority.as_str().as_bytes(), host.as_bytes()) {
                return Err(ProxyError::BadRequest(
                    "host header differs from the request target",
                ));
            }
        }
    } else if version == Version::HTTP_11 && uri.authority().is_none() {
        return Err(ProxyError::BadRequest("missing host header"));
    }
    Ok(())
}

/// `reg-name` / IPv4 / `[IPv6]` with an optional port: no space, `@`, `/`...
fn is_valid_host(host: &[u8]) -> bool {
    !host.is_empty()
        && host.iter().all(|&c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'[' | b']' | b'~')
        })
}

fn same_authority(a: &[u8], b: &[u8]) -> bool {
    strip_default_port(a).eq_ignore_ascii_case(strip_default_port(b))
}

fn strip_default_port(h: &[u8]) -> &[u8] {
    h.strip_suffix(b":80")
        .or_else(|| h.strip_suffix(b":443"))
        .unwrap_or(h)
}

/// The host to route on: lowercase, without port. `None` when the request
/// names none. Borrowed unless it needs lowercasing.
pub fn routing_host<'a>(
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
) -> Option<std::borrow::Cow<'a, str>> {
    let raw = match headers.get(header::HOST) {
        Some(h) => h.to_str().ok()?,
        None => uri.authority()?.as_str(),
    };
    let without_port = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    if without_port.bytes().any(|c| c.is_ascii_uppercase()) {
        Some(std::borrow::Cow::Owned(without_port.to_ascii_lowercase()))
    } else {
        Some(std::borrow::Cow::Borrowed(without_port))
    }
}

/// Whether the request asks to switch protocols (WebSocket and the like);
/// `h2c` is never honoured.
pub fn is_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get(header::UPGRADE)
            .is_some_and(|u| !u.as_bytes().eq_ignore_ascii_case(b"h2c"))
        && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: first every header the `Connection` header
/// names (except ones whose removal would be unsafe), then the fixed list.
/// Scans the names once and removes only what is there: most messages carry
/// none, and then this costs one pass over the keys.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip(headers, |_| false);
}

/// `strip_hop_by_hop`, also removing the headers for which `extra` holds.
fn strip(headers: &mut HeaderMap, extra: impl Fn(&HeaderName) -> bool) {
    let mut found: [Option<HeaderName>; 12] = Default::default();
    let mut n = 0;
    let mut overflow = false;
    for name in headers.keys() {
        if is_hop_by_hop(name) || extra(name) {
            match found.get_mut(n) {
                Some(slot) => {
                    *slot = Some(name.clone());
                    n += 1;
                }
                None => overflow = true,
            }
        }
    }
    if n == 0 {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        remove_connection_listed(headers);
    }
    for name in found.iter_mut().take(n).filter_map(Option::take) {
        headers.remove(name);
    }
    if overflow {
        strip(headers, extra);
    }
}

/// Removes the headers named by `Connection` tokens.
fn remove_connection_listed(headers: &mut HeaderMap) {
    let mut named: [Option<HeaderName>; 8] = Default::default();
    let mut n = 0;
    let tokens = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"));
    for token in tokens {
        let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else {
            continue;
        };
        if is_protected(&name) {
            tracing::debug!(header = %name, "ignoring a Connection token that names a protected header");
            continue;
        }
        if let Some(slot) = named.get_mut(n) {
            *slot = Some(name);
            n += 1;
        }
    }
    for name in named.iter_mut().take(n).filter_map(Option::take) {
        headers.remove(name);
    }
}

/// Headers a client's `Connection` must not remove.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::AUTHORIZATION
        || name == header::COOKIE
}

/// What the proxy adds to a request on its way to a server.
pub struct Forwarding<'a> {
    /// The TCP peer's address, formatted once per connection.
    pub peer_ip: &'a HeaderValue,
    pub is_tls: bool,
    pub add_forwarded: bool,
    /// The peer is a trusted proxy: the client's `X-Forwarded-For` is
    /// appended to; otherwise it is replaced by the peer.
    pub is_peer_trusted: bool,
    /// The backend's own `Host`, replacing the client's.
    pub host_override: Option<&'a HeaderValue>,
}

/// Rewrites the request headers for the server (R2): no hop-by-hop or
/// framing headers, `X-Forwarded-*` added, `Host` set.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    authority: Option<&http::uri::Authority>,
    fwd: &Forwarding<'_>,
) {
    strip(headers, |name| {
        name == header::CONTENT_LENGTH || name == header::EXPECT
    });
    // One lookup of `Host`: the client's, or the target's authority; kept
    // for `X-Forwarded-Host` only when that is sent.
    let host = match headers.entry(header::HOST) {
        header::Entry::Occupied(entry) => Some(entry.into_mut()),
        header::Entry::Vacant(entry) => authority
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .map(|value| entry.insert(value)),
    }
    .filter(|_| fwd.add_forwarded)
    .cloned();
    if fwd.add_forwarded {
        if fwd.is_peer_trusted {
            append_forwarded_for(headers, fwd.peer_ip);
        } else {
            headers.insert(&X_FORWARDED_FOR, fwd.peer_ip.clone());
        }
        let proto = if fwd.is_tls { "https" } else { "http" };
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(proto));
        match host {
            Some(host) => headers.insert(&X_FORWARDED_HOST, host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    if let Some(host) = fwd.host_override {
        headers.insert(header::HOST, host.clone());
    }
}

/// `X-Forwarded-For: <client-supplied, joined in order>, <peer>`.
fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    let mut existing = headers.get_all(&X_FORWARDED_FOR).iter();
    let Some(first) = existing.next() else {
        headers.insert(&X_FORWARDED_FOR, peer.clone());
        return;
    };
    let mut joined = Vec::with_capacity(first.len() + peer.len() + 2);
    joined.extend_from_slice(first.as_bytes());
    for more in existing {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(more.as_bytes());
    }
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(peer.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(value) => {
            headers.insert(&X_FORWARDED_FOR, value);
        }
        Err(_) => {
            headers.insert(&X_FORWARDED_FOR, peer.clone());
        }
    }
}

/// Refuses a response whose framing is ambiguous (R4): a `Transfer-Encoding`
/// other than one `chunked`, or one beside a `Content-Length`.
pub fn check_response_framing(headers: &HeaderMap) -> Result<(), &'static str> {
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    let Some(first) = te.next() else {
        return Ok(());
    };
    if te.next().is_some()
        || !first
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked")
    {
        return Err("transfer-encoding other than chunked");
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        return Err("both content-length and transfer-encoding");
    }
    Ok(())
}

/// Rewrites a server's response headers for the client.
pub fn rewrite_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn check_validation(
        version: Version,
        uri: &str,
        pairs: &[(&str, &str)],
        expected: Result<(), &str>,
    ) {
        let uri: http::Uri = uri.parse().expect("uri");
        let got = validate_request(&Method::GET, version, &uri, &headers(pairs));
        let got = got.map_err(|e| match e {
            ProxyError::BadRequest(r) => r,
            _ => "other",
        });
        assert_eq!(got, expected, "{pairs:?}");
    }

    #[test]
    fn asterisk_form_is_for_options_only() {
        let headers = headers(&[("host", "a")]);
        let check = |method: Method| {
            validate_request(
                &method,
                Version::HTTP_11,
                &"*".parse().expect("uri"),
                &headers,
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(check(Method::OPTIONS), Ok(()));
        assert_eq!(
            check(Method::GET),
            Err("bad request: asterisk-form target without OPTIONS".to_owned())
        );
    }

    #[test]
    fn request_validation() {
        check_validation(
            Version::HTTP_2,
            "http://a/",
            &[("host", "b")],
            Err("host header differs from the request target"),
        );
        let v11 = Version::HTTP_11;
        check_validation(v11, "/", &[("host", "a.com")], Ok(()));
        check_validation(v11, "/", &[], Err("missing host header"));
        check_validation(Version::HTTP_10, "/", &[], Ok(()));
        check_validation(
            v11,
            "/",
            &[("host", "a.com"), ("host", "b.com")],
            Err("more than one host header"),
        );
        check_validation(v11, "/", &[("host", "a b")], Err("invalid host header"));
        check_validation(v11, "/", &[("host", "a@b")], Err("invalid host header"));
        check_validation(v11, "/", &[("host", "a/b")], Err("invalid host header"));
        check_validation(v11, "http://a.com/x", &[("host", "a.com:80")], Ok(()));
        check_validation(
            v11,
            "http://a.com/x",
            &[("host", "b.com")],
            Err("host header differs from the request target"),
        );
        check_validation(
            v11,
            "/",
            &[("host", "a"), ("transfer-encoding", "chunked")],
            Ok(()),
        );
        check_validation(
            v11,
            "/",
            &[("host", "a"), ("transfer-encoding", "Chunked ")],
            Ok(()),
        );
        check_validation(
            v11,
            "/",
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("content-length", "6"),
            ],
            Err("both content-length and transfer-encoding"),
        );
        check_validation(
            v11,
            "/",
            &[("host", "a"), ("transfer-encoding", "chunked, chunked")],
            Err("transfer-encoding other than chunked"),
        );
        check_validation(
            v11,
            "/",
            &[("host", "a"), ("transfer-encoding", "gzip, chunked")],
            Err("transfer-encoding other than chunked"),
        );
        check_validation(
            v11,
            "/",
            &[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "identity"),
            ],
            Err("transfer-encoding other than chunked"),
        );
        check_validation(
            Version::HTTP_10,
            "/",
            &[("transfer-encoding", "chunked")],
            Err("transfer-encoding in HTTP/1.0"),
        );
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_and_forwarded_headers_added() {
        let mut h = headers(&[
            ("host", "shop.example.com"),
            ("connection", "keep-alive, x-secret, host"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("content-length", "3"),
            ("expect", "100-continue"),
            ("x-app", "kept"),
        ]);
        let peer = HeaderValue::from_static("127.0.0.1");
        let fwd = Forwarding {
            peer_ip: &peer,
            is_tls: false,
            add_forwarded: true,
            is_peer_trusted: true,
            host_override: None,
        };
        rewrite_request(&mut h, None, &fwd);
        let get = |k: &str| h.get(k).map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(get("x-secret"), None);
        assert_eq!(get("keep-alive"), None);
        assert_eq!(get("te"), None);
        assert_eq!(get("connection"), None);
        assert_eq!(get("content-length"), None);
        assert_eq!(get("expect"), None);
        assert_eq!(get("host").as_deref(), Some("shop.example.com"));
        assert_eq!(
            get("x-forwarded-for").as_deref(),
            Some("10.0.0.1, 10.0.0.2, 127.0.0.1")
        );
        assert_eq!(get("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(get("x-forwarded-host").as_deref(), Some("shop.example.com"));
        assert_eq!(get("x-app").as_deref(), Some("kept"));
    }

    #[test]
    fn connection_listing_x_forwarded_for_keeps_the_proxy_entry() {
        let mut h = headers(&[
            ("host", "a"),
            ("connection", "x-forwarded-for"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let peer = HeaderValue::from_static("127.0.0.1");
        let fwd = Forwarding {
            peer_ip: &peer,
            is_tls: false,
            add_forwarded: true,
            is_peer_trusted: true,
            host_override: None,
        };
        rewrite_request(&mut h, None, &fwd);
        assert_eq!(h.get("x-forwarded-for"), Some(&peer));
    }

    #[test]
    fn host_override_and_missing_host() {
        let peer = HeaderValue::from_static("::1");
        let over = HeaderValue::from_static("old.example.com");
        let fwd = Forwarding {
            peer_ip: &peer,
            is_tls: true,
            add_forwarded: true,
            is_peer_trusted: false,
            host_override: Some(&over),
        };
        let mut h = headers(&[("host", "localhost:8000")]);
        rewrite_request(&mut h, None, &fwd);
        assert_eq!(h.get("host"), Some(&over));
        assert_eq!(
            h.get("x-forwarded-host").map(HeaderValue::as_bytes),
            Some(&b"localhost:8000"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(HeaderValue::as_bytes),
            Some(&b"https"[..])
        );

        let fwd = Forwarding {
            peer_ip: &peer,
            is_tls: false,
            add_forwarded: false,
            is_peer_trusted: false,
            host_override: None,
        };
        let mut h = HeaderMap::new();
        let authority: http::uri::Authority = "h2.example.com".parse().expect("authority");
        rewrite_request(&mut h, Some(&authority), &fwd);
        assert_eq!(
            h.get("host").map(HeaderValue::as_bytes),
            Some(&b"h2.example.com"[..])
        );
        assert_eq!(h.get("x-forwarded-for"), None);
    }

    #[test]
    fn routing_host_is_lowercase_without_port() {
        let uri: http::Uri = "/".parse().expect("uri");
        let h = headers(&[("host", "Shop.Example.com:8000")]);
        assert_eq!(routing_host(&uri, &h).as_deref(), Some("shop.example.com"));
        let h = headers(&[("host", "[::1]:8000")]);
        assert_eq!(routing_host(&uri, &h).as_deref(), Some("[::1]"));
        let uri: http::Uri = "http://a.com:81/".parse().expect("uri");
        assert_eq!(
            routing_host(&uri, &HeaderMap::new()).as_deref(),
            Some("a.com")
        );
    }

    #[test]
    fn upgrade_detection() {
        let ws = headers(&[
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
        ]);
        assert!(is_upgrade(Version::HTTP_11, &ws));
        assert!(!is_upgrade(Version::HTTP_2, &ws));
        let h2c = headers(&[("upgrade", "h2c"), ("connection", "upgrade")]);
        assert!(!is_upgrade(Version::HTTP_11, &h2c));
        let no_conn = headers(&[("upgrade", "websocket")]);
        assert!(!is_upgrade(Version::HTTP_11, &no_conn));
    }
}
