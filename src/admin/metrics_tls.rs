//! Prometheus families of TLS frontends: handshakes by version and by ALPN
//! protocol, failed handshakes by reason, and each certificate's expiry.
//! Switchyard names only (HAProxy's exporter has no per-frontend TLS
//! counters). Read from the same `Stats` as the page and the API.

use std::collections::HashMap;

use prometheus::core::Desc;
use prometheus::proto::{Gauge, Metric, MetricFamily, MetricType};

use super::metrics::labelled;
use super::stats::{Labelled, Stats};

struct Family {
    name: &'static str,
    help: &'static str,
    /// `frontend` first; a second label when the family has one.
    labels: &'static [&'static str],
    kind: MetricType,
}

const FAMILIES: [Family; 5] = [
    Family {
        name: "switchyard_frontend_tls_handshakes_total",
        help: "Completed TLS handshakes by protocol version.",
        labels: &["frontend", "version"],
        kind: MetricType::COUNTER,
    },
    Family {
        name: "switchyard_frontend_tls_alpn_total",
        help: "Completed TLS handshakes by ALPN protocol (none: the client offered none).",
        labels: &["frontend", "protocol"],
        kind: MetricType::COUNTER,
    },
    Family {
        name: "switchyard_frontend_tls_handshake_failures_total",
        help: "Failed TLS handshakes by reason.",
        labels: &["frontend", "reason"],
        kind: MetricType::COUNTER,
    },
    Family {
        name: "switchyard_tls_certificate_expiry_timestamp_seconds",
        help: "Unix time when a frontend's certificate expires, by its SHA-256 fingerprint.",
        labels: &["frontend", "fingerprint"],
        kind: MetricType::GAUGE,
    },
    Family {
        name: "switchyard_frontend_tls_certificate_load_failures_total",
        help: "Reloads that failed on a frontend's certificates or keys and kept the old ones serving.",
        labels: &["frontend"],
        kind: MetricType::COUNTER,
    },
];

pub(super) fn descs() -> prometheus::Result<Vec<Desc>> {
    FAMILIES
        .iter()
        .map(|f| {
            let labels = f.labels.iter().map(|l| (*l).to_owned()).collect();
            Desc::new(f.name.to_owned(), f.help.to_owned(), labels, HashMap::new())
        })
        .collect()
}

pub(super) fn families(stats: &Stats) -> Vec<MetricFamily> {
    FAMILIES
        .iter()
        .map(|family| {
            let mut metrics = Vec::new();
            for f in &stats.frontends {
                let Some(tls) = &f.tls else { continue };
                let counted = |list: &[Labelled]| -> Vec<(String, f64)> {
                    list.iter()
                        .map(|l| (l.label.to_owned(), l.count as f64))
                        .collect()
                };
                let values = match family.name {
                    "switchyard_frontend_tls_handshakes_total" => counted(&tls.versions),
                    "switchyard_frontend_tls_alpn_total" => counted(&tls.alpn),
                    "switchyard_frontend_tls_handshake_failures_total" => counted(&tls.failures),
                    "switchyard_frontend_tls_certificate_load_failures_total" => {
                        vec![(String::new(), tls.certificate_load_failures as f64)]
                    }
                    _ => tls
                        .certificates
                        .iter()
                        .map(|c| (c.fingerprint.clone(), c.not_after as f64))
                        .collect(),
                };
                for (label, value) in values {
                    metrics.push(metric(family, &f.name, label, value));
                }
            }
            let mut out = MetricFamily::default();
            out.set_name(family.name.to_owned());
            out.set_help(family.help.to_owned());
            out.set_field_type(family.kind);
            out.set_metric(metrics);
            out
        })
        .collect()
}

fn metric(family: &Family, frontend: &str, label: String, value: f64) -> Metric {
    let mut m = labelled(family.labels, &[frontend.to_owned(), label]);
    match family.kind {
        MetricType::GAUGE => {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        _ => {
            let mut c = prometheus::proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        }
    }
    m
}
