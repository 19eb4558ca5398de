//! Frontends and their routes: names, listen addresses (unique, and not the
//! admin's), timeouts, route conditions and targets resolved to `BackendId`s.
//! Invariant: a route has at least one condition and exactly one target, and
//! every backend it names exists.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{Collector, entry};
use super::raw::{Int, RawFrontend, RawRoute, Text};
use super::validate::{Uniques, optional, required, timeout};
use super::values::{in_range, parse_name, parse_path_prefix, parse_route_host, parse_socket_addr};
use crate::model::{BackendId, Frontend, FrontendName, FrontendTimeouts, Route, Target};

/// Backend names a route may refer to.
pub(super) type BackendIds<'a> = HashMap<&'a str, BackendId>;

/// Validates every frontend. `admin` is the admin listen address with its
/// span when the file sets it, and `None` when the file's one is invalid.
pub(super) fn frontends(
    c: &mut Collector<'_>,
    raw: &[Spanned<RawFrontend>],
    backends: &BackendIds<'_>,
    admin: Option<(SocketAddr, Option<Range<usize>>)>,
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
        let routes = f
            .route
            .iter()
            .enumerate()
            .map(|(r, route)| self::route(c, &format!("{path}.route[{r}]"), route, backends))
            .collect();
        frontends.push(Frontend {
            name: FrontendName::new(&name),
            listen,
            routes,
            default_target,
            forward_headers: f.forward_headers.unwrap_or(true),
            timeouts,
        });
    }
    frontends
}

fn route(
    c: &mut Collector<'_>,
    path: &str,
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
    if r.host.is_none() && r.path_prefix.is_none() {
        c.at(
            spanned.span(),
            path.to_owned(),
            "matches every request: use default_backend, or add host or path_prefix",
        );
    }
    let placeholder = Target::Backend(BackendId(0));
    let target = match (&r.backend, &r.split) {
        (Some(_), None) => optional(c, path, "backend", r.backend.as_ref(), placeholder, |s| {
            backend_id(s, backends).map(Target::Backend)
        }),
        (None, Some(split_table)) => self::split(c, path, split_table, backends),
        (Some(_), Some(split_table)) => {
            c.at(
                split_table.span(),
                format!("{path}.split"),
                "expected either backend or split, not both",
            );
            placeholder
        }
        (None, None) => {
            c.at(
                spanned.span(),
                path.to_owned(),
                "expected a `backend` or a `split` key",
            );
            placeholder
        }
    };
    Route {
        host,
        path_prefix,
        target,
    }
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
