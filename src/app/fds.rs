//! The open-file budget: raises the soft `RLIMIT_NOFILE` to the hard one at
//! start (as HAProxy does) and derives `max_connections` from it when the
//! config does not set it.
//! Invariant: the derived limit leaves `RESERVE` descriptors for the admin
//! server, health checks, the config watcher and logs, and one upstream
//! connection per client connection.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept out of the client budget.
pub const RESERVE: usize = 64;
/// Far above what one process serves; keeps the semaphore in its range.
const MOST: usize = 1 << 24;

/// `configured`, or half of the open-file limit left after `RESERVE` (each
/// client connection may hold one upstream connection), at least 1.
pub fn max_connections(configured: Option<usize>) -> usize {
    if let Some(n) = configured {
        return n;
    }
    let limit = raise_open_files();
    let derived = derive(limit);
    tracing::info!(
        open_files = limit,
        max_connections = derived,
        "max_connections derived from the open-file limit"
    );
    derived
}

/// The client connection budget for an open-file limit.
fn derive(open_files: usize) -> usize {
    (open_files.saturating_sub(RESERVE) / 2).clamp(1, MOST)
}

/// Raises the soft limit to the hard one; returns the soft limit in force.
fn raise_open_files() -> usize {
    let current = getrlimit(Resource::Nofile);
    let Some(soft) = current.current else {
        return usize::MAX;
    };
    let target = current.maximum;
    if target.is_none_or(|hard| hard > soft) {
        let raised = Rlimit {
            current: target.or(Some(soft)),
            maximum: target,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            if let Some(hard) = target {
                return usize::try_from(hard).unwrap_or(usize::MAX);
            }
        }
    }
    usize::try_from(soft).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_the_reserve_and_a_descriptor_per_upstream() {
        let cases = [
            (0, 1),
            (64, 1),
            (128, 32),
            (1024, 480),
            (1_048_576, 524_256),
        ];
        for (open_files, expected) in cases {
            assert_eq!(derive(open_files), expected, "{open_files}");
        }
    }

    #[test]
    fn a_configured_limit_wins() {
        assert_eq!(max_connections(Some(7)), 7);
    }
}
