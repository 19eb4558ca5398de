//! Cookie persistence, HAProxy's `cookie NAME insert indirect nocache`: the
//! cookie names a server by an opaque id, is honoured while that server may
//! serve sticky clients, and never reaches the servers.

use http::HeaderValue;
use http::header::{self, HeaderMap};

use crate::balance;
use crate::runtime::BackendPlan;

/// The server the request's sticky cookie names, if it may still serve it.
/// The cookie is removed from the request (HAProxy's `indirect`).
pub fn sticky_server(backend: &BackendPlan, headers: &mut HeaderMap) -> Option<usize> {
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

/// Marks a response from server `s` so the client sticks to it, unless it
/// already does.
pub fn set_cookie(
    backend: &BackendPlan,
    s: usize,
    pinned: Option<usize>,
    is_tls: bool,
    headers: &mut HeaderMap,
) {
    let Some(cookie) = &backend.cookie else {
        return;
    };
    if pinned == Some(s) {
        return;
    }
    let values = if is_tls {
        &cookie.set_cookie_secure
    } else {
        &cookie.set_cookie
    };
    headers.append(header::SET_COOKIE, values[s].clone());
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private"));
}
