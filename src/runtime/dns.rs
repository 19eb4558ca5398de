//! Resolution of server host names (docker-compose service names), and
//! the last good address of each, held for `HOLD_VALID` when a name stops
//! resolving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::model::ServerAddress;

/// Most time one name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves every name at once; a name that fails maps to `None` (the server
/// is then DOWN with reason `dns`), never an error.
pub async fn resolve_all(names: &[ServerAddress]) -> HashMap<ServerAddress, Option<SocketAddr>> {
    let mut set = tokio::task::JoinSet::new();
    for name in names {
        let name = name.clone();
        set.spawn(async move {
            let lookup = tokio::net::lookup_host((&*name.host, name.port));
            let addr = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(mut addrs)) => addrs.next(),
                Ok(Err(e)) => {
                    tracing::warn!(host = %name.host, error = %e, "server name does not resolve");
                    None
                }
                Err(_) => {
                    tracing::warn!(host = %name.host, "server name resolution timed out");
                    None
                }
            };
            (name, addr)
        });
    }
    let mut resolved = HashMap::with_capacity(names.len());
    while let Some(joined) = set.join_next().await {
        if let Ok((name, addr)) = joined {
            resolved.insert(name, addr);
        }
    }
    resolved
}

/// How long a name that stops resolving keeps its last good address
/// (HAProxy's `hold valid`); after that its server is DOWN (reason `dns`).
pub const HOLD_VALID: Duration = Duration::from_secs(5 * 60);

/// The last good address of every name, so that a failed lookup does not
/// take a server out at once.
#[derive(Debug, Default)]
pub struct LastGood {
    seen: HashMap<ServerAddress, (SocketAddr, Instant)>,
}

impl LastGood {
    /// `fresh` with each failed name given its last good address if that is
    /// younger than `hold`; remembers the names that resolved and forgets
    /// names that are no longer asked for.
    pub fn apply(
        &mut self,
        mut fresh: HashMap<ServerAddress, Option<SocketAddr>>,
        now: Instant,
        hold: Duration,
    ) -> HashMap<ServerAddress, Option<SocketAddr>> {
        self.seen.retain(|name, _| fresh.contains_key(name));
        for (name, addr) in &mut fresh {
            match addr {
                Some(a) => {
                    self.seen.insert(name.clone(), (*a, now));
                }
                None => {
                    if let Some(&(held, at)) = self.seen.get(name) {
                        if now.saturating_duration_since(at) < hold {
                            tracing::warn!(host = %name.host, address = %held, "keeping the last good address of a name that does not resolve");
                            *addr = Some(held);
                        }
                    }
                }
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_name_keeps_its_last_good_address_for_hold_valid() {
        let name = ServerAddress {
            host: "users".into(),
            port: 8080,
        };
        let good: SocketAddr = "10.0.0.7:8080".parse().unwrap_or_else(|_| unreachable!());
        let t0 = Instant::now();
        let hold = Duration::from_secs(300);
        let mut last = LastGood::default();
        let once = |addr| HashMap::from([(name.clone(), addr)]);
        let check = |last: &mut LastGood, fresh, at: Duration, expected| {
            assert_eq!(
                last.apply(once(fresh), t0 + at, hold)[&name],
                expected,
                "at {at:?}"
            );
        };
        check(&mut last, None, Duration::ZERO, None);
        check(&mut last, Some(good), Duration::from_secs(1), Some(good));
        check(&mut last, None, Duration::from_secs(60), Some(good));
        check(&mut last, None, Duration::from_secs(300), Some(good));
        check(&mut last, None, Duration::from_secs(301), None);
        check(&mut last, Some(good), Duration::from_secs(400), Some(good));
        // A name no longer asked for is forgotten.
        assert!(last.apply(HashMap::new(), t0, hold).is_empty());
        check(&mut last, None, Duration::from_secs(401), None);
    }
}
