//! Backends, their servers, health checks and cookie persistence: names
//! (unique per file, server names unique per backend), addresses, weights,
//! admin states, timeouts and check parameters.
//! Invariant: a `CheckKind::Tcp` check never carries HTTP-only keys.

use std::time::Duration;

use toml::Spanned;

use super::error::{Collector, entry};
use super::raw::{RawBackend, RawCheck, RawCookie, RawDiscover, RawServer};
use super::rules;
use super::validate::{Uniques, bounded_duration, integer, optional, required, timeout};
use super::values::{
    parse_check_path, parse_cookie_name, parse_expect, parse_host_header, parse_method, parse_name,
    parse_server_address, parse_size,
};
use crate::model::{
    AdminState, Backend, BackendName, BackendTimeouts, BalanceAlgorithm, CheckKind, CheckSpec,
    CookieSpec, Direction, Discover, HttpCheck, Server, ServerAddress, ServerName, StatusRange,
};

/// The most `rise`, `fall` and `passive_fall` may be: far beyond any useful
/// value, and small enough that sums like HAProxy's `rise + fall - 1` never
/// overflow.
const MAX_RISE_FALL: u32 = 1000;

/// Validates every backend; a backend whose name is unusable gets an empty one.
pub(super) fn backends(c: &mut Collector<'_>, raw: &[Spanned<RawBackend>]) -> Vec<Backend> {
    let mut names = Uniques::new("backend name");
    let mut backends = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let b = spanned.get_ref();
        let path = entry("backend", b.name.as_ref().map(|n| n.get_ref().as_str()), i);
        let at = (path.as_str(), spanned.span());
        let name = required(c, at, "name", b.name.as_ref(), String::new(), |s| {
            parse_name(s).map(|()| s.to_owned())
        });
        if let (Some(text), false) = (&b.name, name.is_empty()) {
            names.insert(c, format!("{name:?}"), format!("{path}.name"), text.span());
        }
        let balance = optional(
            c,
            &path,
            "balance",
            b.balance.as_ref(),
            BalanceAlgorithm::RoundRobin,
            |s| match s {
                "roundrobin" => Ok(BalanceAlgorithm::RoundRobin),
                "leastconn" => Ok(BalanceAlgorithm::LeastConn),
                _ => Err(format!(
                    r#"expected "roundrobin" or "leastconn", got {s:?}"#
                )),
            },
        );
        let host = optional(c, &path, "host", b.host.as_ref(), None, |s| {
            parse_host_header(s).map(|()| Some(s.into()))
        });
        let t = b.timeouts.as_ref();
        let timeouts_path = format!("{path}.timeouts");
        let timeouts = BackendTimeouts {
            connect: timeout(
                c,
                &timeouts_path,
                "connect",
                t.and_then(|t| t.connect.as_ref()),
                Duration::from_secs(5),
            ),
            response: timeout(
                c,
                &timeouts_path,
                "response",
                t.and_then(|t| t.response.as_ref()),
                Duration::from_secs(60),
            ),
            tunnel: timeout(
                c,
                &timeouts_path,
                "tunnel",
                t.and_then(|t| t.tunnel.as_ref()),
                Duration::from_secs(3600),
            ),
        };
        let passive_fall = integer(
            c,
            &path,
            "passive_fall",
            b.passive_fall.as_ref(),
            3,
            0..=MAX_RISE_FALL,
        );
        let servers = servers(c, &path, &b.server);
        let discover = b.discover.as_ref().and_then(|d| discover(c, &path, d));
        if let Some(d) = &discover {
            slots_clash(c, &path, d, &b.server);
        }
        backends.push(Backend {
            name: BackendName::new(&name),
            balance,
            host,
            timeouts,
            retries: integer(c, &path, "retries", b.retries.as_ref(), 2, 0..=10),
            servers,
            discover,
            check: b.check.as_ref().map(|check| self::check(c, &path, check)),
            cookie: b
                .cookie
                .as_ref()
                .map(|cookie| self::cookie(c, &path, cookie)),
            passive_fall: (passive_fall > 0).then_some(passive_fall),
            drain_to_maint: b.drain_to_maint.unwrap_or(false),
            tls: b
                .tls
                .as_ref()
                .and_then(|tls| super::tls::backend_tls(c, &path, tls)),
            max_body: max_body(c, &path, b.max_body.as_ref()),
            request_headers: rules::header_rules(
                c,
                &path,
                "request_headers",
                b.request_headers.as_ref(),
                Direction::Request,
            ),
            response_headers: rules::header_rules(
                c,
                &path,
                "response_headers",
                b.response_headers.as_ref(),
                Direction::Response,
            ),
        });
    }
    backends
}

/// The default `max_body`: 100 MiB.
const DEFAULT_MAX_BODY: u64 = 100 << 20;
/// The largest `max_body`: 1024 GiB.
const LARGEST_MAX_BODY: u64 = 1 << 40;

fn max_body(c: &mut Collector<'_>, backend: &str, raw: Option<&Spanned<toml::Value>>) -> u64 {
    let Some(value) = raw else {
        return DEFAULT_MAX_BODY;
    };
    let size = match value.get_ref() {
        toml::Value::String(s) => parse_size(s),
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| String::new()),
        _ => Err(String::new()),
    };
    match size {
        Ok(n) if (1..=LARGEST_MAX_BODY).contains(&n) => n,
        Ok(_) | Err(_) => {
            let got = match value.get_ref() {
                toml::Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            let message = format!(
                r#"expected a size from 1 byte to 1024GiB like "100MiB" (units B, KiB, MiB, GiB) or an integer of bytes, got {got}"#
            );
            c.at(value.span(), format!("{backend}.max_body"), message);
            DEFAULT_MAX_BODY
        }
    }
}

fn servers(c: &mut Collector<'_>, backend: &str, raw: &[Spanned<RawServer>]) -> Vec<Server> {
    let mut names = Uniques::new("server name");
    let mut servers = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let s = spanned.get_ref();
        let path = entry(
            &format!("{backend}.server"),
            s.name.as_ref().map(|n| n.get_ref().as_str()),
            i,
        );
        let at = (path.as_str(), spanned.span());
        let name = required(c, at.clone(), "name", s.name.as_ref(), String::new(), |s| {
            parse_name(s).map(|()| s.to_owned())
        });
        if let (Some(text), false) = (&s.name, name.is_empty()) {
            names.insert(c, format!("{name:?}"), format!("{path}.name"), text.span());
        }
        let placeholder = ServerAddress {
            host: "".into(),
            port: 0,
        };
        servers.push(Server {
            name: ServerName::new(&name),
            address: required(
                c,
                at,
                "address",
                s.address.as_ref(),
                placeholder,
                parse_server_address,
            ),
            weight: integer(c, &path, "weight", s.weight.as_ref(), 1, 0..=256),
            state: optional(
                c,
                &path,
                "state",
                s.state.as_ref(),
                AdminState::Ready,
                |s| {
                    AdminState::parse(s).ok_or_else(|| {
                        format!(r#"expected "ready", "drain" or "maint", got {s:?}"#)
                    })
                },
            ),
            backup: s.backup.unwrap_or(false),
        });
    }
    servers
}

/// The default and the bounds of `discover.max`: HAProxy's templates are
/// sized alike, and a DNS answer rarely holds more.
const DEFAULT_DISCOVER_MAX: u32 = 32;
const LARGEST_DISCOVER_MAX: u32 = 1024;
/// The default `discover.every`, and its shortest value: a name server asked
/// more often than once a second per backend gains nothing.
const DEFAULT_DISCOVER_EVERY: Duration = Duration::from_secs(5);
const SHORTEST_DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// `discover = { dns = "users:8080", every = "5s", max = 32 }`; `None` when
/// `dns` is missing or unusable (the error is recorded).
fn discover(
    c: &mut Collector<'_>,
    backend: &str,
    spanned: &Spanned<RawDiscover>,
) -> Option<Discover> {
    let path = format!("{backend}.discover");
    let d = spanned.get_ref();
    let at = (path.as_str(), spanned.span());
    let dns = required(c, at, "dns", d.dns.as_ref(), None, |s| {
        let address = parse_server_address(s)?;
        if address.as_socket_addr().is_some() {
            return Err(format!(
                r#"expected a DNS name and port like "users:8080", got the IP address {s:?}; list it as a [[backend.server]]"#
            ));
        }
        let prefix = address.host.split('.').next().unwrap_or_default();
        parse_name(prefix)
            .map_err(|_| format!(r#"expected a DNS name and port like "users:8080", got {s:?}"#))?;
        Ok(Some(address))
    });
    let every = optional(
        c,
        &path,
        "every",
        d.every.as_ref(),
        DEFAULT_DISCOVER_EVERY,
        |s| bounded_duration(s, SHORTEST_DISCOVER_EVERY),
    );
    let max = integer(
        c,
        &path,
        "max",
        d.max.as_ref(),
        DEFAULT_DISCOVER_MAX,
        1..=LARGEST_DISCOVER_MAX,
    );
    dns.map(|dns| Discover { dns, every, max })
}

/// Reports every static server whose name is one of `discover`'s slot names.
fn slots_clash(
    c: &mut Collector<'_>,
    backend: &str,
    discover: &Discover,
    raw: &[Spanned<RawServer>],
) {
    let prefix = format!("{}-", discover.prefix());
    for (i, spanned) in raw.iter().enumerate() {
        let Some(name) = &spanned.get_ref().name else {
            continue;
        };
        // Exactly `users-N` for a slot N: `users-01` is not a slot name.
        let is_slot = name
            .get_ref()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.parse::<u32>().ok().filter(|n| n.to_string() == rest))
            .is_some_and(|n| (1..=discover.max).contains(&n));
        if is_slot {
            let path = entry(&format!("{backend}.server"), Some(name.get_ref()), i);
            c.at(
                name.span(),
                format!("{path}.name"),
                format!(
                    "the name {:?} is a slot of discover = {{ dns = \"{}\" }} ({prefix}1 to {prefix}{}); expected another name",
                    name.get_ref(),
                    discover.dns,
                    discover.max
                ),
            );
        }
    }
}

fn check(c: &mut Collector<'_>, backend: &str, spanned: &Spanned<RawCheck>) -> CheckSpec {
    let path = format!("{backend}.check");
    let k = spanned.get_ref();
    let at = (path.as_str(), spanned.span());
    let is_http = required(c, at, "kind", k.kind.as_ref(), None, |s| match s {
        "http" => Ok(Some(true)),
        "tcp" => Ok(Some(false)),
        _ => Err(format!(r#"expected "http" or "tcp", got {s:?}"#)),
    });
    let kind = match is_http {
        Some(true) => CheckKind::Http(HttpCheck {
            method: optional(
                c,
                &path,
                "method",
                k.method.as_ref(),
                http::Method::GET,
                parse_method,
            ),
            path: optional(
                c,
                &path,
                "path",
                k.path.as_ref(),
                "/".into(),
                parse_check_path,
            ),
            host: optional(c, &path, "host", k.host.as_ref(), None, |s| {
                parse_host_header(s).map(|()| Some(s.into()))
            }),
            expect: optional(
                c,
                &path,
                "expect",
                k.expect.as_ref(),
                StatusRange { min: 200, max: 399 },
                parse_expect,
            ),
        }),
        Some(false) => {
            let http_only = [
                ("method", &k.method),
                ("path", &k.path),
                ("host", &k.host),
                ("expect", &k.expect),
            ];
            for (key, value) in http_only {
                if let Some(value) = value {
                    let message =
                        r#"applies only to kind = "http"; remove it or set kind = "http""#;
                    c.at(value.span(), format!("{path}.{key}"), message);
                }
            }
            CheckKind::Tcp
        }
        None => CheckKind::Tcp,
    };
    CheckSpec {
        kind,
        interval: timeout(
            c,
            &path,
            "interval",
            k.interval.as_ref(),
            Duration::from_secs(2),
        ),
        timeout: timeout(
            c,
            &path,
            "timeout",
            k.timeout.as_ref(),
            Duration::from_secs(1),
        ),
        rise: integer(c, &path, "rise", k.rise.as_ref(), 2, 1..=MAX_RISE_FALL),
        fall: integer(c, &path, "fall", k.fall.as_ref(), 3, 1..=MAX_RISE_FALL),
    }
}

fn cookie(c: &mut Collector<'_>, backend: &str, spanned: &Spanned<RawCookie>) -> CookieSpec {
    let path = format!("{backend}.cookie");
    let at = (path.as_str(), spanned.span());
    CookieSpec {
        name: required(
            c,
            at,
            "name",
            spanned.get_ref().name.as_ref(),
            "".into(),
            parse_cookie_name,
        ),
    }
}
