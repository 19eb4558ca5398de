//! Counters of the whole process that belong to no frontend or server:
//! access-log lines dropped because stdout was too slow.
//! Invariant: plain atomics; counting never waits.

use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters; shared as `Arc<ProcessCounters>` through the
/// `StateRegistry`, so they outlive every snapshot.
#[derive(Debug, Default)]
pub struct ProcessCounters {
    access_log_dropped: AtomicU64,
}

impl ProcessCounters {
    /// `lines` access-log lines were dropped: the writer's queue was full.
    pub fn count_access_log_dropped(&self, lines: u64) {
        self.access_log_dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// Access-log lines dropped since start.
    pub fn access_log_dropped(&self) -> u64 {
        self.access_log_dropped.load(Ordering::Relaxed)
    }
}
