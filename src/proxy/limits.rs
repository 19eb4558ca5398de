//! Size and count limits of a request (HARDENING.md 2.3), checked on the
//! head hyper parsed: hyper's own caps are looser (a 65 534-byte target,
//! a head as large as its read buffer), so each limit is checked again here
//! exactly. Owns `check_head` and `check_declared_body`.
//! Invariant: pure functions of the parsed head; no allocation.

use http::header::{self, HeaderMap};
use http::{Request, Uri};

use super::error::ProxyError;
use crate::model::FrontendLimits;

/// The request line and header lines against the frontend's limits: a long
/// target gets 414; too large a head, too many fields or too long a line
/// gets 431.
pub fn check_head<B>(request: &Request<B>, limits: &FrontendLimits) -> Result<(), ProxyError> {
    let target = target_len(request.uri());
    if target > limits.max_uri as usize {
        return Err(ProxyError::UriTooLong);
    }
    let headers = request.headers();
    if headers.len() > limits.max_headers as usize {
        return Err(ProxyError::HeadTooLarge("too many header fields"));
    }
    // `METHOD SP target SP HTTP/1.1 CRLF`, then `name: value CRLF` each, then CRLF.
    let mut head = request.method().as_str().len() + target + 12;
    for (name, value) in headers {
        let line = name.as_str().len() + 2 + value.len();
        if line > limits.max_header_line as usize {
            return Err(ProxyError::HeadTooLarge("header line too long"));
        }
        head += line + 2;
    }
    if head + 2 > limits.max_head as usize {
        return Err(ProxyError::HeadTooLarge("head too large"));
    }
    Ok(())
}

/// A `Content-Length` over `max_body` gets 413 before any server is asked.
pub fn check_declared_body(headers: &HeaderMap, max_body: u64) -> Result<(), ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > max_body => Err(ProxyError::BodyTooLarge),
        _ => Ok(()),
    }
}

/// The request target's length as the client wrote it.
fn target_len(uri: &Uri) -> usize {
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => scheme.len() + 3 + authority.as_str().len() + path,
        (None, Some(authority)) => authority.as_str().len() + path,
        _ => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FrontendLimits = FrontendLimits {
        max_uri: 20,
        max_head: 120,
        max_headers: 3,
        max_header_line: 30,
    };

    fn check(target: &str, headers: &[(&str, &str)], expected: Option<u16>) {
        let mut request = Request::get(target);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(()).expect("request");
        let got = check_head(&request, &LIMITS)
            .err()
            .map(|e| e.status().as_u16());
        assert_eq!(got, expected, "{target} {headers:?}");
    }

    #[test]
    fn heads_at_and_past_each_limit() {
        let x = |n: usize| "x".repeat(n);
        check(&format!("/{}", x(19)), &[], None);
        check(&format!("/{}", x(20)), &[], Some(414));
        check(&format!("http://a/{}", x(11)), &[], None);
        check(&format!("http://a/{}", x(12)), &[], Some(414));
        check("/", &[("a", "1"), ("b", "2"), ("c", "3")], None);
        check(
            "/",
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
            Some(431),
        );
        check("/", &[("a", &x(27))], None);
        check("/", &[("a", &x(28))], Some(431));
        // `GET /xxxxxx HTTP/1.1` and CRLF: 22; three lines of 30 and CRLF: 96;
        // the final CRLF: 2. That is 120, the limit.
        let lines = [("a", x(27)), ("b", x(27)), ("c", x(27))];
        let lines: Vec<(&str, &str)> = lines.iter().map(|(k, v)| (*k, v.as_str())).collect();
        check("/xxxxxx", &lines, None);
        check("/xxxxxxx", &lines, Some(431));
    }

    #[test]
    fn declared_bodies() {
        let mut headers = HeaderMap::new();
        assert!(check_declared_body(&headers, 10).is_ok(), "no length");
        headers.insert(header::CONTENT_LENGTH, "10".parse().expect("value"));
        assert!(check_declared_body(&headers, 10).is_ok());
        headers.insert(header::CONTENT_LENGTH, "11".parse().expect("value"));
        let status = check_declared_body(&headers, 10)
            .err()
            .map(|e| e.status().as_u16());
        assert_eq!(status, Some(413));
    }
}
