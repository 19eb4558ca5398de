//! Who may talk to the admin server, and how. Owns the secret's resolution
//! (token file, environment, generated), the `guard` middleware and its
//! rules, in this order: a `Host` allow-list against DNS rebinding, a rate
//! limit on failed logins per client address (429), bearer or basic
//! credentials compared in constant time (401 with `WWW-Authenticate`), and
//! CSRF rules for state changes (403), so an unauthenticated caller learns
//! nothing about the CSRF rules.
//! Invariant: a request past `guard` is either a probe (`/healthz`,
//! `/readyz`) or carries the secret; a request that may change state with
//! credentials a browser can send by itself (basic auth), or sent by a
//! browser at all, also passed the CSRF rules.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq as _;

use super::{AdminContext, AdminError};
use crate::model;

/// The environment variable that may hold the secret.
pub const TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
/// The header the page's `fetch()` sends with every state change.
pub const ADMIN_HEADER: &str = "x-switchyard-admin";
/// Failed attempts from one address within `FAILURE_WINDOW` before 429.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; older entries are dropped beyond it.
const MAX_TRACKED: usize = 4096;

/// Where a generated token is stored inside `dir`.
pub fn generated_token_path(dir: &Path) -> PathBuf {
    dir.join("admin-token")
}

/// The secret: `explicit`, else the token file, else the environment, else a
/// generated one on a loopback address.
pub(super) fn resolve_secret(
    config: &model::Admin,
    explicit: Option<String>,
    generated_dir: &Path,
) -> Result<String, AdminError> {
    if let Some(token) = explicit {
        return non_empty(token, "the admin options");
    }
    if let Some(path) = &config.token_file {
        return read_token_file(path);
    }
    if let Ok(token) = std::env::var(TOKEN_ENV) {
        return non_empty(token, TOKEN_ENV);
    }
    if !config.listen.ip().is_loopback() {
        return Err(AdminError::UnprotectedNonLoopback(config.listen));
    }
    generate_token(generated_dir)
}

fn non_empty(token: String, from: &str) -> Result<String, AdminError> {
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(AdminError::EmptyToken(from.to_owned()));
    }
    Ok(token)
}

fn read_token_file(path: &Path) -> Result<String, AdminError> {
    let unreadable = |source| AdminError::TokenFile {
        path: path.to_owned(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "the admin token file is readable by group or others; chmod 600 it"
        );
    }
    non_empty(text, &path.display().to_string())
}

/// 32 random bytes as hex, stored with mode 0600.
fn generate_token(dir: &Path) -> Result<String, AdminError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(AdminError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = generated_token_path(dir);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(token.as_bytes())?;
        file.write_all(b"\n")
    };
    write().map_err(|source| AdminError::TokenWrite {
        path: path.clone(),
        source,
    })?;
    tracing::info!(file = %path.display(), "generated an admin token (bearer token, or basic-auth password with any user)");
    Ok(token)
}

/// Who made a request, for the audit log; set by `guard`.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The basic-auth user, or `token` for a bearer token.
    pub who: String,
    pub from: IpAddr,
}

/// The rules and the secret. Shared inside `AdminContext`.
pub(crate) struct Guard {
    token: String,
    /// Accepted `Host` values, lowercase.
    hosts: Vec<String>,
    /// When listening on every address: any IP-literal host with this port.
    any_ip_port: Option<u16>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Guard {
    pub(crate) fn new(token: String, listen: SocketAddr) -> Guard {
        let port = listen.port();
        let mut hosts = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            listen.to_string(),
        ];
        hosts.dedup();
        Guard {
            token,
            hosts,
            any_ip_port: listen.ip().is_unspecified().then_some(port),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// DNS-rebinding guard: the `Host` must name the admin listener.
    fn is_allowed_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.hosts.contains(&host) {
            return true;
        }
        self.any_ip_port.is_some_and(|port| {
            host.parse::<SocketAddr>()
                .is_ok_and(|addr| addr.port() == port)
        })
    }

    /// The credentials if they carry the secret.
    fn authenticate(&self, headers: &HeaderMap) -> Option<Credentials> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let credentials = credentials(value)?;
        constant_time_eq(credentials.secret.as_bytes(), self.token.as_bytes())
            .then_some(credentials)
    }

    /// How long `ip` must wait before trying again, if it is throttled.
    fn throttled_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let &(since, n) = failures.get(&ip)?;
        let elapsed = now.duration_since(since);
        (elapsed < FAILURE_WINDOW && n >= MAX_FAILURES).then(|| FAILURE_WINDOW - elapsed)
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

/// The middleware in front of every route.
pub(super) async fn guard(
    State(context): State<Arc<AdminContext>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(request).await;
    }
    let guard = &context.guard;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !guard.is_allowed_host(host) {
        return reject(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown Host for the admin server",
        );
    }
    let now = Instant::now();
    if let Some(wait) = guard.throttled_for(peer.ip(), now) {
        let mut response = reject(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
        );
        // Whole seconds, rounded up, so a client that waits is let in.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        return response;
    }
    let Some(credentials) = guard.authenticate(request.headers()) else {
        guard.record_failure(peer.ip(), now);
        tracing::warn!(peer = %peer.ip(), method = %request.method(), path, "admin login failed");
        let mut response = reject(StatusCode::UNAUTHORIZED, "authentication required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"switchyard\", charset=\"UTF-8\""),
        );
        return response;
    };
    // A bearer token is never sent by a browser on its own, so a request
    // with one that no browser sent cannot be forged cross-site.
    let is_forgeable = !credentials.is_bearer || is_browser_sent(request.headers());
    if is_forgeable {
        if let Some(reason) = csrf_violation(request.method(), request.headers(), host) {
            tracing::warn!(peer = %peer.ip(), method = %request.method(), path, reason, "admin request refused");
            return reject(StatusCode::FORBIDDEN, reason);
        }
    }
    request.extensions_mut().insert(Caller {
        who: credentials.who,
        from: peer.ip(),
    });
    next.run(request).await
}

/// Whether a browser sent the request: browsers add `Origin` to every
/// state-changing request and `Sec-Fetch-*` to every request.
fn is_browser_sent(headers: &HeaderMap) -> bool {
    headers.contains_key(header::ORIGIN)
        || headers.contains_key("sec-fetch-site")
        || headers.contains_key("sec-fetch-mode")
}

fn reject(status: StatusCode, message: &'static str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// Why a request may not change state, if it may not. Safe methods pass.
/// A state change needs a JSON body, the admin header, no cross-site fetch
/// metadata and, when an `Origin` is sent, the admin's own origin.
fn csrf_violation(method: &Method, headers: &HeaderMap, host: &str) -> Option<&'static str> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let site = text(header::HeaderName::from_static("sec-fetch-site"));
    if matches!(site, Some("cross-site" | "same-site")) {
        return Some("cross-site request refused");
    }
    if let Some(origin) = text(header::ORIGIN) {
        let expected = format!("http://{host}");
        if !origin.eq_ignore_ascii_case(&expected) {
            return Some("foreign Origin refused");
        }
    }
    let is_json = text(header::CONTENT_TYPE).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Some("state changes need Content-Type: application/json");
    }
    if text(header::HeaderName::from_static(ADMIN_HEADER)) != Some("1") {
        return Some("state changes need the header X-Switchyard-Admin: 1");
    }
    None
}

/// What an `Authorization` value says.
#[derive(Debug)]
struct Credentials {
    /// The basic-auth user, or `token` for a bearer token.
    who: String,
    secret: String,
    is_bearer: bool,
}

/// The credentials of an `Authorization` value: `Bearer <token>` or
/// `Basic base64(user:token)`.
fn credentials(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials {
            who: "token".to_owned(),
            secret: rest.to_owned(),
            is_bearer: true,
        });
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASE64.decode(rest).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let user = if user.is_empty() { "basic" } else { user };
    Some(Credentials {
        who: user.to_owned(),
        secret: password.to_owned(),
        is_bearer: false,
    })
}

/// Standard base64; padding optional, as some clients leave it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Compares in constant time (`subtle`), so the time taken tells nothing
/// about where the first difference is (only whether the lengths differ).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
