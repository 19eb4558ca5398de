//! Raw config -> `model::Topology`: defaults, global and admin settings, name
//! and address uniqueness, and the helpers the frontend and backend checks
//! share. Owns the walk over the whole file.
//! Invariant: every problem is recorded in the `Collector` and the walk goes
//! on with a placeholder, so one run reports every error; a topology built
//! while any error was recorded is thrown away.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Collector, ConfigErrors, line_column};
use http::HeaderName;
use toml::Spanned;

use super::raw::{Int, PathOrOff, RawAdmin, RawConfig, RawGlobal, RawPeers, RawRequestId, Text};
use super::values::{in_range, parse_socket_addr};
use super::{answers, backend, duration::parse_duration, frontend};
use crate::model::{Admin, BackendId, Cidr, Global, LogFormat, PeerAddress, StateFile, Topology};

pub(crate) fn validate(
    raw: RawConfig,
    source: &str,
    file: &Path,
) -> Result<Topology, ConfigErrors> {
    let mut c =
        Collector::new(source).with_base_dir(file.parent().unwrap_or_else(|| Path::new("")));
    let global = global(&mut c, raw.global.unwrap_or_default());
    let admin_text = raw.admin.as_ref().and_then(|a| a.listen.clone());
    let admin = admin(&mut c, raw.admin.unwrap_or_default());
    // Frontends must not take the admin address; an invalid one is skipped.
    let admin_listen = match &admin_text {
        None => Some((admin.listen, None)),
        Some(text) => parse_socket_addr(text.get_ref())
            .ok()
            .map(|listen| (listen, Some(text.span()))),
    };

    let backends = backend::backends(&mut c, &raw.backend);
    let backend_ids: HashMap<&str, BackendId> = backends
        .iter()
        .enumerate()
        .rev() // the first of duplicate names wins
        .filter(|(_, b)| !b.name.is_empty())
        .map(|(i, b)| (b.name.as_str(), BackendId(i)))
        .collect();

    if raw.frontend.is_empty() {
        c.whole_file(
            "frontend".to_owned(),
            "expected at least one [[frontend]] table",
        );
    }
    // Files named in the config are relative to its directory.
    let dir = file.parent().unwrap_or(Path::new(""));
    let frontends = frontend::frontends(&mut c, &raw.frontend, &backend_ids, admin_listen, dir);
    let errors = answers::error_pages(&mut c, dir, raw.errors.as_ref());

    c.finish(file)?;
    Ok(Topology {
        global,
        admin,
        frontends,
        backends,
        errors,
    })
}

fn global(c: &mut Collector<'_>, raw: RawGlobal) -> Global {
    let at = "global";
    Global {
        grace: optional(
            c,
            at,
            "grace",
            raw.grace.as_ref(),
            Duration::from_secs(10),
            |s| bounded_duration(s, Duration::ZERO),
        ),
        access_log: optional(
            c,
            at,
            "access_log",
            raw.access_log.as_ref(),
            Some(LogFormat::Text),
            |s| match s {
                "text" => Ok(Some(LogFormat::Text)),
                "json" => Ok(Some(LogFormat::Json)),
                "off" => Ok(None),
                _ => Err(format!(r#"expected "text", "json" or "off", got {s:?}"#)),
            },
        ),
        state_file: state_file(c, raw.state_file.as_ref()),
        watch: raw.watch.unwrap_or(true),
        max_connections: raw.max_connections.as_ref().map(|n| {
            integer(
                c,
                at,
                "max_connections",
                Some(n),
                10_000,
                1..=MAX_CONNECTIONS,
            ) as usize
        }),
        threads: raw.threads.as_ref().map(|n| {
            let n = integer(c, at, "threads", Some(n), 1, 1..=MAX_THREADS);
            u16::try_from(n).unwrap_or(1)
        }),
        request_id: request_id(c, raw.request_id.as_ref()),
        trusted_proxies: raw
            .trusted_proxies
            .iter()
            .flat_map(|list| list.get_ref())
            .filter_map(|text| match text.get_ref().parse::<Cidr>() {
                Ok(cidr) => Some(cidr),
                Err(message) => {
                    c.at(text.span(), format!("{at}.trusted_proxies"), message);
                    None
                }
            })
            .collect(),
        resolvers: raw
            .resolvers
            .iter()
            .flat_map(|list| list.get_ref())
            .filter_map(|text| match parse_socket_addr(text.get_ref()) {
                Ok(addr) if addr.port() != 0 => Some(addr),
                Ok(_) | Err(_) => {
                    let message = format!(
                        r#"expected a name server's IP address and port like "10.0.0.2:53", got {:?}"#,
                        text.get_ref()
                    );
                    c.at(text.span(), format!("{at}.resolvers"), message);
                    None
                }
            })
            .collect(),
    }
}

/// On by default with `X-Request-Id`; `false` turns it off.
fn request_id(c: &mut Collector<'_>, raw: Option<&Spanned<RawRequestId>>) -> Option<HeaderName> {
    let default = HeaderName::from_static("x-request-id");
    match raw.map(Spanned::get_ref) {
        None | Some(RawRequestId::Enabled(true)) => Some(default),
        Some(RawRequestId::Enabled(false)) => None,
        Some(RawRequestId::Header(table)) => optional(
            c,
            "global.request_id",
            "header",
            table.header.as_ref(),
            Some(default),
            |s| match HeaderName::from_bytes(s.as_bytes()) {
                Ok(name)
                    if !name.as_str().starts_with("x-forwarded-") && name != http::header::HOST =>
                {
                    Ok(Some(name))
                }
                _ => Err(format!(
                    r#"expected a header name like "X-Request-Id", got {s:?}"#
                )),
            },
        ),
    }
}

/// `state_file = "path"`, `false` (off) or `true` (the default place).
fn state_file(c: &mut Collector<'_>, raw: Option<&Spanned<PathOrOff>>) -> StateFile {
    let Some(raw) = raw else {
        return StateFile::InStateDir;
    };
    match raw.get_ref() {
        PathOrOff::Flag(false) => StateFile::Off,
        PathOrOff::Flag(true) => StateFile::InStateDir,
        PathOrOff::Path(path) => match file_path(path) {
            Ok(path) => StateFile::At(path),
            Err(message) => {
                c.at(raw.span(), "global.state_file".to_owned(), message);
                StateFile::InStateDir
            }
        },
    }
}

fn admin(c: &mut Collector<'_>, raw: RawAdmin) -> Admin {
    let default_listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 8001));
    let peers = peers(c, &raw);
    let replica = optional(c, "admin", "replica", raw.replica.as_ref(), None, |s| {
        let is_name = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if is_name {
            Ok(Some(s.to_owned()))
        } else {
            Err(format!(
                "expected a name of 1-64 letters, digits, '-', '_' or '.', got {s:?}"
            ))
        }
    });
    Admin {
        peers,
        replica,
        listen: optional(
            c,
            "admin",
            "listen",
            raw.listen.as_ref(),
            default_listen,
            parse_socket_addr,
        ),
        token_file: optional(
            c,
            "admin",
            "token_file",
            raw.token_file.as_ref(),
            None,
            |s| file_path(s).map(Some),
        ),
    }
}

/// `peers`: one address or a list; each `host:port`. Peers share operator
/// changes authenticated with the admin token, so they need one that every
/// replica shares: `token_file`, or the token in the environment.
fn peers(c: &mut Collector<'_>, raw: &RawAdmin) -> Vec<PeerAddress> {
    let Some(spanned) = &raw.peers else {
        return Vec::new();
    };
    let span = spanned.span();
    let texts: Vec<&String> = match spanned.get_ref() {
        RawPeers::One(text) => vec![text],
        RawPeers::List(list) => list.iter().collect(),
    };
    if texts.is_empty() {
        c.at(
            span.clone(),
            "admin.peers".to_owned(),
            "expected at least one address; leave peers out to run alone",
        );
    }
    let mut peers = Vec::new();
    for text in texts {
        match PeerAddress::parse(text) {
            Ok(peer) if !peers.contains(&peer) => peers.push(peer),
            Ok(peer) => c.at(
                span.clone(),
                "admin.peers".to_owned(),
                format!("duplicate peer {peer}; expected each once"),
            ),
            Err(message) => c.at(span.clone(), "admin.peers".to_owned(), message),
        }
    }
    let has_env_token = std::env::var(TOKEN_ENV).is_ok_and(|t| !t.trim().is_empty());
    if raw.token_file.is_none() && !has_env_token {
        c.at(
            span,
            "admin.peers".to_owned(),
            format!(
                "peers need the admin token every replica shares; set admin.token_file \
                 (or {TOKEN_ENV} in the environment)"
            ),
        );
    }
    peers
}

/// The environment variable that may hold the admin token (read by the
/// admin server; here only to tell whether `peers` has a shared secret).
const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";

fn file_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        Err("expected a file path, got an empty string".to_owned())
    } else {
        Ok(PathBuf::from(s))
    }
}

/// Parses an optional text value; on error records it and returns `default`.
pub(super) fn optional<T>(
    c: &mut Collector<'_>,
    path: &str,
    key: &str,
    raw: Option<&Text>,
    default: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> T {
    let Some(text) = raw else { return default };
    match parse(text.get_ref()) {
        Ok(value) => value,
        Err(message) => {
            c.at(text.span(), format!("{path}.{key}"), message);
            default
        }
    }
}

/// Parses a required text value; a missing one is reported at `table`, the
/// span of the table that lacks it. Returns `placeholder` on any error.
pub(super) fn required<T>(
    c: &mut Collector<'_>,
    (path, table): (&str, Range<usize>),
    key: &str,
    raw: Option<&Text>,
    placeholder: T,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> T {
    if raw.is_none() {
        c.at(table, format!("{path}.{key}"), "required key is missing");
    }
    optional(c, path, key, raw, placeholder, parse)
}

/// An optional integer within `range`.
pub(super) fn integer(
    c: &mut Collector<'_>,
    path: &str,
    key: &str,
    raw: Option<&Int>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> u32 {
    let Some(n) = raw else { return default };
    match in_range(*n.get_ref(), *range.start(), *range.end()) {
        Ok(value) => value,
        Err(message) => {
            c.at(n.span(), format!("{path}.{key}"), message);
            default
        }
    }
}

/// The most `global.threads` may be (as `run --threads`).
pub(super) const MAX_THREADS: u32 = 1024;

/// The most `global.max_connections` may be.
pub(super) const MAX_CONNECTIONS: u32 = 1_000_000;

/// The longest duration any key takes: 7 days. Longer ones are mistakes, and
/// bounding them keeps every deadline computed from them (`now + timeout`)
/// far from overflow.
pub(super) const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// A timeout's shortest value: below it a timer cannot keep its word.
pub(super) const SHORTEST: Duration = Duration::from_millis(1);

/// An optional timeout, from `SHORTEST` to `LONGEST`.
pub(super) fn timeout(
    c: &mut Collector<'_>,
    path: &str,
    key: &str,
    raw: Option<&Text>,
    default: Duration,
) -> Duration {
    optional(c, path, key, raw, default, |s| {
        bounded_duration(s, SHORTEST)
    })
}

/// A duration from `min` (0, 1ms or whole seconds) to `LONGEST`, the bounds
/// named in the error.
pub(super) fn bounded_duration(s: &str, min: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if (min..=LONGEST).contains(&d) {
        return Ok(d);
    }
    let shortest = match min {
        Duration::ZERO => "0s".to_owned(),
        SHORTEST => "1ms".to_owned(),
        _ => format!("{}s", min.as_secs()),
    };
    Err(format!(
        r#"expected a duration from {shortest} to 168h (7 days), got {s:?}"#
    ))
}

/// Reports every value seen twice, pointing at the later one.
pub(super) struct Uniques<T> {
    what: &'static str,
    seen: HashMap<T, usize>,
}

impl<T: std::hash::Hash + Eq + std::fmt::Display> Uniques<T> {
    pub(super) fn new(what: &'static str) -> Self {
        Uniques {
            what,
            seen: HashMap::new(),
        }
    }

    pub(super) fn insert(
        &mut self,
        c: &mut Collector<'_>,
        value: T,
        field: String,
        span: Range<usize>,
    ) {
        let (line, _) = line_column(c.source(), span.start);
        match self.seen.get(&value) {
            Some(first) => c.at(
                span,
                field,
                format!(
                    "duplicate {} {value} (first used at line {first}); expected a unique one",
                    self.what
                ),
            ),
            None => {
                self.seen.insert(value, line);
            }
        }
    }
}
