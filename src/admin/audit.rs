//! The audit trail of operator changes: each one is logged (who, from where,
//! on which replica, what, old -> new) and kept in a ring of the last
//! `RECENT` for the page and `/api/stats`. A change a peer replica sent is
//! logged here too, naming the replica where it was made.
//! Invariant: every state change made through the admin server goes
//! through `Changes::record`, so the log and the ring never disagree.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use super::auth::Caller;
use crate::state::now_millis;

/// How many changes the ring keeps.
pub const RECENT: usize = 50;

/// One operator change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Unix ms.
    pub at: u64,
    /// The basic-auth user, `token`, or `switchyard` for automatic follow-ups.
    pub who: String,
    /// The caller's IP address.
    pub from: String,
    /// The replica where the change was made.
    pub replica: String,
    /// Whether it came from that replica as a peer (else it was made here).
    pub from_peer: bool,
    /// What changed, like `server app/legacy state`.
    pub what: String,
    pub old: String,
    pub new: String,
}

/// The ring of recent changes. Its mutex is taken per admin change and per
/// page render, never on the request path.
#[derive(Debug, Default)]
pub struct Changes {
    /// This replica's name.
    replica: String,
    ring: Mutex<VecDeque<Change>>,
}

impl Changes {
    /// An empty trail of the changes on replica `replica`.
    pub fn new(replica: String) -> Changes {
        Changes {
            replica,
            ring: Mutex::default(),
        }
    }

    /// Logs a change made on this replica and keeps it.
    pub fn record(&self, caller: &Caller, what: String, old: String, new: String) {
        tracing::info!(
            who = %caller.who,
            from = %caller.from,
            replica = %self.replica,
            what = %what,
            old = %old,
            new = %new,
            "admin change"
        );
        self.keep(Change {
            at: now_millis(),
            who: caller.who.clone(),
            from: caller.from.to_string(),
            replica: self.replica.clone(),
            from_peer: false,
            what,
            old,
            new,
        });
    }

    /// Logs a change that peer `peer` (an address) sent, made on replica
    /// `replica` (by a caller there), and keeps it.
    pub fn record_from_peer(
        &self,
        replica: &str,
        peer: &str,
        what: String,
        old: String,
        new: String,
    ) {
        tracing::info!(
            replica = %replica,
            peer = %peer,
            what = %what,
            old = %old,
            new = %new,
            "admin change from a peer"
        );
        self.keep(Change {
            at: now_millis(),
            who: "peer".to_owned(),
            from: peer.to_owned(),
            replica: replica.to_owned(),
            from_peer: true,
            what,
            old,
            new,
        });
    }

    fn keep(&self, change: Change) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RECENT {
            ring.pop_back();
        }
        ring.push_front(change);
    }

    /// The recent changes, newest first.
    pub fn list(&self) -> Vec<Change> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_changes_first() {
        let changes = Changes::new("r1".to_owned());
        let caller = Caller {
            who: "ops".to_owned(),
            from: [127, 0, 0, 1].into(),
        };
        for i in 0..RECENT + 5 {
            changes.record(&caller, format!("change {i}"), "a".into(), "b".into());
        }
        let list = changes.list();
        assert_eq!(list.len(), RECENT);
        assert_eq!(list[0].what, format!("change {}", RECENT + 4));
        assert_eq!(list[RECENT - 1].what, "change 5");
        assert_eq!((list[0].replica.as_str(), list[0].from_peer), ("r1", false));
        changes.record_from_peer("r2", "10.0.0.3:8001", "x".into(), "a".into(), "b".into());
        let list = changes.list();
        assert_eq!((list[0].replica.as_str(), list[0].from_peer), ("r2", true));
        assert_eq!(list[0].from, "10.0.0.3:8001");
    }
}
