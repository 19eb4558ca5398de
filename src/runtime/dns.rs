//! Resolution of server host names (docker-compose service names).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

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
