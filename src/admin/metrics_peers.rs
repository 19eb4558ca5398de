//! Prometheus families of the peer replicas (Switchyard names only, and
//! only while `[admin] peers` is configured): whether the last exchange
//! with each peer succeeded, and whether it holds the same operator state.
//! Read at scrape time from the same `Replication` as the page and the API.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, MetricFamily, MetricType};

use super::metrics::labelled;
use super::peers::{PeerStatus, Replication};
use crate::runtime::Runtime;

const LABELS: [&str; 2] = ["peer", "replica"];

struct Family {
    name: &'static str,
    help: &'static str,
    value: fn(&PeerStatus) -> bool,
}

const FAMILIES: [Family; 2] = [
    Family {
        name: "switchyard_peer_up",
        help: "1 when the last exchange with the peer replica succeeded.",
        value: |p| p.error.is_none() && p.last_exchange.is_some(),
    },
    Family {
        name: "switchyard_peer_in_sync",
        help: "1 when the peer replica held the same operator state after the last exchange.",
        value: |p| p.in_sync,
    },
];

/// Reads the peers' status at each scrape.
pub(super) struct PeersCollector {
    runtime: Arc<Runtime>,
    replication: Arc<Replication>,
    descs: Vec<Desc>,
}

impl PeersCollector {
    pub(super) fn new(
        runtime: &Arc<Runtime>,
        replication: &Arc<Replication>,
    ) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let labels = LABELS.iter().map(|l| (*l).to_owned()).collect();
                Desc::new(f.name.to_owned(), f.help.to_owned(), labels, HashMap::new())
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(PeersCollector {
            runtime: Arc::clone(runtime),
            replication: Arc::clone(replication),
            descs,
        })
    }
}

impl Collector for PeersCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if self.runtime.snapshot().topology.admin.peers.is_empty() {
            return Vec::new();
        }
        let peers = self.replication.view().peers;
        FAMILIES
            .iter()
            .map(|f| {
                let metrics = peers
                    .iter()
                    .map(|p| {
                        let replica = p.replica.clone().unwrap_or_default();
                        let mut m = labelled(&LABELS, &[p.address.clone(), replica]);
                        let mut g = Gauge::default();
                        g.set_value(if (f.value)(p) { 1.0 } else { 0.0 });
                        m.set_gauge(g);
                        m
                    })
                    .collect();
                let mut family = MetricFamily::default();
                family.set_name(f.name.to_owned());
                family.set_help(f.help.to_owned());
                family.set_field_type(MetricType::GAUGE);
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}
