//! Entry points for the fuzz targets in `fuzz/` and for the test that
//! replays their seed corpus (`tests/fuzz_corpus.rs`). Not an API: each
//! function takes arbitrary bytes, runs one input check of the proxy on
//! them, and panics only when a property of that check does not hold.
//! Invariant: nothing here is used by the proxy itself.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use super::headers;
use super::normalize::normalize_path;

/// The config loader: any text either loads or is refused with a message
/// naming the file; it never panics.
pub fn config(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Err(message) = crate::config::parse(text, Path::new("fuzz.toml")) {
        assert!(message.to_string().contains("fuzz.toml"), "{message}");
    }
}

/// Path normalisation: an accepted path starts with `/` (or is `*`), has no
/// dot segments left, and normalising it again changes nothing.
pub fn path(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(normal) = normalize_path(text) else {
        return;
    };
    if normal == "*" {
        return;
    }
    assert!(normal.starts_with('/'), "{text:?} -> {normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{text:?} -> {normal:?}");
    }
    if let Ok(again) = normalize_path(&normal) {
        assert_eq!(again, normal, "not stable: {text:?}");
    }
}

/// The request-head checks: validation and the routing host never panic
/// on any method, target, version and header fields that `http` accepts
/// (the input is a head: request line, then `name: value` lines).
pub fn request_head(bytes: &[u8]) {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(request_line) = lines.next() else {
        return;
    };
    let mut parts = request_line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(target)) else {
        return;
    };
    let version = match version {
        b"HTTP/1.0" => Version::HTTP_10,
        b"HTTP/2.0" => Version::HTTP_2,
        _ => Version::HTTP_11,
    };
    let mut fields = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        fields.append(name, value);
    }
    let _verdict = headers::validate_request(&method, version, &uri, &fields);
    let _host = headers::routing_host(&uri, &fields);
}
