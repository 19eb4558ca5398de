//! Replicas sharing their operator state: the same authenticated admin API,
//! spoken between replicas. Owns `Replication` (this replica's name, the
//! stamped registers of operator changes, the peers' status and the
//! ready-after-pull gate), the `POST /api/peers/exchange` handler, and the
//! modules behind them: `ledger` (the pure last-writer-wins registers),
//! `local` (stamping a change made here), `apply` (applying a peer's change
//! through the same paths as the API), `client` (one exchange with a peer)
//! and `sync` (the task that pushes and pulls).
//!
//! Protocol: an exchange sends every register this replica holds and answers
//! with every register the peer holds after merging them; both sides merge
//! what they get. A change made here is pushed at once to every peer; every
//! `EXCHANGE_EVERY` each peer is exchanged with anyway, so a missed push
//! converges. A register only moves to a later (time, replica) stamp, so the
//! same changes in any order end in the same state everywhere.
//!
//! Invariants: registers change only while the `turn` is held, and the
//! change they describe is applied in the same turn, so the registers and
//! the running state never disagree; a change applied from a peer keeps its
//! stamp and is not pushed on as a new change (no loops). Without `peers`
//! nothing runs and the exchange endpoint answers 404.

mod apply;
mod client;
pub mod ledger;
pub mod local;
mod sync;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::AdminContext;
use super::api::ApiError;
use super::auth::Caller;
use ledger::{Register, Registers};

pub use ledger::Stamp;
pub use sync::PeerSync;

/// How long a starting replica waits for a peer's state before it reports
/// ready with its own (the first replica of a cold cluster has no peer).
pub const START_WAIT: Duration = Duration::from_secs(5);
/// How often every peer is exchanged with, besides the pushes on change.
pub const EXCHANGE_EVERY: Duration = Duration::from_secs(2);
/// Most time one exchange may take (connect, send, answer).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often peer names are resolved again (a headless Service's pods come
/// and go).
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// What this replica knows of its peers and its operator changes. Shared as
/// `Arc<Replication>`; a clone costs one atomic increment.
#[derive(Debug)]
pub struct Replication {
    /// This replica's name.
    replica: String,
    /// Random per process: tells this process from another replica that
    /// took the same name by mistake.
    instance: String,
    /// Held while registers change and their change is applied.
    turn: tokio::sync::Mutex<()>,
    registers: Mutex<Registers>,
    /// Woken by every change made here: push it.
    changed: tokio::sync::Notify,
    /// Woken by every change made here or applied from a peer: save it.
    unsaved: tokio::sync::Notify,
    /// False from a start with peers until a peer's state was pulled (or
    /// `START_WAIT` passed).
    is_ready: AtomicBool,
    /// By the address exchanged with.
    peers: Mutex<BTreeMap<String, PeerStatus>>,
}

/// One peer, as the stats page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The address exchanged with (`10.0.0.3:8001`).
    pub address: String,
    /// The configured entry it came from (`switchyard-peers:8001`).
    pub configured: String,
    /// The replica that answered there.
    pub replica: Option<String>,
    /// Unix ms of the last successful exchange.
    pub last_exchange: Option<u64>,
    /// Whether both held the same registers after the last exchange.
    pub in_sync: bool,
    /// Why the last exchange failed, until one succeeds.
    pub error: Option<String>,
}

/// The peers section of `/api/stats` and the stats page.
#[derive(Debug, Clone, Serialize)]
pub struct PeersView {
    /// This replica's name.
    pub replica: String,
    /// The digest of this replica's registers (equal digests: same state).
    pub digest: String,
    /// Operator changes held (registers).
    pub registers: usize,
    /// False while a starting replica waits for a peer's state.
    pub ready: bool,
    pub peers: Vec<PeerStatus>,
}

/// The body of an exchange, both ways.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub replica: String,
    pub instance: String,
    /// The sender's digest (of its registers, after merging on the answer).
    pub digest: String,
    pub registers: Vec<Register>,
}

/// A held turn: registers may change and their change apply.
pub struct Turn<'a>(
    #[expect(dead_code, reason = "held for its drop")] tokio::sync::MutexGuard<'a, ()>,
);

impl Replication {
    /// `replica` with the registers saved before a restart; `has_peers`:
    /// peers are configured at start, so the replica is not ready before it
    /// pulled their state.
    pub fn new(replica: String, saved: Vec<Register>, has_peers: bool) -> Replication {
        let mut registers = Registers::default();
        registers.merge(saved.iter().filter_map(|r| r.parts().ok()));
        Replication {
            replica,
            instance: random_instance(),
            turn: tokio::sync::Mutex::new(()),
            registers: Mutex::new(registers),
            changed: tokio::sync::Notify::new(),
            unsaved: tokio::sync::Notify::new(),
            is_ready: AtomicBool::new(!has_peers),
            peers: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Waits for the turn to change registers.
    pub async fn turn(&self) -> Turn<'_> {
        Turn(self.turn.lock().await)
    }

    /// Every register, for the state file and exchanges.
    pub fn registers(&self) -> Vec<Register> {
        self.lock().to_wire()
    }

    pub fn digest(&self) -> String {
        self.lock().digest()
    }

    /// Returns once an operator change was made or applied since the last
    /// return (at once when one was): the state file's cue.
    pub async fn unsaved(&self) {
        self.unsaved.notified().await;
    }

    /// Whether the replica may report ready.
    pub fn is_ready(&self) -> bool {
        self.is_ready.load(Ordering::Relaxed)
    }

    fn set_ready(&self) {
        self.is_ready.store(true, Ordering::Relaxed);
    }

    pub fn view(&self) -> PeersView {
        let (digest, registers) = {
            let r = self.lock();
            (r.digest(), r.len())
        };
        PeersView {
            replica: self.replica.clone(),
            digest,
            registers,
            ready: self.is_ready(),
            peers: self
                .peers
                .lock()
                .map(|p| p.values().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registers> {
        self.registers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_peer(&self, address: &str, update: impl FnOnce(&mut PeerStatus)) {
        if let Ok(mut peers) = self.peers.lock() {
            let status = peers
                .entry(address.to_owned())
                .or_insert_with(|| PeerStatus {
                    address: address.to_owned(),
                    ..PeerStatus::default()
                });
            update(status);
        }
    }

    fn forget_peers(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|address, _| keep(address));
        }
    }

    /// This replica's side of an exchange: its name and every register.
    fn exchange(&self) -> Exchange {
        let r = self.lock();
        Exchange {
            replica: self.replica.clone(),
            instance: self.instance.clone(),
            digest: r.digest(),
            registers: r.to_wire(),
        }
    }
}

/// 16 random hex digits.
fn random_instance() -> String {
    let mut bytes = [0u8; 8];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
        // Not a secret: only needs to differ between two processes.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64 ^ u64::from(std::process::id())).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This replica's name: `[admin] replica`, else the host name (a pod's or
/// container's name, unique among its peers), else `switchyard`.
pub fn replica_name(config: &crate::model::Admin) -> String {
    if let Some(name) = &config.replica {
        return name.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    host.unwrap_or_else(|| "switchyard".to_owned())
}

/// Largest exchange a peer may send (every register of a large topology).
const MAX_EXCHANGE: usize = 64 * 1024 * 1024;

pub(super) fn routes() -> Router<Arc<AdminContext>> {
    Router::new().route(
        "/api/peers/exchange",
        post(exchange).layer(axum::extract::DefaultBodyLimit::max(MAX_EXCHANGE)),
    )
}

/// `POST /api/peers/exchange`: merges the peer's registers, applies what is
/// newer here, and answers with every register held after that.
async fn exchange(
    State(ctx): State<Arc<AdminContext>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Json<Exchange>, ApiError> {
    if ctx.runtime.snapshot().topology.admin.peers.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "peers are not configured on this replica ([admin] peers)".to_owned(),
        ));
    }
    let theirs: Exchange = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid exchange: {e}")))?;
    let mut parts = Vec::with_capacity(theirs.registers.len());
    for register in &theirs.registers {
        let part = register
            .parts()
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
        parts.push(part);
    }
    let replication = &ctx.replication;
    if theirs.replica == replication.replica && theirs.instance != replication.instance {
        tracing::error!(replica = %theirs.replica, from = %caller.from, "another replica has this replica's name; set [admin] replica");
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "replica name {:?} is taken by the replica answering",
                theirs.replica
            ),
        ));
    }
    let peer = caller.from.to_string();
    apply::merge_and_apply(&ctx, parts, &peer).await;
    Ok(Json(replication.exchange()))
}

impl Replication {
    /// Stamps changes made on this replica (already applied, in this turn)
    /// and wakes the push to every peer.
    pub fn record(&self, _turn: &Turn<'_>, changes: Vec<(ledger::Key, ledger::Value)>) {
        if changes.is_empty() {
            return;
        }
        self.lock()
            .record(changes, &self.replica, crate::state::now_millis());
        self.changed.notify_one();
        self.unsaved.notify_one();
    }

    /// The split keys held (for a reset of everything).
    pub fn split_keys(&self) -> Vec<ledger::Key> {
        self.lock()
            .keys()
            .filter(|k| matches!(k, ledger::Key::Split { .. }))
            .cloned()
            .collect()
    }
}
