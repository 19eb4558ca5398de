//! The task that keeps this replica in step with its peers. Owns
//! `PeerSync`: it resolves the configured peers (again every
//! `RESOLVE_EVERY`, and when a reload changes them), runs one worker per
//! peer address, wakes every worker on each change made here (the push) and
//! every `EXCHANGE_EVERY` (the pull), and opens the ready gate at start once
//! a peer's state was pulled, or after `START_WAIT` without one.
//! Invariant: one worker per address, so a slow or dead peer delays no
//! other; an address that answers as this very process is dropped for good.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::super::AdminContext;
use super::{EXCHANGE_EVERY, EXCHANGE_TIMEOUT, RESOLVE_EVERY, START_WAIT, apply, client};
use crate::model::PeerAddress;
use crate::state::now_millis;

/// Most time one peer name's lookup may take.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Replication with the peers of `[admin] peers`. Built by the admin server;
/// the app runs it when peers are configured (at start or by a reload).
pub struct PeerSync {
    pub(in crate::admin) ctx: Arc<AdminContext>,
    /// The admin server's own address: never a peer.
    pub(in crate::admin) own: SocketAddr,
}

struct Worker {
    wake: Arc<Notify>,
    stop: CancellationToken,
}

impl PeerSync {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let replication = Arc::clone(&self.ctx.replication);
        let mut snapshots = self.ctx.runtime.subscribe();
        let workers_done = TaskTracker::new();
        let mut workers: HashMap<SocketAddr, Worker> = HashMap::new();
        let selves: Arc<Mutex<HashSet<SocketAddr>>> =
            Arc::new(Mutex::new(HashSet::from([self.own])));
        // Addresses each configured entry resolved to last (kept when a
        // lookup fails).
        let mut resolved: HashMap<PeerAddress, Vec<SocketAddr>> = HashMap::new();
        let mut exchange_tick = tokio::time::interval(EXCHANGE_EVERY);
        exchange_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resolve_tick = tokio::time::interval(RESOLVE_EVERY);
        resolve_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start_wait = tokio::time::sleep(START_WAIT);
        tokio::pin!(start_wait);
        let mut is_waiting = !replication.is_ready();
        let mut configured = self.ctx.runtime.snapshot().topology.admin.peers.clone();
        if is_waiting {
            tracing::info!(wait = ?START_WAIT, "pulling the operator state from a peer before reporting ready");
        }
        loop {
            let wake_all = tokio::select! {
                () = stop.cancelled() => break,
                _ = resolve_tick.tick() => {
                    self.reconcile(&mut resolved, &mut workers, &selves, &workers_done, &stop).await;
                    false
                }
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let now = snapshots.borrow_and_update().topology.admin.peers.clone();
                    if now == configured {
                        continue;
                    }
                    configured = now;
                    self.reconcile(&mut resolved, &mut workers, &selves, &workers_done, &stop).await;
                    false
                }
                _ = exchange_tick.tick() => true,
                () = replication.changed.notified() => true,
                () = &mut start_wait, if is_waiting => {
                    is_waiting = false;
                    if !replication.is_ready() {
                        replication.set_ready();
                        tracing::warn!(wait = ?START_WAIT, "no peer answered; ready with this replica's own operator state (state file)");
                    }
                    false
                }
            };
            if wake_all {
                for worker in workers.values() {
                    worker.wake.notify_one();
                }
            }
        }
        for worker in workers.values() {
            worker.stop.cancel();
        }
        workers_done.close();
        workers_done.wait().await;
    }

    /// Resolves the configured peers and runs one worker per address.
    async fn reconcile(
        &self,
        resolved: &mut HashMap<PeerAddress, Vec<SocketAddr>>,
        workers: &mut HashMap<SocketAddr, Worker>,
        selves: &Arc<Mutex<HashSet<SocketAddr>>>,
        tracker: &TaskTracker,
        stop: &CancellationToken,
    ) {
        let configured = self.ctx.runtime.snapshot().topology.admin.peers.clone();
        resolved.retain(|entry, _| configured.contains(entry));
        for entry in &configured {
            match lookup(entry).await {
                Ok(addrs) => {
                    resolved.insert(entry.clone(), addrs);
                }
                Err(e) => {
                    tracing::warn!(peer = %entry, "cannot resolve a peer; keeping its last addresses: {e}");
                }
            }
        }
        let known_selves = selves.lock().map(|s| s.clone()).unwrap_or_default();
        let wanted: HashMap<SocketAddr, String> = resolved
            .iter()
            .flat_map(|(entry, addrs)| addrs.iter().map(move |a| (*a, entry.to_string())))
            .filter(|(a, _)| !known_selves.contains(a))
            .collect();
        workers.retain(|addr, worker| {
            let keep = wanted.contains_key(addr) && !worker.stop.is_cancelled();
            if !keep {
                worker.stop.cancel();
            }
            keep
        });
        let replication = &self.ctx.replication;
        replication.forget_peers(|address| {
            address
                .parse::<SocketAddr>()
                .is_ok_and(|a| wanted.contains_key(&a))
        });
        for (addr, entry) in wanted {
            if workers.contains_key(&addr) {
                continue;
            }
            replication.update_peer(&addr.to_string(), |s| s.configured.clone_from(&entry));
            let worker = Worker {
                wake: Arc::new(Notify::new()),
                stop: stop.child_token(),
            };
            worker.wake.notify_one();
            tracker.spawn(exchange_loop(
                Arc::clone(&self.ctx),
                addr,
                Arc::clone(&worker.wake),
                worker.stop.clone(),
                Arc::clone(selves),
            ));
            workers.insert(addr, worker);
        }
    }
}

/// The addresses a configured peer stands for.
async fn lookup(entry: &PeerAddress) -> std::io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = entry.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, entry.port)]);
    }
    let found = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((entry.host.as_str(), entry.port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out"))??;
    let mut addrs: Vec<SocketAddr> = found.collect();
    addrs.sort_unstable();
    addrs.dedup();
    Ok(addrs)
}

/// One peer's worker: an exchange each time it is woken, until `stop`.
async fn exchange_loop(
    ctx: Arc<AdminContext>,
    addr: SocketAddr,
    wake: Arc<Notify>,
    stop: CancellationToken,
    selves: Arc<Mutex<HashSet<SocketAddr>>>,
) {
    let replication = Arc::clone(&ctx.replication);
    let address = addr.to_string();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
        }
        let ours = replication.exchange();
        let answer = client::exchange(addr, ctx.guard.token(), &ours, EXCHANGE_TIMEOUT).await;
        let theirs = match answer {
            Ok(theirs) => theirs,
            Err(e) => {
                tracing::debug!(peer = %address, "exchange failed: {e}");
                replication.update_peer(&address, |s| {
                    s.in_sync = false;
                    s.error = Some(e.to_string());
                });
                continue;
            }
        };
        if theirs.replica == ours.replica {
            if theirs.instance == ours.instance {
                // This process, reached through its own name.
                if let Ok(mut s) = selves.lock() {
                    s.insert(addr);
                }
                replication.forget_peers(|a| a != address);
                stop.cancel();
                return;
            }
            tracing::error!(peer = %address, replica = %theirs.replica, "a peer has this replica's name; set [admin] replica to tell them apart");
            replication.update_peer(&address, |s| {
                s.in_sync = false;
                s.error = Some(format!(
                    "answers as replica {:?}, this replica's name",
                    theirs.replica
                ));
            });
            continue;
        }
        let parts: Result<Vec<_>, _> = theirs.registers.iter().map(|r| r.parts()).collect();
        let parts = match parts {
            Ok(parts) => parts,
            Err(e) => {
                replication.update_peer(&address, |s| {
                    s.in_sync = false;
                    s.error = Some(e.to_string());
                });
                continue;
            }
        };
        let applied = apply::merge_and_apply(&ctx, parts, &address).await;
        let in_sync = theirs.digest == replication.digest();
        replication.update_peer(&address, |s| {
            s.replica = Some(theirs.replica.clone());
            s.last_exchange = Some(now_millis());
            s.in_sync = in_sync;
            s.error = None;
        });
        if !replication.is_ready() {
            replication.set_ready();
            tracing::info!(peer = %address, replica = %theirs.replica, applied, "pulled the operator state from a peer; ready");
        }
    }
}
