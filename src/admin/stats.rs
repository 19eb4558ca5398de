//! The one view of live state that every admin output renders (JSON, page,
//! CSV, Prometheus): frontends, backends and servers with admin state,
//! health, weight, counters, check results and drain progress.
//! Invariant: built fresh from the current snapshot and `state`'s counters
//! on every request; nothing here is cached or counted twice.

use serde::Serialize;
use tokio::time::Instant;

use super::audit::Change;
use super::sampler::{Key, Rates, Sampler};
use crate::model::{
    AdminState, Backend, BalanceAlgorithm, CheckSpec, RouteAction, RouteConditions, Target,
};
use crate::runtime::{BackendPlan, FrontendPlan, Runtime, ServerPlan, SplitOverride};
use crate::state::{CheckOutcome, CountersSnapshot, Health, now_millis};

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub generation: u64,
    pub uptime_seconds: u64,
    /// Access-log lines dropped because stdout was too slow.
    pub access_log_dropped: u64,
    /// Unix ms when these stats were read.
    pub now: u64,
    pub reload: ReloadView,
    pub frontends: Vec<FrontendStats>,
    pub backends: Vec<BackendStats>,
    /// Newest first; filled by the renders that show it.
    pub recent_changes: Vec<Change>,
    /// The peer replicas, with `[admin] peers`; filled by the renders that
    /// show it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<super::peers::PeersView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadView {
    /// Reloads of the file attempted since the start.
    pub reloads: u64,
    pub failures: u64,
    /// Set while the last reload failed (until a good one follows).
    pub last_error: Option<String>,
    /// Unix seconds when the file last applied (at start or by a reload).
    pub last_success: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrontendStats {
    pub name: String,
    pub listen: String,
    pub counters: CountersSnapshot,
    pub rates: Rates,
    pub routes: Vec<RouteStats>,
    /// Set on a TLS frontend.
    pub tls: Option<TlsView>,
}

/// A TLS frontend's certificates and handshake counters.
#[derive(Debug, Clone, Serialize)]
pub struct TlsView {
    pub certificates: Vec<CertificateView>,
    /// Reloads (on a file change or asked for) that failed on this
    /// frontend's certificates and kept the old ones serving.
    pub certificate_load_failures: u64,
    /// While the last reload failed on them: what is wrong, per file.
    pub certificate_error: Option<String>,
    /// Completed handshakes.
    pub handshakes: u64,
    /// Failed handshakes by reason: timeout, incompatible, alert,
    /// malformed, closed.
    pub failures: Vec<Labelled>,
    /// Completed handshakes by version: TLSv1.2, TLSv1.3.
    pub versions: Vec<Labelled>,
    /// Completed handshakes by ALPN protocol: h2, http/1.1, none.
    pub alpn: Vec<Labelled>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Labelled {
    pub label: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    pub file: String,
    /// DNS names from the SANs; the first certificate is the default.
    pub names: Vec<String>,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// The same as a UTC date, `YYYY-MM-DD`.
    pub expires: String,
    /// SHA-256 of the certificate, `AB:CD:...`.
    pub fingerprint: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStats {
    /// Position in the frontend's routes, as used by the split API.
    pub index: usize,
    /// Its conditions in config words, like `host=shop.example.com path_prefix=/api`.
    pub matches: String,
    /// Its target and what is done on the way, like
    /// `users rewrite strip_prefix=/api`.
    pub action: String,
    /// `matches -> action`: the route in one line.
    pub description: String,
    /// The backend of a plain route.
    pub backend: Option<String>,
    /// The weights of a split route.
    pub split: Option<Vec<SplitPart>>,
    /// The file's weights, when an operator changed the split.
    pub config_split: Option<Vec<SplitPart>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitPart {
    pub backend: String,
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendStats {
    pub name: String,
    pub balance: &'static str,
    /// `UP` while any server can take new requests, else `DOWN`.
    pub status: &'static str,
    /// Servers that can take new requests now.
    pub eligible: usize,
    pub drain_to_maint: bool,
    /// The `discover` name (`users:8080`) whose records add servers.
    pub discovered_from: Option<String>,
    /// Sums over the servers (averages weighted by requests).
    pub totals: CountersSnapshot,
    pub request_rate: f64,
    pub servers: Vec<ServerStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub name: String,
    pub address: String,
    /// One word, like HAProxy's status column: `MAINT`, `DOWN`, `DRAIN`,
    /// `UP` or `no check` (UP without checks).
    pub status: &'static str,
    /// What the operator set: `ready`, `drain`, `maint`.
    pub admin_state: &'static str,
    /// What the checks see: `UP`, `DOWN` or `NO CHECK`.
    pub health: &'static str,
    pub check_enabled: bool,
    pub weight: u32,
    /// The file's admin state and weight: differ from `admin_state` and
    /// `weight` when an operator changed them.
    pub config_admin_state: &'static str,
    pub config_weight: u32,
    pub backup: bool,
    pub counters: CountersSnapshot,
    pub rates: Rates,
    pub check: CheckView,
    pub transitions_down: u64,
    /// Unix ms of the last admin state or health change.
    pub last_change: u64,
    pub seconds_since_change: u64,
    pub downtime_seconds: u64,
    pub drain: Option<DrainView>,
    pub seconds_since_last_request: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckView {
    /// HAProxy's check status words: `L7OK`, `L7STS`, `L4OK`, `L4CON`,
    /// `L4TOUT`; `None` before the first check or without checks.
    pub status: Option<&'static str>,
    pub code: Option<u16>,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
    pub consecutive_ok: u32,
    pub consecutive_fail: u32,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// Why DOWN when not by a check: `dns`, `passive`.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainView {
    /// Unix ms when DRAIN began.
    pub since: u64,
    pub seconds: u64,
    /// Requests still running on the server.
    pub active: u64,
}

/// Reads everything now.
pub fn collect(runtime: &Runtime, sampler: &Sampler) -> Stats {
    let snapshot = runtime.snapshot();
    let reload = runtime.reload_status();
    let now = now_millis();
    let instant = Instant::now();
    let topology = &snapshot.topology;
    let backends: Vec<BackendStats> = snapshot
        .backends
        .iter()
        .map(|b| {
            let model = topology.backend(&b.name).map(|(_, m)| m);
            backend(b, model, sampler, now, instant)
        })
        .collect();
    let overrides = runtime.split_overrides();
    let frontends = snapshot
        .frontends
        .iter()
        .map(|f| {
            let model = topology.frontends.iter().find(|m| m.name == f.name);
            let mut stats = frontend(
                f,
                &backends,
                &topology.backends,
                &overrides,
                sampler,
                instant,
            );
            stats.tls = model
                .and_then(|m| m.tls.as_ref())
                .map(|tls| tls_view(f, tls, &reload));
            stats
        })
        .collect();
    Stats {
        generation: snapshot.generation,
        uptime_seconds: runtime.uptime().as_secs(),
        access_log_dropped: runtime.registry().process().access_log_dropped(),
        now,
        reload: ReloadView {
            reloads: reload.ok + reload.failed,
            failures: reload.failed,
            last_error: reload.last_error().map(ToString::to_string),
            last_success: reload.last_success.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs())
            }),
        },
        frontends,
        backends,
        recent_changes: Vec::new(),
        peers: None,
    }
}

fn frontend(
    f: &FrontendPlan,
    backends: &[BackendStats],
    models: &[Backend],
    overrides: &[SplitOverride],
    sampler: &Sampler,
    now: Instant,
) -> FrontendStats {
    let name_of = |i: usize| backends.get(i).map_or_else(String::new, |b| b.name.clone());
    let routes = f
        .routes
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let (backend, split) = match &r.route.target {
                Target::Backend(id) => (Some(name_of(id.0)), None),
                Target::Redirect(_) | Target::Respond(_) | Target::Deny => (None, None),
                Target::Split(parts) => {
                    let parts = parts
                        .iter()
                        .map(|(id, weight)| SplitPart {
                            backend: name_of(id.0),
                            weight: *weight,
                        })
                        .collect();
                    (None, Some(parts))
                }
            };
            let config_split = overrides
                .iter()
                .find(|o| o.frontend == f.name && o.route == index)
                .map(|o| {
                    o.config
                        .iter()
                        .map(|(name, weight)| SplitPart {
                            backend: name.to_string(),
                            weight: *weight,
                        })
                        .collect()
                });
            RouteStats {
                index,
                matches: RouteConditions(&r.route).to_string(),
                action: RouteAction {
                    route: &r.route,
                    backends: models,
                }
                .to_string(),
                description: r.route.describe(models).to_string(),
                backend,
                split,
                config_split,
            }
        })
        .collect();
    let counters = f.counters.snapshot();
    FrontendStats {
        name: f.name.to_string(),
        listen: f.listen.to_string(),
        rates: sampler.rates(&Key::Frontend(f.name.clone()), &counters, now),
        counters,
        routes,
        tls: None,
    }
}

fn tls_view(
    f: &FrontendPlan,
    tls: &crate::model::FrontendTls,
    reload: &crate::runtime::ReloadStatus,
) -> TlsView {
    let counters = f.tls_counters.snapshot();
    TlsView {
        certificate_load_failures: reload
            .certificate_failures
            .get(&*f.name)
            .copied()
            .unwrap_or(0),
        certificate_error: reload.certificate_error(&f.name),
        certificates: tls
            .certs
            .iter()
            .map(|c| CertificateView {
                file: c.cert_file.display().to_string(),
                names: c.names.iter().map(ToString::to_string).collect(),
                not_after: c.not_after,
                expires: utc_date(c.not_after),
                fingerprint: c.fingerprint.to_string(),
            })
            .collect(),
        handshakes: counters.handshakes,
        failures: counters
            .failures
            .iter()
            .map(|(r, n)| Labelled {
                label: r.label(),
                count: *n,
            })
            .collect(),
        versions: counters
            .versions
            .iter()
            .map(|(v, n)| Labelled {
                label: v.label(),
                count: *n,
            })
            .collect(),
        alpn: counters
            .alpn
            .iter()
            .map(|(a, n)| Labelled {
                label: a.label(),
                count: *n,
            })
            .collect(),
    }
}

/// `YYYY-MM-DD` (UTC) of Unix seconds (the civil-from-days algorithm).
fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn backend(
    b: &BackendPlan,
    model: Option<&Backend>,
    sampler: &Sampler,
    now: u64,
    instant: Instant,
) -> BackendStats {
    let servers: Vec<ServerStats> = b
        .servers
        .iter()
        .map(|s| {
            let backup = model.is_some_and(|m| {
                m.servers
                    .iter()
                    .any(|x| x.backup && x.name == s.state.server)
            });
            let check = model.and_then(|m| m.check.as_ref());
            server(b, s, (check, backup), sampler, now, instant)
        })
        .collect();
    let eligible = b
        .servers
        .iter()
        .filter(|s| crate::balance::is_eligible(&s.state))
        .count();
    BackendStats {
        name: b.name.to_string(),
        balance: match model.map(|m| m.balance) {
            Some(BalanceAlgorithm::LeastConn) => "leastconn",
            Some(BalanceAlgorithm::RoundRobin) | None => "roundrobin",
        },
        status: if eligible > 0 { "UP" } else { "DOWN" },
        eligible,
        drain_to_maint: b.drain_to_maint,
        discovered_from: model
            .and_then(|m| m.discover.as_ref())
            .map(|d| d.dns.to_string()),
        totals: sum(servers.iter().map(|s| &s.counters)),
        request_rate: servers.iter().map(|s| s.rates.current).sum(),
        servers,
    }
}

fn server(
    b: &BackendPlan,
    s: &ServerPlan,
    (check, backup): (Option<&CheckSpec>, bool),
    sampler: &Sampler,
    now: u64,
    instant: Instant,
) -> ServerStats {
    let state = &s.state;
    let counters = state.counters.snapshot();
    let admin = state.admin_state();
    let health = state.health();
    let is_checked = state.is_checked();
    let status = match (admin, health) {
        (AdminState::Maint, _) => "MAINT",
        (_, Health::Down) => "DOWN",
        (AdminState::Drain, Health::Up) => "DRAIN",
        (AdminState::Ready, Health::Up) if state.weight() == 0 => "DRAIN",
        (AdminState::Ready, Health::Up) if !is_checked => "no check",
        (AdminState::Ready, Health::Up) => "UP",
    };
    let last = state.check_status();
    let (check_status, code, message) = match &last.last {
        None => (None, None, None),
        Some(CheckOutcome::Passed { status: Some(code) }) => (Some("L7OK"), Some(*code), None),
        Some(CheckOutcome::Passed { status: None }) => (Some("L4OK"), None, None),
        Some(CheckOutcome::BadStatus { status }) => (Some("L7STS"), Some(*status), None),
        Some(CheckOutcome::Error { message }) => {
            let word = if message.contains("timeout") || message.contains("timed out") {
                "L4TOUT"
            } else {
                "L4CON"
            };
            (Some(word), None, Some(message.clone()))
        }
    };
    let key = Key::Server(b.name.clone(), state.server.clone());
    let seconds_since = |ms: u64| now.saturating_sub(ms) / 1000;
    ServerStats {
        name: state.server.to_string(),
        address: s.address.to_string(),
        status,
        admin_state: admin.as_str(),
        health: match (is_checked, health) {
            (false, Health::Up) => "NO CHECK",
            (_, health) => health.as_str(),
        },
        check_enabled: !state.is_check_disabled(),
        weight: state.weight(),
        config_admin_state: state.config_admin_state().as_str(),
        config_weight: state.config_weight(),
        backup,
        rates: sampler.rates(&key, &counters, instant),
        check: CheckView {
            status: check_status,
            code,
            duration_ms: last
                .last
                .as_ref()
                .map(|_| u64::try_from(last.duration.as_millis()).unwrap_or(u64::MAX)),
            message,
            consecutive_ok: last.consecutive_ok,
            consecutive_fail: last.consecutive_fail,
            rise: check.map(|c| c.rise),
            fall: check.map(|c| c.fall),
            reason: last.reason.clone(),
        },
        transitions_down: state.transitions_down(),
        last_change: state.last_change(),
        seconds_since_change: seconds_since(state.last_change()),
        downtime_seconds: state.downtime().as_secs(),
        drain: state.drain_since().map(|since| DrainView {
            since,
            seconds: seconds_since(since),
            active: counters.active,
        }),
        seconds_since_last_request: (counters.last_request != 0)
            .then(|| seconds_since(counters.last_request)),
        counters,
    }
}

/// Sums counters; the averages are weighted by request counts.
fn sum<'a>(all: impl Iterator<Item = &'a CountersSnapshot>) -> CountersSnapshot {
    let mut t = CountersSnapshot::default();
    let (mut connect, mut response, mut total) = (0u128, 0u128, 0u128);
    for c in all {
        t.requests += c.requests;
        t.active += c.active;
        t.max_active += c.max_active;
        t.bytes_in += c.bytes_in;
        t.bytes_out += c.bytes_out;
        for (sum, n) in t.responses.iter_mut().zip(c.responses) {
            *sum += n;
        }
        t.connection_errors += c.connection_errors;
        t.response_errors += c.response_errors;
        t.retries += c.retries;
        t.redispatches += c.redispatches;
        t.last_request = t.last_request.max(c.last_request);
        t.tunnels += c.tunnels;
        let n = u128::from(c.requests);
        connect += u128::from(c.avg_connect_us) * n;
        response += u128::from(c.avg_response_us) * n;
        total += u128::from(c.avg_total_us) * n;
    }
    let n = u128::from(t.requests.max(1));
    let avg = |x: u128| u64::try_from(x / n).unwrap_or(u64::MAX);
    (t.avg_connect_us, t.avg_response_us, t.avg_total_us) =
        (avg(connect), avg(response), avg(total));
    t
}

#[cfg(test)]
mod date_tests {
    #[test]
    fn utc_dates() {
        for (secs, date) in [
            (0, "1970-01-01"),
            (951_782_400, "2000-02-29"),
            (1_798_675_200, "2026-12-31"),
        ] {
            assert_eq!(super::utc_date(secs), date);
        }
    }
}
