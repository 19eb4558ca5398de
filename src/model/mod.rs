//! The validated domain: typed values built from `config`, ready to serve.
//! Owns `Topology` and everything in it (frontends, routes, backends, servers,
//! timeouts, check and cookie specs, header rules, error pages) and the name
//! newtypes.
//! Invariant: every value here is already valid (names unique, references
//! resolved to indices, durations and weights in range); nothing here does IO
//! or knows TOML.

mod cidr;
mod describe;
pub mod diff;
mod names;
mod route;
mod rules;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

pub use cidr::{Cidr, client_address};
pub use describe::{RouteAction, RouteConditions, RouteDescription};
pub use names::{BackendName, FrontendName, ServerName};
pub use route::{
    Expansion, HeaderMatch, HostMatch, PathRegex, Redirect, RequestView, Respond, Rewrite, Route,
    Target, path_has_prefix,
};
pub use rules::{Direction, HeaderRules, Part, Template, Variable};
pub use tls::{BackendTls, Certificate, FrontendTls, PrivateKey};

/// The whole validated configuration: what one snapshot serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub global: Global,
    pub admin: Admin,
    pub frontends: Vec<Frontend>,
    pub backends: Vec<Backend>,
    /// Pages served instead of the proxy's own 502/503/504 bodies.
    pub errors: ErrorPages,
}

impl Topology {
    /// The backend with this name, if any.
    pub fn backend(&self, name: &str) -> Option<(BackendId, &Backend)> {
        self.backends
            .iter()
            .enumerate()
            .find(|(_, b)| &*b.name == name)
            .map(|(i, b)| (BackendId(i), b))
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// How long in-flight requests may run after SIGTERM before they are cut.
    pub grace: Duration,
    /// Access log: `None` writes none.
    pub access_log: Option<LogFormat>,
    /// Where operator changes (admin states, weights, split weights) are
    /// persisted across restarts.
    pub state_file: StateFile,
    /// Reload when the config file (or a file it names) changes.
    pub watch: bool,
    /// Most client connections open at once, over all frontends; `None`
    /// derives it from the open-file limit at start.
    pub max_connections: Option<usize>,
    /// Worker threads serving client connections; `None`: one per CPU this
    /// process may run on. Read at start (`run --threads` overrides it).
    pub threads: Option<u16>,
    /// The request id header; `None` when request ids are off.
    pub request_id: Option<HeaderName>,
    /// Peers whose `X-Forwarded-For` and request id are believed.
    pub trusted_proxies: Box<[Cidr]>,
    /// Name servers asked for `discover` records, in order; empty asks the
    /// system resolver.
    pub resolvers: Box<[SocketAddr]>,
}

/// Bodies the proxy serves instead of its own text for the failures it
/// answers itself; loaded from files at load time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorPages {
    pub pages: Box<[ErrorPage]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// 502, 503 or 504.
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
}

impl ErrorPages {
    pub fn get(&self, status: StatusCode) -> Option<&ErrorPage> {
        self.pages.iter().find(|p| p.status == status)
    }
}

/// Where the state file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFile {
    /// `state.json` in the state directory (the one holding the admin token).
    InStateDir,
    /// This path.
    At(PathBuf),
    /// `state_file = false`: operator changes last until the process ends.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line in HAProxy's httplog spirit: `key=value` pairs.
    Text,
    /// One JSON object per line.
    Json,
}

/// The admin server's own listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// File holding the bearer token (also the basic-auth password).
    pub token_file: Option<PathBuf>,
    /// The other replicas' admin servers, which share operator changes
    /// with this one; empty without replication.
    pub peers: Vec<PeerAddress>,
    /// This replica's name among its peers; `None`: the host name.
    pub replica: Option<String>,
}

/// A peer's admin address as written: a host (IP or DNS name, which may
/// resolve to several replicas) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    pub host: String,
    pub port: u16,
}

impl PeerAddress {
    /// `host:port`, `[v6]:port`; the host is a name or an IP literal.
    pub fn parse(text: &str) -> Result<PeerAddress, String> {
        let expected = || format!(r#"expected "host:port" like "10.0.0.3:8001", got {text:?}"#);
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(PeerAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let port: u16 = port.parse().map_err(|_| expected())?;
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !is_name || port == 0 {
            return Err(expected());
        }
        Ok(PeerAddress {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Index of a backend in `Topology::backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

/// A named listener with ordered routes and a default target.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: FrontendName,
    pub listen: SocketAddr,
    /// Evaluated in order; the first match wins.
    pub routes: Vec<Route>,
    /// Where a request goes when no route matches; `None` answers 404.
    pub default_target: Option<Target>,
    /// Add `X-Forwarded-For` (appended) and set `X-Forwarded-Proto`/`-Host`.
    pub forward_headers: bool,
    pub timeouts: FrontendTimeouts,
    /// Terminates TLS with these certificates; `None` serves plain HTTP.
    pub tls: Option<FrontendTls>,
    /// A plain frontend that answers every request with a redirect to
    /// `https://` (308).
    pub redirect_https: bool,
    pub limits: FrontendLimits,
}

/// Most sizes and counts of a request head (HARDENING.md 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendLimits {
    /// Longest request target, in bytes; longer gets 414.
    pub max_uri: u32,
    /// Largest head (request line and header lines), in bytes; larger gets 431.
    pub max_head: u32,
    /// Most header fields; more get 431.
    pub max_headers: u32,
    /// Longest header line (`name: value`), in bytes; longer gets 431.
    pub max_header_line: u32,
}

impl FrontendLimits {
    /// nginx's and hyper's measured defaults, as HARDENING.md 2.3 asks.
    pub const DEFAULT: FrontendLimits = FrontendLimits {
        max_uri: 8192,
        max_head: 32 * 1024,
        max_headers: 100,
        max_header_line: 8192,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendTimeouts {
    /// Most time to read one request head (slowloris guard).
    pub client_header: Duration,
    /// Most time a keep-alive connection may sit idle between requests.
    pub idle: Duration,
    /// Most time between two reads of a request body (R.U.D.Y. guard).
    pub body_idle: Duration,
    /// Most time one write to the client may wait (slow-read guard).
    pub write_idle: Duration,
}

/// A named pool of servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub name: BackendName,
    pub balance: BalanceAlgorithm,
    /// `Host` sent to these servers instead of the client's (and by checks).
    pub host: Option<Box<str>>,
    pub timeouts: BackendTimeouts,
    /// Extra attempts on other servers after a connect failure.
    pub retries: u32,
    pub servers: Vec<Server>,
    pub check: Option<CheckSpec>,
    pub cookie: Option<CookieSpec>,
    /// Consecutive connection failures that mark a server DOWN at once.
    pub passive_fall: Option<u32>,
    /// Move a DRAIN server to MAINT by itself once its last request ends.
    pub drain_to_maint: bool,
    /// Speak TLS to the servers; `None` speaks plain HTTP.
    pub tls: Option<BackendTls>,
    /// Largest request body, in bytes; larger gets 413.
    pub max_body: u64,
    /// Applied before the route's own rules.
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// Servers taken from DNS records besides `servers`; the writer adds
    /// them to the topology it serves.
    pub discover: Option<Discover>,
}

/// HAProxy's `server-template`: every A/AAAA record of `dns` becomes a
/// server named `<first label>-<slot>`, in at most `max` slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// A host name (never an IP literal) and the servers' port.
    pub dns: ServerAddress,
    /// How often the name is looked up.
    pub every: Duration,
    /// Most slots, so most servers.
    pub max: u32,
}

impl Discover {
    /// The name of slot `slot` (from 1): `users-1` for `users.internal:8080`.
    pub fn slot_name(&self, slot: usize) -> ServerName {
        ServerName::new(&format!("{}-{slot}", self.prefix()))
    }

    /// The first label of the host name.
    pub fn prefix(&self) -> &str {
        self.dns.host.split('.').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceAlgorithm {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest active requests relative to weight.
    LeastConn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendTimeouts {
    pub connect: Duration,
    /// Time from sending the request to the response head.
    pub response: Duration,
    /// Most idle time of an upgraded (WebSocket) tunnel.
    pub tunnel: Duration,
}

/// One upstream address in a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: ServerName,
    pub address: ServerAddress,
    /// 0..=256, as HAProxy; 0 takes no new traffic, like DRAIN.
    pub weight: u32,
    /// The admin state the config asks for (HAProxy's `disabled` is MAINT).
    pub state: AdminState,
    /// Takes traffic only when no non-backup server is eligible.
    pub backup: bool,
}

/// `host:port`, where host is an IP literal or a name resolved at run time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    pub host: Box<str>,
    pub port: u16,
}

impl ServerAddress {
    /// The address itself when the host is an IP literal.
    pub fn as_socket_addr(&self) -> Option<SocketAddr> {
        let ip = self
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the operator wants of a server, with HAProxy's semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdminState {
    /// Takes traffic whenever health allows.
    Ready,
    /// No new sessions; in-flight, open connections and sticky clients go on.
    Drain,
    /// No traffic at all; health checks stop.
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }

    /// Parses `ready`, `drain` or `maint`, in any case.
    pub fn parse(s: &str) -> Option<AdminState> {
        match s.to_ascii_lowercase().as_str() {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" => Some(AdminState::Maint),
            _ => None,
        }
    }
}

/// An active health check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes that bring a DOWN server UP.
    pub rise: u32,
    /// Consecutive failures that take an UP server DOWN.
    pub fall: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    Http(HttpCheck),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub method: http::Method,
    pub path: Box<str>,
    /// `Host` of the check request; `None` uses the backend's `host`, else the
    /// server address.
    pub host: Option<Box<str>>,
    /// Statuses that count as healthy, inclusive.
    pub expect: StatusRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

/// Cookie persistence: HAProxy's `cookie NAME insert indirect nocache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: Box<str>,
}
