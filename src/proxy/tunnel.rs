//! Upgraded connections (WebSocket and the like): both directions copied
//! until either side closes or the tunnel sits idle for `tunnel`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::state::ServerState;
use crate::upstream::UpgradedConn;

/// Copies bytes both ways once both sides have upgraded. Runs as its own
/// task, tracked by the proxy so shutdown can wait for it or cut it.
pub async fn run(
    client: OnUpgrade,
    server: UpgradedConn,
    idle: Duration,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) {
    let client = match client.await {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    state.counters.tunnel_opened();
    let (client_read, client_write) = tokio::io::split(TokioIo::new(client));
    let (server_read, server_write) = tokio::io::split(server);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let up = pump(
        client_read,
        server_write,
        &last,
        start,
        &state,
        Direction::Up,
    );
    let down = pump(
        server_read,
        client_write,
        &last,
        start,
        &state,
        Direction::Down,
    );
    let both = async { tokio::join!(up, down) };
    tokio::select! {
        _ = both => {}
        () = idle_watch(&last, start, idle) => {
            tracing::debug!(server = %state.server, "tunnel idle timeout");
        }
        () = shutdown.cancelled() => {}
    }
    state.counters.tunnel_closed();
}

#[derive(Clone, Copy)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    last: &AtomicU64,
    start: Instant,
    state: &ServerState,
    direction: Direction,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last.store(elapsed_ms(start), Ordering::Relaxed);
        match direction {
            Direction::Up => state.counters.add_bytes_in(n as u64),
            Direction::Down => state.counters.add_bytes_out(n as u64),
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Resolves once neither direction has moved a byte for `idle`.
async fn idle_watch(last: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let last_ms = last.load(Ordering::Relaxed);
        let deadline = start + Duration::from_millis(last_ms) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
