//! Single config values: names, listen addresses, server addresses, hosts,
//! path prefixes, status ranges, methods, cookie names, integer ranges.
//! Invariant: pure functions from text to a model value or to an error message
//! that is lowercase, has no trailing period and says what is expected.

use std::net::{Ipv6Addr, SocketAddr};

use crate::model::{HostMatch, ServerAddress, StatusRange};

/// Frontend, backend and server names: `[A-Za-z0-9_.-]+`.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn parse_name(s: &str) -> Result<(), String> {
    if is_valid_name(s) {
        Ok(())
    } else {
        Err(format!(
            "expected a name of letters, digits, '_', '.' and '-', got {s:?}"
        ))
    }
}

/// A listen address: an IP literal and a port (port 0 picks a free one).
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!(r#"expected an IP address and port like "0.0.0.0:8000" or "[::1]:8000", got {s:?}"#)
    })
}

/// `host:port`; host is an IP literal (`[::1]` for IPv6, stored without the
/// brackets) or a DNS name; port 1..=65535.
pub fn parse_server_address(s: &str) -> Result<ServerAddress, String> {
    let (host, port) = split_host_port(s)?;
    let Some(port) = port else {
        return Err(format!(
            r#"expected host:port like "users:8080" or "[::1]:8080", got {s:?} (no port)"#
        ));
    };
    Ok(ServerAddress {
        host: host.into(),
        port,
    })
}

/// A `Host` header value sent upstream: a host and an optional port.
pub fn parse_host_header(s: &str) -> Result<(), String> {
    split_host_port(s).map(|_| ())
}

/// Splits `host[:port]`, checking both parts.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("expected ']' after the IPv6 address in {s:?}"));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("expected an IPv6 address inside [ ], got {host:?}"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("expected ':' and a port after ']' in {s:?}")),
            },
        }
    } else {
        match s.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err(format!(
                    r#"expected an IPv6 address in brackets like "[::1]:8080", got {s:?}"#
                ));
            }
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    if !s.starts_with('[') && !is_dns_name(host) {
        return Err(format!(
            r#"expected a host name or IP address like "users" or "10.0.0.5", got {host:?}"#
        ));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(format!("expected a port from 1 to 65535, got {p:?}")),
        },
    };
    Ok((host, port))
}

/// Dot-separated labels of letters, digits, '-' and '_' (also fits IPv4).
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// A route's host: `shop.example.com` or `*.example.com`, matched lowercase.
pub fn parse_route_host(s: &str) -> Result<HostMatch, String> {
    let lower = s.to_ascii_lowercase();
    if lower.contains(':') {
        return Err(format!(
            "expected a host without a port (routes match any port), got {s:?}"
        ));
    }
    let (name, wildcard) = match lower.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (lower.as_str(), false),
    };
    if !is_dns_name(name) {
        return Err(format!(
            r#"expected a host like "shop.example.com" or "*.example.com", got {s:?}"#
        ));
    }
    Ok(if wildcard {
        HostMatch::Suffix(format!(".{name}").into())
    } else {
        HostMatch::Exact(name.into())
    })
}

/// A path prefix: starts with '/', no whitespace, query or fragment. A
/// trailing '/' is dropped (matching is at segment boundaries anyway).
pub fn parse_path_prefix(s: &str) -> Result<Box<str>, String> {
    if !s.starts_with('/') {
        return Err(format!("expected a path starting with '/', got {s:?}"));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!(
            "expected a path without whitespace, '?' or '#', got {s:?}"
        ));
    }
    let trimmed = s.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/" } else { trimmed }.into())
}

/// A check path: starts with '/', no whitespace (a query string is fine).
pub fn parse_check_path(s: &str) -> Result<Box<str>, String> {
    if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(s.into())
    } else {
        Err(format!(
            "expected a path starting with '/' and without whitespace, got {s:?}"
        ))
    }
}

/// `"200"` or `"200-399"`, within 100..=599, min <= max.
pub fn parse_expect(s: &str) -> Result<StatusRange, String> {
    let status = |t: &str| -> Option<u16> {
        let n: u16 = t.parse().ok()?;
        (t.len() == 3 && (100..=599).contains(&n)).then_some(n)
    };
    let range = match s.split_once('-') {
        Some((min, max)) => status(min).zip(status(max)),
        None => status(s).map(|n| (n, n)),
    };
    match range {
        Some((min, max)) if min <= max => Ok(StatusRange { min, max }),
        _ => Err(format!(
            r#"expected a status "NNN" or a range "NNN-NNN" within 100-599, like "200-399", got {s:?}"#
        )),
    }
}

pub fn parse_method(s: &str) -> Result<http::Method, String> {
    match s {
        "GET" => Ok(http::Method::GET),
        "HEAD" => Ok(http::Method::HEAD),
        "OPTIONS" => Ok(http::Method::OPTIONS),
        _ => Err(format!(r#"expected "GET", "HEAD" or "OPTIONS", got {s:?}"#)),
    }
}

/// A cookie name: an HTTP token (letters, digits and ``!#$%&'*+-.^_`|~``).
pub fn parse_cookie_name(s: &str) -> Result<Box<str>, String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.is_empty() && s.bytes().all(is_tchar) {
        Ok(s.into())
    } else {
        Err(format!(
            "expected a cookie name of letters, digits and !#$%&'*+-.^_`|~, got {s:?}"
        ))
    }
}

/// A size: digits and a unit `B`, `KiB`, `MiB` or `GiB`. The error is empty:
/// the caller says what is expected, with its bounds.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let scale: u64 = match &s[digits..] {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(String::new()),
    };
    let n: u64 = s[..digits].parse().map_err(|_| String::new())?;
    n.checked_mul(scale).ok_or_else(String::new)
}

/// An integer within `min..=max`.
pub fn in_range(n: i64, min: u32, max: u32) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ if max == u32::MAX => Err(format!("expected an integer of at least {min}, got {n}")),
        _ => Err(format!("expected an integer from {min} to {max}, got {n}")),
    }
}
