//! Frontends and their routes: names, listen addresses (unique, and not the
//! admin's), timeouts, route conditions and targets resolved to `BackendId`s.
//! Invariant: a route has at least one condition and exactly one target
//! (backend, split, redirect, respond or deny), and every backend it names
//! exists.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{Collector, entry};
use super::raw::{Int, RawFrontend, RawLimits, RawRoute, Text};
use super::validate::{Uniques, integer, optional, required, timeout};
use super::values::{in_range, parse_name, parse_path_prefix, parse_route_host, parse_socket_addr};
use super::{answers, rules};
use crate::model::{
    BackendId, Direction, Frontend, FrontendLimits, FrontendName, FrontendTimeouts, Route, Target,
};

/// Backend names a route may refer to.
pub(super) type BackendIds<'a> = HashMap<&'a str, BackendId>;

/// Validates every frontend. `admin` is the admin listen address with its
/// span when the file sets it, and `None` when the file's one is invalid.
pub(super) fn frontends(
    c: &mut Collector<'_>,
    raw: &[Spanned<RawFrontend>],
    backends: &BackendIds<'_>,
    admin: Option<(SocketAddr, Option<Range<usize>>)>,
    dir: &Path,
) -> Vec<Frontend> {
    let mut names = Uniques::new("frontend name");
    let mut listens = Uniques::new("listen address");
    let default_admin = match admin {
        Some((listen, Some(span))) => {
            listens.insert(c, listen, "admin.listen".to_owned(), span);
            None
        }
        Some((listen, None)) => Some(listen),
        None => None,
    };
    let mut frontends = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let f = spanned.get_ref();
        let path = entry("frontend", f.name.as_ref().map(|n| n.get_ref().as_str()), i);
        let at = (path.as_str(), spanned.span());
        let name = required(c, at.clone(), "name", f.name.as_ref(), String::new(), |s| {
            parse_name(s).map(|()| s.to_owned())
        });
        if let (Some(text), false) = (&f.name, name.is_empty()) {
            names.insert(c, format!("{name:?}"), format!("{path}.name"), text.span());
        }
        let placeholder = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let listen = required(
            c,
            at,
            "listen",
            f.listen.as_ref(),
            placeholder,
            parse_socket_addr,
        );
        // Port 0 binds a fresh port each time, so it never collides.
        if let (Some(text), true) = (&f.listen, listen.port() != 0) {
            let field = format!("{path}.listen");
            if default_admin == Some(listen) {
                let message = format!("{listen} is the admin listen address; expected another");
                c.at(text.span(), field, message);
            } else {
                listens.insert(c, listen, field, text.span());
            }
        }
        let default_target = optional(
            c,
            &path,
            "default_backend",
            f.default_backend.as_ref(),
            None,
            |s| backend_id(s, backends).map(|id| Some(Target::Backend(id))),
        );
        let t = f.timeouts.as_ref();
        let timeouts_path = format!("{path}.timeouts");
        let timeouts = FrontendTimeouts {
            client_header: timeout(
                c,
                &timeouts_path,
                "client_header",
                t.and_then(|t| t.client_header.as_ref()),
                Duration::from_secs(10),
            ),
            idle: timeout(
                c,
                &timeouts_path,
                "idle",
                t.and_then(|t| t.idle.as_ref()),
                Duration::from_secs(60),
            ),
            body_idle: timeout(
                c,
                &timeouts_path,
                "body_idle",
                t.and_then(|t| t.body_idle.as_ref()),
                Duration::from_secs(30),
            ),
            write_idle: timeout(
                c,
                &timeouts_path,
                "write_idle",
                t.and_then(|t| t.write_idle.as_ref()),
                Duration::from_secs(30),
            ),
        };
        let limits = self::limits(c, &format!("{path}.limits"), f.limits.as_ref());
        let routes = f
            .route
            .iter()
            .enumerate()
            .map(|(r, route)| self::route(c, &format!("{path}.route[{r}]"), dir, route, backends))
            .collect();
        let tls = match (&f.tls, &f.hsts) {
            (Some(tls), hsts) => super::tls::frontend_tls(c, &path, tls, hsts.as_ref()),
            (None, Some(hsts)) => {
                let message = "applies only to a TLS frontend; add tls = { certs = [...] }";
                c.at(hsts.span(), format!("{path}.hsts"), message);
                None
            }
            (None, None) => None,
        };
        let redirect_https = f.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
        if let (Some(r), true, true) = (&f.redirect_https, redirect_https, tls.is_some()) {
            let message = "applies only to a plain frontend; this one already serves TLS";
            c.at(r.span(), format!("{path}.redirect_https"), message);
        }
        frontends.push(Frontend {
            name: FrontendName::new(&name),
            listen,
            routes,
            default_target,
            forward_headers: f.forward_headers.unwrap_or(true),
            timeouts,
            tls,
            redirect_https,
            limits,
        });
    }
    frontends
}

/// `[frontend.limits]`. Bounds: a target hyper can parse at all (65534
/// bytes), and heads up to 1 MiB with up to 1000 fields.
fn limits(c: &mut Collector<'_>, path: &str, raw: Option<&RawLimits>) -> FrontendLimits {
    let d = FrontendLimits::DEFAULT;
    let Some(l) = raw else { return d };
    FrontendLimits {
        max_uri: integer(
            c,
            path,
            "max_uri",
            l.max_uri.as_ref(),
            d.max_uri,
            16..=65_534,
        ),
        max_head: integer(
            c,
            path,
            "max_head",
            l.max_head.as_ref(),
            d.max_head,
            1024..=1 << 20,
        ),
        max_headers: integer(
            c,
            path,
            "max_headers",
            l.max_headers.as_ref(),
            d.max_headers,
            1..=1000,
        ),
        max_header_line: integer(
            c,
            path,
            "max_header_line",
            l.max_header_line.as_ref(),
            d.max_header_line,
            64..=1 << 20,
        ),
    }
}

fn route(
    c: &mut Collector<'_>,
    path: &str,
    dir: &Path,
    spanned: &Spanned<RawRoute>,
    backends: &BackendIds<'_>,
) -> Route {
    let r = spanned.get_ref();
    let host = optional(c, path, "host", r.host.as_ref(), None, |s| {
        parse_route_host(s).map(Some)
    });
    let path_prefix = optional(c, path, "path_prefix", r.path_prefix.as_ref(), None, |s| {
        parse_path_prefix(s).map(Some)
    });
    let exact = optional(c, path, "path", r.path.as_ref(), None, |s| {
        rules::exact_path(s).map(Some)
    });
    let path_regex = optional(c, path, "path_regex", r.path_regex.as_ref(), None, |s| {
        rules::regex(s).map(Some)
    });
    let conditions = [
        r.host.is_some(),
        r.path_prefix.is_some(),
        r.path.is_some(),
        r.path_regex.is_some(),
        r.methods.is_some(),
        r.headers.is_some(),
        r.cookies.is_some(),
        r.query.is_some(),
    ];
    if !conditions.contains(&true) {
        c.at(
            spanned.span(),
            path.to_owned(),
            "matches every request: use default_backend, or add a condition \
             (host, path_prefix, path, path_regex, methods, headers, cookies or query)",
        );
    }
    let target = target(c, path, dir, spanned, backends);
    let response_timeout = r
        .timeouts
        .as_ref()
        .and_then(|t| t.response.as_ref())
        .map(|t| {
            timeout(
                c,
                &format!("{path}.timeouts"),
                "response",
                Some(t),
                Duration::ZERO,
            )
        });
    Route {
        host,
        path_prefix,
        path: exact,
        path_regex,
        methods: rules::methods(c, path, r.methods.as_ref()),
        headers: rules::header_matches(c, path, r.headers.as_ref()),
        cookies: rules::pairs(c, path, "cookies", r.cookies.as_ref()),
        query: rules::pairs(c, path, "query", r.query.as_ref()),
        target,
        rewrite: r
            .rewrite
            .as_ref()
            .and_then(|rw| rules::rewrite(c, path, rw)),
        request_headers: rules::header_rules(
            c,
            path,
            "request_headers",
            r.request_headers.as_ref(),
            Direction::Request,
        ),
        response_headers: rules::header_rules(
            c,
            path,
            "response_headers",
            r.response_headers.as_ref(),
            Direction::Response,
        ),
        response_timeout,
    }
}

/// Exactly one of `backend`, `split`, `redirect`, `respond` or `deny = true`.
fn target(
    c: &mut Collector<'_>,
    path: &str,
    dir: &Path,
    spanned: &Spanned<RawRoute>,
    backends: &BackendIds<'_>,
) -> Target {
    let r = spanned.get_ref();
    let placeholder = Target::Backend(BackendId(0));
    let given: Vec<(&str, std::ops::Range<usize>)> = [
        ("backend", r.backend.as_ref().map(Spanned::span)),
        ("split", r.split.as_ref().map(Spanned::span)),
        ("redirect", r.redirect.as_ref().map(Spanned::span)),
        ("respond", r.respond.as_ref().map(Spanned::span)),
        ("deny", r.deny.as_ref().map(Spanned::span)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|s| (key, s)))
    .collect();
    if given.len() > 1 {
        let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
        let (key, span) = given[1].clone();
        c.at(
            span,
            format!("{path}.{key}"),
            format!(
                "expected one of backend, split, redirect, respond or deny, got {}",
                keys.join(" and ")
            ),
        );
        return placeholder;
    }
    if let Some(split_table) = &r.split {
        return self::split(c, path, split_table, backends);
    }
    if let Some(redirect) = &r.redirect {
        return answers::redirect(c, path, redirect);
    }
    if let Some(respond) = &r.respond {
        return answers::respond(c, path, dir, respond);
    }
    if let Some(deny) = &r.deny {
        if !*deny.get_ref() {
            c.at(
                deny.span(),
                format!("{path}.deny"),
                "expected deny = true, or no deny key",
            );
        }
        return Target::Deny;
    }
    if r.backend.is_none() {
        c.at(
            spanned.span(),
            path.to_owned(),
            "expected a `backend`, `split`, `redirect`, `respond` or `deny` key",
        );
    }
    optional(c, path, "backend", r.backend.as_ref(), placeholder, |s| {
        backend_id(s, backends).map(Target::Backend)
    })
}

fn split(
    c: &mut Collector<'_>,
    path: &str,
    table: &Spanned<BTreeMap<Text, Int>>,
    backends: &BackendIds<'_>,
) -> Target {
    let field = format!("{path}.split");
    let mut weights = Vec::with_capacity(table.get_ref().len());
    for (name, weight) in table.get_ref() {
        let key_field = format!("{field}.{}", name.get_ref());
        let id = match backend_id(name.get_ref(), backends) {
            Ok(id) => id,
            Err(message) => {
                c.at(name.span(), key_field.clone(), message);
                BackendId(0)
            }
        };
        let weight = match in_range(*weight.get_ref(), 0, 256) {
            Ok(w) => w,
            Err(message) => {
                c.at(weight.span(), key_field, message);
                1
            }
        };
        weights.push((id, weight));
    }
    if table.get_ref().is_empty() {
        let message = "expected at least one backend, like { monolith = 90, users = 10 }";
        c.at(table.span(), field, message);
    } else if weights.iter().all(|&(_, w)| w == 0) {
        c.at(table.span(), field, "expected at least one weight above 0");
    }
    Target::Split(weights)
}

fn backend_id(name: &str, backends: &BackendIds<'_>) -> Result<BackendId, String> {
    if let Some(&id) = backends.get(name) {
        return Ok(id);
    }
    let mut known: Vec<&str> = backends.keys().copied().collect();
    known.sort_unstable();
    Err(match known.is_empty() {
        true => format!("unknown backend {name:?}; expected the name of a [[backend]]"),
        false => format!(
            "unknown backend {name:?}; expected one of: {}",
            known.join(", ")
        ),
    })
}
