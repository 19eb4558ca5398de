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
    make_private(headers);
}

/// HAProxy's `nocache`: a response that sets the sticky cookie must not be
/// stored by a shared cache, or every client served from that cache would
/// stick to one server. Drops `public`, `max-age` and `s-maxage` and adds
/// `private`; other directives (`no-store`, `must-revalidate`, ...) stay.
fn make_private(headers: &mut HeaderMap) {
    let mut kept: Vec<&str> = Vec::new();
    let mut changed = false;
    let mut is_private = false;
    for value in headers.get_all(header::CACHE_CONTROL) {
        // A value that is not text is dropped; `private` replaces it.
        let Ok(text) = value.to_str() else {
            changed = true;
            continue;
        };
        for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let name = directive.split('=').next().unwrap_or(directive).trim();
            if ["public", "max-age", "s-maxage"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
            {
                changed = true;
            } else {
                is_private |= name.eq_ignore_ascii_case("private");
                kept.push(directive);
            }
        }
    }
    if is_private && !changed {
        return;
    }
    if !is_private {
        kept.insert(0, "private");
    }
    match HeaderValue::try_from(kept.join(", ")) {
        Ok(value) => {
            headers.insert(header::CACHE_CONTROL, value);
        }
        Err(_) => {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(sent: &[&str], expected: &str) {
        let mut headers = HeaderMap::new();
        for v in sent {
            headers.append(
                header::CACHE_CONTROL,
                HeaderValue::from_str(v).expect("value"),
            );
        }
        make_private(&mut headers);
        let got: Vec<_> = headers.get_all(header::CACHE_CONTROL).iter().collect();
        assert_eq!(got, [expected], "{sent:?}");
    }

    #[test]
    fn a_response_that_sets_the_cookie_is_private() {
        check(&[], "private");
        check(&["public, max-age=600"], "private");
        check(
            &["max-age=60", "must-revalidate"],
            "private, must-revalidate",
        );
        check(&["S-MaxAge=60, no-transform"], "private, no-transform");
        check(&["private, max-age=60"], "private");
        check(&["private"], "private");
        check(&["no-store"], "private, no-store");
    }
}
