//! Prometheus `/metrics`: a custom collector on an explicit registry that
//! reads the same counters as the page (through `stats`) at scrape time.
//! `?names=haproxy` answers with the names of HAProxy's built-in exporter
//! (`haproxy_server_status`, ...) for dashboards that carry over; the
//! mapping is `SPECS` and docs/admin.md.
//! Invariant: nothing is counted here; every value is read at scrape time.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use super::AdminContext;
use super::metrics_peers::PeersCollector;
use super::peers::Replication;
use super::sampler::Sampler;
use super::stats::{self, Stats};
use crate::runtime::Runtime;
use crate::state::{CountersSnapshot, StatusClass, TIME_BUCKETS};

/// Which names to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    Switchyard,
    Haproxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Process,
    Frontend,
    Backend,
    Server,
}

/// One metric family: our name, HAProxy's exporter name, and how to read it.
struct Spec {
    name: &'static str,
    haproxy: Option<&'static str>,
    help: &'static str,
    kind: MetricType,
    scope: Scope,
    /// An extra label beyond the scope's: `code` or `state`.
    extra: Option<&'static str>,
}

const fn spec(
    name: &'static str,
    haproxy: Option<&'static str>,
    kind: MetricType,
    scope: Scope,
    extra: Option<&'static str>,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        haproxy,
        help,
        kind,
        scope,
        extra,
    }
}

use MetricType::{COUNTER as C, GAUGE as G};
use Scope::{Backend as B, Frontend as F, Process as P, Server as S};

/// Every family, with HAProxy's exporter name where one exists.
#[rustfmt::skip]
const SPECS: &[Spec] = &[
    spec("switchyard_uptime_seconds", Some("haproxy_process_uptime_seconds"), G, P, None, "Seconds since the process started."),
    spec("switchyard_config_reloads_total", None, C, P, None, "Config reloads attempted from the file."),
    spec("switchyard_config_reload_failures_total", None, C, P, None, "Config reloads that failed and kept the running config."),
    spec("switchyard_reloads_total", None, C, P, Some("result"), "Reloads of the config file by result: ok or failed."),
    spec("switchyard_last_reload_success_timestamp_seconds", None, G, P, None, "Unix time when the config file last applied (start or reload)."),
    spec("switchyard_config_generation", None, G, P, None, "Generation of the serving snapshot."),
    spec("switchyard_access_log_dropped_total", None, C, P, None, "Access-log lines dropped because stdout was too slow."),
    spec("switchyard_frontend_requests_total", Some("haproxy_frontend_http_requests_total"), C, F, None, "Requests received by the frontend."),
    spec("switchyard_frontend_responses_total", Some("haproxy_frontend_http_responses_total"), C, F, Some("code"), "Responses by status class."),
    spec("switchyard_frontend_bytes_in_total", Some("haproxy_frontend_bytes_in_total"), C, F, None, "Request bytes received from clients."),
    spec("switchyard_frontend_bytes_out_total", Some("haproxy_frontend_bytes_out_total"), C, F, None, "Response bytes sent to clients."),
    spec("switchyard_frontend_current_sessions", Some("haproxy_frontend_current_sessions"), G, F, None, "Requests in flight."),
    spec("switchyard_frontend_max_sessions", Some("haproxy_frontend_max_sessions"), G, F, None, "Most requests in flight at once."),
    spec("switchyard_frontend_panics_total", None, C, F, None, "Requests whose handling panicked; each was answered 500."),
    spec("switchyard_backend_up", Some("haproxy_backend_status"), G, B, None, "1 while any server can take new requests."),
    spec("switchyard_backend_active_servers", Some("haproxy_backend_active_servers"), G, B, None, "Servers that can take new requests."),
    spec("switchyard_backend_requests_total", Some("haproxy_backend_http_requests_total"), C, B, None, "Requests sent to the backend's servers."),
    spec("switchyard_backend_responses_total", Some("haproxy_backend_http_responses_total"), C, B, Some("code"), "Responses by status class."),
    spec("switchyard_backend_bytes_in_total", Some("haproxy_backend_bytes_in_total"), C, B, None, "Request bytes sent to servers."),
    spec("switchyard_backend_bytes_out_total", Some("haproxy_backend_bytes_out_total"), C, B, None, "Response bytes received from servers."),
    spec("switchyard_backend_current_sessions", Some("haproxy_backend_current_sessions"), G, B, None, "Requests in flight."),
    spec("switchyard_backend_connection_errors_total", Some("haproxy_backend_connection_errors_total"), C, B, None, "Failed connection attempts."),
    spec("switchyard_backend_response_errors_total", Some("haproxy_backend_response_errors_total"), C, B, None, "Failed or aborted responses."),
    spec("switchyard_backend_retries_total", Some("haproxy_backend_retry_warnings_total"), C, B, None, "Retried connection attempts."),
    spec("switchyard_backend_redispatches_total", Some("haproxy_backend_redispatch_warnings_total"), C, B, None, "Requests moved to another server."),
    spec("switchyard_backend_response_time_average_seconds", Some("haproxy_backend_response_time_average_seconds"), G, B, None, "Average time to the response head over the last 1024 requests (sliding average)."),
    spec("switchyard_server_status", Some("haproxy_server_status"), G, S, Some("state"), "1 for the server's current status: UP, DOWN, DRAIN or MAINT."),
    spec("switchyard_server_weight", Some("haproxy_server_weight"), G, S, None, "Effective weight."),
    spec("switchyard_server_current_sessions", Some("haproxy_server_current_sessions"), G, S, None, "Requests in flight."),
    spec("switchyard_server_max_sessions", Some("haproxy_server_max_sessions"), G, S, None, "Most requests in flight at once."),
    spec("switchyard_server_requests_total", Some("haproxy_server_sessions_total"), C, S, None, "Requests sent to the server."),
    spec("switchyard_server_responses_total", Some("haproxy_server_http_responses_total"), C, S, Some("code"), "Responses by status class."),
    spec("switchyard_server_bytes_in_total", Some("haproxy_server_bytes_in_total"), C, S, None, "Request bytes sent to the server."),
    spec("switchyard_server_bytes_out_total", Some("haproxy_server_bytes_out_total"), C, S, None, "Response bytes received from the server."),
    spec("switchyard_server_connection_errors_total", Some("haproxy_server_connection_errors_total"), C, S, None, "Failed connection attempts."),
    spec("switchyard_server_response_errors_total", Some("haproxy_server_response_errors_total"), C, S, None, "Failed or aborted responses."),
    spec("switchyard_server_retries_total", Some("haproxy_server_retry_warnings_total"), C, S, None, "Retried connection attempts."),
    spec("switchyard_server_redispatches_total", Some("haproxy_server_redispatch_warnings_total"), C, S, None, "Requests moved away from this server."),
    spec("switchyard_server_check_consecutive_failures", Some("haproxy_server_check_failures_total"), G, S, None, "Consecutive failed health checks (HAProxy counts all failures)."),
    spec("switchyard_server_check_up_down_total", Some("haproxy_server_check_up_down_total"), C, S, None, "UP to DOWN transitions."),
    spec("switchyard_server_downtime_seconds_total", Some("haproxy_server_downtime_seconds_total"), C, S, None, "Time spent DOWN."),
    spec("switchyard_server_check_duration_seconds", Some("haproxy_server_check_duration_seconds"), G, S, None, "Duration of the last health check."),
    spec("switchyard_server_last_session_seconds", Some("haproxy_server_last_session_seconds"), G, S, None, "Seconds since the last request (absent if none)."),
    spec("switchyard_server_connect_time_average_seconds", Some("haproxy_server_connect_time_average_seconds"), G, S, None, "Average connect time over the last 1024 requests (sliding average)."),
    spec("switchyard_server_response_time_average_seconds", Some("haproxy_server_response_time_average_seconds"), G, S, None, "Average time to the response head over the last 1024 requests (sliding average)."),
    spec("switchyard_server_total_time_average_seconds", Some("haproxy_server_total_time_average_seconds"), G, S, None, "Average total request time over the last 1024 requests (sliding average)."),
];

/// Server states `switchyard_server_status` reports, one series each.
const STATES: [&str; 4] = ["UP", "DOWN", "DRAIN", "MAINT"];

/// The two registries: Switchyard's names and HAProxy's.
pub(crate) struct Registries {
    standard: Registry,
    haproxy: Registry,
}

impl Registries {
    pub(crate) fn new(
        runtime: &Arc<Runtime>,
        sampler: &Arc<Sampler>,
        replication: &Arc<Replication>,
    ) -> prometheus::Result<Self> {
        let registry = |naming| -> prometheus::Result<Registry> {
            let r = Registry::new();
            r.register(Box::new(StatsCollector::new(naming, runtime, sampler)?))?;
            if naming == Naming::Switchyard {
                r.register(Box::new(PeersCollector::new(runtime, replication)?))?;
            }
            Ok(r)
        };
        Ok(Registries {
            standard: registry(Naming::Switchyard)?,
            haproxy: registry(Naming::Haproxy)?,
        })
    }
}

#[derive(serde::Deserialize)]
pub(super) struct MetricsQuery {
    names: Option<String>,
}

pub(super) async fn render(
    State(ctx): State<Arc<AdminContext>>,
    Query(query): Query<MetricsQuery>,
) -> Response {
    let registry = match query.names.as_deref() {
        None | Some("switchyard") => &ctx.metrics.standard,
        Some("haproxy") => &ctx.metrics.haproxy,
        Some(_) => {
            let body = axum::Json(serde_json::json!({ "error": "names is switchyard or haproxy" }));
            return (StatusCode::BAD_REQUEST, body).into_response();
        }
    };
    let mut body = String::new();
    let encoder = TextEncoder::new();
    match encoder.encode_utf8(&registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Reads `stats` at each scrape.
struct StatsCollector {
    naming: Naming,
    runtime: Arc<Runtime>,
    sampler: Arc<Sampler>,
    descs: Vec<Desc>,
}

impl StatsCollector {
    fn new(
        naming: Naming,
        runtime: &Arc<Runtime>,
        sampler: &Arc<Sampler>,
    ) -> prometheus::Result<Self> {
        let mut descs = SPECS
            .iter()
            .filter_map(|s| Some((name(naming, s)?, s)))
            .map(|(n, s)| {
                let labels = labels(naming, s).into_iter().map(str::to_owned).collect();
                Desc::new(n.to_owned(), s.help.to_owned(), labels, HashMap::new())
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        if naming == Naming::Switchyard {
            let labels = vec!["backend".to_owned(), "server".to_owned()];
            descs.push(Desc::new(
                TIME_HISTOGRAM.to_owned(),
                "Total time of requests.".to_owned(),
                labels,
                HashMap::new(),
            )?);
            descs.extend(super::metrics_tls::descs()?);
        }
        Ok(StatsCollector {
            naming,
            runtime: Arc::clone(runtime),
            sampler: Arc::clone(sampler),
            descs,
        })
    }
}

fn name(naming: Naming, s: &Spec) -> Option<&'static str> {
    match naming {
        Naming::Switchyard => Some(s.name),
        Naming::Haproxy => s.haproxy,
    }
}

fn labels(naming: Naming, s: &Spec) -> Vec<&'static str> {
    let mut l: Vec<&'static str> = match (s.scope, naming) {
        (P, _) => vec![],
        (F, Naming::Switchyard) => vec!["frontend"],
        (B, Naming::Switchyard) => vec!["backend"],
        (S, Naming::Switchyard) => vec!["backend", "server"],
        (F | B, Naming::Haproxy) => vec!["proxy"],
        (S, Naming::Haproxy) => vec!["proxy", "server"],
    };
    l.extend(s.extra);
    l
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = stats::collect(&self.runtime, &self.sampler);
        SPECS
            .iter()
            .filter_map(|s| {
                let n = name(self.naming, s)?;
                let keys = labels(self.naming, s);
                let metrics = values(s, &stats)
                    .into_iter()
                    .map(|(vals, v)| metric(&keys, &vals, s.kind, v))
                    .collect();
                let mut family = MetricFamily::default();
                family.set_name(n.to_owned());
                family.set_help(s.help.to_owned());
                family.set_field_type(s.kind);
                family.set_metric(metrics);
                Some(family)
            })
            .chain(self.time_histogram(&stats))
            .chain(match self.naming {
                Naming::Switchyard => super::metrics_tls::families(&stats),
                Naming::Haproxy => Vec::new(),
            })
            .collect()
    }
}

impl StatsCollector {
    /// Total request time per server, as a Prometheus histogram (Switchyard
    /// names only; HAProxy's exporter has no such histogram).
    fn time_histogram(&self, stats: &Stats) -> Option<MetricFamily> {
        if self.naming != Naming::Switchyard {
            return None;
        }
        let metrics = stats
            .backends
            .iter()
            .flat_map(|b| b.servers.iter().map(move |sv| (b, sv)))
            .map(|(b, sv)| {
                let c = &sv.counters;
                let mut cumulative = 0;
                let buckets = TIME_BUCKETS
                    .iter()
                    .zip(c.time_buckets)
                    .map(|(bound, n)| {
                        cumulative += n;
                        let mut bucket = proto::Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect();
                let mut h = proto::Histogram::default();
                h.set_bucket(buckets);
                h.set_sample_count(c.time_buckets.iter().sum());
                h.set_sample_sum(c.time_sum_us as f64 / 1e6);
                let mut m = labelled(&["backend", "server"], &[b.name.clone(), sv.name.clone()]);
                m.set_histogram(h);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(TIME_HISTOGRAM.to_owned());
        family.set_help("Total time of requests (head to end of response body).".to_owned());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        Some(family)
    }
}

const TIME_HISTOGRAM: &str = "switchyard_server_request_duration_seconds";

fn metric(keys: &[&str], vals: &[String], kind: MetricType, value: f64) -> Metric {
    let mut m = labelled(keys, vals);
    if kind == C {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    }
    m
}

/// A metric with these labels and no value yet.
pub(super) fn labelled(keys: &[&str], vals: &[String]) -> Metric {
    let mut m = Metric::default();
    let pairs = keys
        .iter()
        .zip(vals)
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name((*k).to_owned());
            p.set_value(v.clone());
            p
        })
        .collect();
    m.set_label(pairs);
    m
}

type Series = Vec<(Vec<String>, f64)>;

/// Label values (in `labels` order) and value of every series of `s`.
fn values(s: &Spec, stats: &Stats) -> Series {
    let secs = |us: u64| us as f64 / 1e6;
    let by_class = |base: &[String], c: &CountersSnapshot| -> Series {
        StatusClass::ALL
            .iter()
            .zip(c.responses)
            .map(|(class, n)| (with(base, class.label()), n as f64))
            .collect()
    };
    let field = s.name;
    let mut out = Series::new();
    match s.scope {
        P => {
            let v = match field {
                "switchyard_reloads_total" => {
                    let ok = stats.reload.reloads - stats.reload.failures;
                    out.push((vec!["ok".to_owned()], ok as f64));
                    out.push((vec!["failed".to_owned()], stats.reload.failures as f64));
                    return out;
                }
                "switchyard_last_reload_success_timestamp_seconds" => {
                    match stats.reload.last_success {
                        Some(t) => t as f64,
                        None => return out,
                    }
                }
                "switchyard_uptime_seconds" => stats.uptime_seconds as f64,
                "switchyard_config_reloads_total" => stats.reload.reloads as f64,
                "switchyard_config_reload_failures_total" => stats.reload.failures as f64,
                "switchyard_access_log_dropped_total" => stats.access_log_dropped as f64,
                _ => stats.generation as f64,
            };
            out.push((vec![], v));
        }
        F => {
            for f in &stats.frontends {
                let base = vec![f.name.clone()];
                let c = &f.counters;
                match field.trim_start_matches("switchyard_frontend_") {
                    "responses_total" => out.extend(by_class(&base, c)),
                    other => out.push((base, common(other, c).unwrap_or_default())),
                }
            }
        }
        B => {
            for b in &stats.backends {
                let base = vec![b.name.clone()];
                let c = &b.totals;
                match field.trim_start_matches("switchyard_backend_") {
                    "responses_total" => out.extend(by_class(&base, c)),
                    "up" => out.push((base, f64::from(u8::from(b.status == "UP")))),
                    "active_servers" => out.push((base, b.eligible as f64)),
                    "response_time_average_seconds" => out.push((base, secs(c.avg_response_us))),
                    other => out.push((base, common(other, c).unwrap_or_default())),
                }
            }
        }
        S => {
            for b in &stats.backends {
                for sv in &b.servers {
                    let base = vec![b.name.clone(), sv.name.clone()];
                    let c = &sv.counters;
                    let v = match field.trim_start_matches("switchyard_server_") {
                        "responses_total" => {
                            out.extend(by_class(&base, c));
                            continue;
                        }
                        "status" => {
                            let status = if sv.status == "no check" {
                                "UP"
                            } else {
                                sv.status
                            };
                            for state in STATES {
                                out.push((
                                    with(&base, state),
                                    f64::from(u8::from(status == state)),
                                ));
                            }
                            continue;
                        }
                        "last_session_seconds" => match sv.seconds_since_last_request {
                            Some(s) => s as f64,
                            None => continue,
                        },
                        "weight" => f64::from(sv.weight),
                        "check_consecutive_failures" => f64::from(sv.check.consecutive_fail),
                        "check_up_down_total" => sv.transitions_down as f64,
                        "downtime_seconds_total" => sv.downtime_seconds as f64,
                        "check_duration_seconds" => sv.check.duration_ms.unwrap_or(0) as f64 / 1e3,
                        "connect_time_average_seconds" => secs(c.avg_connect_us),
                        "response_time_average_seconds" => secs(c.avg_response_us),
                        "total_time_average_seconds" => secs(c.avg_total_us),
                        other => common(other, c).unwrap_or_default(),
                    };
                    out.push((base, v));
                }
            }
        }
    }
    out
}

/// Counters that frontends, backends and servers share, by name suffix.
fn common(suffix: &str, c: &CountersSnapshot) -> Option<f64> {
    let v = match suffix {
        "requests_total" => c.requests,
        "bytes_in_total" => c.bytes_in,
        "bytes_out_total" => c.bytes_out,
        "current_sessions" => c.active,
        "max_sessions" => c.max_active,
        "connection_errors_total" => c.connection_errors,
        "response_errors_total" => c.response_errors,
        "retries_total" => c.retries,
        "redispatches_total" => c.redispatches,
        "panics_total" => c.panics,
        _ => return None,
    };
    Some(v as f64)
}

fn with(base: &[String], extra: &str) -> Vec<String> {
    let mut v = base.to_vec();
    v.push(extra.to_owned());
    v
}
