//! Listeners: bound per frontend address, reconciled with each snapshot,
//! and the accept loop that hands each connection to hyper.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::client_io::{ClientStream, ConnActivity};
use super::guard::{self, ResetWatch};
use super::service::ConnContext;
use crate::model::FrontendTimeouts;
use crate::runtime::Snapshot;

/// Back-off after an accept error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bound listeners, keyed by the frontend's configured address.
#[derive(Debug)]
pub struct Listeners {
    shared: Arc<Shared>,
    bound: HashMap<SocketAddr, Bound>,
}

#[derive(Debug)]
struct Bound {
    local: SocketAddr,
    stop: CancellationToken,
}

impl Listeners {
    pub fn new(shared: Arc<Shared>) -> Self {
        Listeners {
            shared,
            bound: HashMap::new(),
        }
    }

    /// Binds every frontend address of `snapshot` not yet bound and stops
    /// accepting on addresses no frontend has any more; unchanged addresses
    /// keep their sockets and open connections. Returns (configured address,
    /// bound address) per frontend, or the first address that failed to bind.
    pub async fn reconcile(
        &mut self,
        snapshot: &Snapshot,
    ) -> Result<Vec<(SocketAddr, SocketAddr)>, BindError> {
        let wanted: Vec<SocketAddr> = snapshot.frontends.iter().map(|f| f.listen).collect();
        let mut fresh = Vec::new();
        for &addr in &wanted {
            if !self.bound.contains_key(&addr) {
                let listener = bind(addr)
                    .await
                    .map_err(|source| BindError { addr, source })?;
                fresh.push((addr, listener));
            }
        }
        for (addr, listener) in fresh {
            let local = listener
                .local_addr()
                .map_err(|source| BindError { addr, source })?;
            let stop = CancellationToken::new();
            tokio::spawn(accept_loop(
                listener,
                addr,
                Arc::clone(&self.shared),
                stop.clone(),
            ));
            let frontend = snapshot
                .frontends
                .iter()
                .find(|f| f.listen == addr)
                .map(|f| f.name.clone());
            tracing::info!(frontend = %frontend.as_deref().unwrap_or("-"), listen = %local, "frontend listening");
            self.bound.insert(addr, Bound { local, stop });
        }
        self.bound.retain(|addr, bound| {
            let keep = wanted.contains(addr);
            if !keep {
                bound.stop.cancel();
                tracing::info!(listen = %bound.local, "listener removed; open connections finish");
            }
            keep
        });
        Ok(wanted
            .iter()
            .filter_map(|a| self.bound.get(a).map(|b| (*a, b.local)))
            .collect())
    }

    /// Stops accepting everywhere; open connections are not touched.
    pub fn close(&mut self) {
        for (_, bound) in self.bound.drain() {
            bound.stop.cancel();
        }
    }
}

/// A frontend address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Takes a connection permit, accepts, and hands the connection to its own
/// task. At the connection limit it stops accepting (the kernel backlog
/// holds new clients); accept errors back off and never end the loop.
async fn accept_loop(
    listener: TcpListener,
    listen: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&shared.connection_limit).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => return,
            },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                shared.connections.spawn(serve_connection(
                    stream,
                    peer,
                    listen,
                    Arc::clone(&shared),
                    permit,
                ));
            }
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::error!(listen = %listen, error = %e, "accept failed; backing off");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Serves one client connection until it closes, or finishes its in-flight
/// requests and closes when the proxy drains.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let timeouts = shared
        .runtime
        .snapshot()
        .frontends
        .iter()
        .find(|f| f.listen == listen)
        .map_or(DEFAULT_TIMEOUTS, |f| f.timeouts);
    let builder = server_builder();
    let activity = ConnActivity::new();
    let io = TokioIo::new(ClientStream::new(stream, Arc::clone(&activity), timeouts));
    let ctx = Arc::new(ConnContext {
        activity,
        resets: ResetWatch::default(),
        peer_ip: HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown")),
        shared: Arc::clone(&shared),
        listen,
        peer,
        is_tls: false,
    });
    let calm = ctx.resets.tripped().clone();
    let service = service_fn(move |request| guard::serve(Arc::clone(&ctx), request));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shared.drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = calm.cancelled() => {
            // GOAWAY, then a short wait for what is in flight, then close.
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(guard::PREMATURE, conn.as_mut()).await {
                Ok(result) => result,
                Err(_elapsed) => return,
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
    }
}

const DEFAULT_TIMEOUTS: FrontendTimeouts = FrontendTimeouts {
    client_header: Duration::from_secs(10),
    idle: Duration::from_secs(60),
    body_idle: Duration::from_secs(30),
    write_idle: Duration::from_secs(30),
};

/// Most concurrent streams per HTTP/2 connection (HAProxy's
/// `tune.h2.max-concurrent-streams` is 100 too).
const H2_MAX_STREAMS: u32 = 100;
/// Most bytes of one decoded HTTP/2 header list; h2 answers larger ones with
/// a stream error and a header block far past it with GOAWAY.
const H2_MAX_HEADER_LIST: u32 = 32 * 1024;

/// hyper's settings; the head and idle deadlines are `ClientStream`'s. h2
/// itself sends GOAWAY `ENHANCE_YOUR_CALM` past 20 streams reset before they
/// were accepted, 1024 streams it had to reset for errors, too many
/// CONTINUATION frames, or a header list far past the limit.
fn server_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    builder
}
