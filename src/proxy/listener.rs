//! Listeners: bound per frontend address by the reload writer (through
//! `runtime::ListenerControl`: bind all new addresses, swap, then start or
//! stop accepting), and the accept loop that hands each connection to hyper.
//! Invariant: an address shared by two snapshots keeps its socket and its
//! open connections; a removed address stops accepting and its connections
//! finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
#[cfg(target_os = "linux")]
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::client_io::{ClientStream, ConnActivity, Reactor};
use super::conn_limit::Place;
use super::guard::{self, ResetWatch};
use super::h2_streams::{StreamExec, WithStreams};
use super::service::ConnContext;
use super::signal::Signal;
use super::tls;
use super::{Shared, boxed_in_place};
use crate::model::{FrontendLimits, FrontendName, FrontendTimeouts};
use crate::runtime::{BindError, ListenerControl, Snapshot};
use crate::upstream::Socket;

/// Back-off after an accept error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The bound listeners, keyed by the frontend's configured address. Driven
/// by the reload writer through `ListenerControl`.
#[derive(Debug)]
pub struct Listeners {
    shared: Arc<Shared>,
    bound: HashMap<SocketAddr, Bound>,
    /// Bound by `prepare` (one socket per worker), not accepting until
    /// `commit`.
    pending: Vec<(SocketAddr, Vec<std::net::TcpListener>)>,
    /// Frontend names in snapshot order with their configured address.
    order: Vec<(FrontendName, SocketAddr)>,
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
            pending: Vec::new(),
            order: Vec::new(),
        }
    }
}

impl ListenerControl for Listeners {
    fn prepare(&mut self, next: &Snapshot) -> Result<(), BindError> {
        self.abort();
        for frontend in &next.frontends {
            let addr = frontend.listen;
            if self.bound.contains_key(&addr) || self.pending.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            match bind(addr, self.shared.workers.count()) {
                Ok(sockets) => self.pending.push((addr, sockets)),
                Err(source) => {
                    self.pending.clear();
                    return Err(BindError {
                        frontend: frontend.name.clone(),
                        addr,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self, next: &Arc<Snapshot>) {
        for (addr, sockets) in self.pending.drain(..) {
            let local = sockets
                .first()
                .and_then(|s| s.local_addr().ok())
                .unwrap_or(addr);
            let stop = CancellationToken::new();
            let errors = Arc::new(ErrorLog::default());
            for (socket, worker) in sockets.into_iter().zip(self.shared.workers.handles()) {
                worker.spawn(accept_loop(
                    socket,
                    addr,
                    Arc::clone(&self.shared),
                    Arc::clone(&errors),
                    stop.clone(),
                ));
            }
            let frontend = next.frontends.iter().find(|f| f.listen == addr);
            tracing::info!(
                frontend = %frontend.map_or("-", |f| &*f.name),
                listen = %local,
                "frontend listening"
            );
            self.bound.insert(addr, Bound { local, stop });
        }
        self.bound.retain(|addr, bound| {
            let keep = next.frontends.iter().any(|f| f.listen == *addr);
            if !keep {
                bound.stop.cancel();
                tracing::info!(listen = %bound.local, "listener removed; open connections finish");
            }
            keep
        });
        self.order = next
            .frontends
            .iter()
            .map(|f| (f.name.clone(), f.listen))
            .collect();
    }

    fn abort(&mut self) {
        self.pending.clear();
    }

    fn bound(&self) -> Vec<(FrontendName, SocketAddr)> {
        self.order
            .iter()
            .filter_map(|(name, addr)| self.bound.get(addr).map(|b| (name.clone(), b.local)))
            .collect()
    }

    fn close(&mut self) {
        self.pending.clear();
        for (_, bound) in self.bound.drain() {
            bound.stop.cancel();
        }
    }
}

/// Binds `workers` listening sockets to `addr`: one plain socket, or with
/// several workers one `SO_REUSEPORT` socket each, so that the kernel
/// spreads new connections over the workers (as HAProxy's `bind` does per
/// thread group and nginx's `reuseport`). With port 0 every socket takes
/// the port the first one got.
fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut sockets = Vec::with_capacity(workers);
    let mut at = addr;
    for _ in 0..workers.max(1) {
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        // Linux copies the listening socket's options to each accepted
        // one: `TCP_NODELAY` set here saves a `setsockopt` per connection.
        socket.set_nodelay(true)?;
        #[cfg(target_os = "linux")]
        nix::sys::socket::setsockopt(&socket, DeferAccept, &DEFER_ACCEPT_SECS)?;
        if workers > 1 {
            socket.set_reuseport(true)?;
        }
        socket.bind(at)?;
        // Registered with the worker's runtime when it starts accepting.
        let listener = socket.listen(4096)?.into_std()?;
        // Delayed ACKs from the start (HAProxy's `tcp-smart-accept`): the
        // kernel acknowledges a request with its response instead of with
        // an ACK of its own as it arrives, one segment less per
        // connection. Accepted connections inherit it; `listen` resets it,
        // so it is set after. A request whose body is still to come is
        // acknowledged at once (`ClientStream`), and any other within the
        // kernel's delayed-ACK time (40 ms) if its response takes longer.
        #[cfg(target_os = "linux")]
        socket2::SockRef::from(&listener).set_tcp_quickack(false)?;
        at = listener.local_addr()?;
        sockets.push(listener);
    }
    Ok(sockets)
}

/// How long the kernel holds a new connection that has sent nothing before
/// it hands it over anyway (`TCP_DEFER_ACCEPT`, in seconds; the kernel
/// rounds it up to its SYN-ACK retransmissions: about one second).
#[cfg(target_os = "linux")]
const DEFER_ACCEPT_SECS: i32 = 1;

#[cfg(target_os = "linux")]
sockopt_impl!(
    /// `TCP_DEFER_ACCEPT` on a listening socket: the kernel hands over a
    /// connection (wakes the accept loop) once its first bytes have come,
    /// not at the end of the handshake. Every client of an HTTP or TLS
    /// frontend speaks first, so accepting a connection and reading its
    /// request become one wake-up, and the read finds the request whole
    /// instead of meeting it while the kernel still delivers it. HAProxy's
    /// `defer-accept` and nginx's `deferred`.
    DeferAccept,
    Both,
    libc::IPPROTO_TCP,
    libc::TCP_DEFER_ACCEPT,
    i32
);

/// When an address last logged an accept error: its workers' loops log at
/// most one line a second together.
#[derive(Debug, Default)]
struct ErrorLog {
    last: std::sync::Mutex<Option<Instant>>,
}

impl ErrorLog {
    /// Whether to log an error now; taken on failed accepts only.
    fn due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

/// Runs on one worker: takes a place under the connection cap, accepts,
/// and hands the connection to its own task on the same worker. At the cap
/// it stops accepting (the kernel backlog holds new clients); accept errors
/// back off and never end the loop.
async fn accept_loop(
    socket: std::net::TcpListener,
    listen: SocketAddr,
    shared: Arc<Shared>,
    errors: Arc<ErrorLog>,
    stop: CancellationToken,
) {
    let listener = match Acceptor::new(socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(listen = %listen, error = %e, "cannot accept on a worker");
            return;
        }
    };
    // Polled only when cancelled, not at every accept (`Signal`).
    let stopped = std::pin::pin!(stop.cancelled());
    let mut stopped = Signal::new(stopped);
    loop {
        let place = tokio::select! {
            biased;
            () = &mut stopped => return,
            place = shared.connection_limit.place() => place,
        };
        let accepted = tokio::select! {
            biased;
            () = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Boxed where it is made: the task then holds a pointer,
                // and spawning, finishing and dropping it move 8 bytes, not
                // the connection's whole state (about 2.8 KiB, six copies
                // per connection).
                let conn_shared = Arc::clone(&shared);
                shared.connections.spawn(boxed_in_place(move || {
                    serve_connection(stream, peer, listen, conn_shared, place)
                }));
            }
            Err(e) => {
                if errors.due() {
                    tracing::error!(listen = %listen, error = %e, "accept failed; backing off");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A worker's listening socket in its reactor. tokio's `TcpListener`
/// registers each connection it accepts; this one accepts with `accept4`
/// and leaves the connection out of the reactor until it has to wait
/// (`Socket::accepted`): a connection served at once never costs an
/// `epoll_ctl`. tokio has no safe readiness handle for a raw listening
/// socket, so it is held in a `TcpStream`, used for its readiness only.
struct Acceptor(TcpStream);

impl Acceptor {
    fn new(listener: std::net::TcpListener) -> std::io::Result<Self> {
        let socket = std::net::TcpStream::from(std::os::fd::OwnedFd::from(listener));
        TcpStream::from_std(socket).map(Acceptor)
    }

    /// The next connection, non-blocking and close-on-exec.
    async fn accept(&self) -> std::io::Result<(std::net::TcpStream, SocketAddr)> {
        let listening = &self.0;
        // `async_io` waits for readability again when the accept would
        // block.
        let (socket, peer) = listening
            .async_io(Interest::READABLE, || {
                socket2::SockRef::from(listening).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            })
            .await?;
        let peer = peer
            .as_socket()
            .ok_or_else(|| std::io::Error::other("accepted a connection without an IP peer"))?;
        Ok((socket.into(), peer))
    }
}

/// Serves one client connection until it closes, or finishes its in-flight
/// requests and closes when the proxy drains. A TLS frontend's handshake
/// runs here, under the frontend's `client_header` deadline, with the TLS
/// config of the snapshot current at accept time.
async fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    shared: Arc<Shared>,
    _place: Place,
) {
    // Inherited from the listening socket on Linux (`bind`).
    #[cfg(not(target_os = "linux"))]
    let _ = stream.set_nodelay(true);
    let (timeouts, limits, tls) = {
        let snapshot = shared.runtime.snapshot();
        let frontend = snapshot.frontends.iter().find(|f| f.listen == listen);
        let tls = frontend.and_then(|f| {
            let config = f.tls.clone()?;
            Some((config, Arc::clone(&f.tls_counters)))
        });
        let (timeouts, limits) = frontend
            .map_or((DEFAULT_TIMEOUTS, FrontendLimits::DEFAULT), |f| {
                (f.timeouts, f.limits)
            });
        (timeouts, limits, tls)
    };
    // Created before the handshake: the head deadline runs from the accept.
    let activity = ConnActivity::new(&timeouts);
    let conn = Conn {
        peer,
        listen,
        shared,
        activity,
        limits,
    };
    match tls {
        None => {
            let io = ClientStream::new(Socket::accepted(stream), Arc::clone(&conn.activity));
            conn.serve(io, false).await;
        }
        // Boxed: a plain connection's task is not sized for TLS state.
        Some((config, counters)) => {
            Box::pin(async move {
                let socket = Socket::accepted(stream);
                let Some(stream) =
                    tls::handshake(socket, config, timeouts.client_header, &counters, peer).await
                else {
                    return;
                };
                let io = ClientStream::new(stream, Arc::clone(&conn.activity));
                conn.serve(io, true).await;
            })
            .await;
        }
    }
}

/// One accepted client connection, before hyper serves it.
struct Conn {
    peer: SocketAddr,
    listen: SocketAddr,
    shared: Arc<Shared>,
    activity: Arc<ConnActivity>,
    limits: FrontendLimits,
}

/// An IP address as a header value: formatted on the stack, then one
/// allocation that carries its own count, so the clones into each request's
/// `X-Forwarded-For` allocate nothing. IPv4 is written digit by digit:
/// `Display` through `fmt` costs about a thousand instructions, once per
/// connection.
fn ip_text(ip: std::net::IpAddr) -> HeaderValue {
    /// The longest text of an IPv6 address (with an embedded IPv4 one).
    const MAX: usize = 45;
    struct Text([u8; MAX], usize);
    impl AsRef<[u8]> for Text {
        fn as_ref(&self) -> &[u8] {
            &self.0[..self.1]
        }
    }
    let mut buf = [0u8; MAX];
    let len = match ip {
        std::net::IpAddr::V4(v4) => ipv4_text(v4, &mut buf),
        std::net::IpAddr::V6(_) => {
            let mut rest = &mut buf[..];
            match std::io::Write::write_fmt(&mut rest, format_args!("{ip}")) {
                Ok(()) => MAX - rest.len(),
                Err(_) => return HeaderValue::from_static("unknown"),
            }
        }
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(Text(buf, len)))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// Writes `ip` in dotted decimal at the start of `buf` (which holds the
/// longest, 15 bytes) and returns its length.
fn ipv4_text(ip: std::net::Ipv4Addr, buf: &mut [u8]) -> usize {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

impl Conn {
    /// Serves HTTP/1.1 or h2 (by the first bytes: the h2 preface, after
    /// ALPN `h2` or as h2c with prior knowledge) over `io`.
    async fn serve<S>(self, mut io: ClientStream<S>, is_tls: bool)
    where
        S: AsyncRead + AsyncWrite + Reactor + Unpin + Send + 'static,
    {
        let Conn {
            peer,
            listen,
            shared,
            activity,
            limits,
        } = self;
        let sniffed = tokio::select! {
            sniffed = io.is_http2() => sniffed,
            () = shared.drain.cancelled() => return,
        };
        let is_h2 = match sniffed {
            Ok(is_h2) => is_h2,
            Err(e) => {
                tracing::debug!(client = %peer, error = %e, "client connection ended before a request");
                return;
            }
        };
        let ctx = Arc::new(ConnContext {
            activity,
            resets: match is_h2 {
                true => ResetWatch::for_http2(),
                false => ResetWatch::default(),
            },
            peer_ip: ip_text(peer.ip()),
            shared: Arc::clone(&shared),
            listen,
            peer,
            is_tls,
        });
        let calm = ctx.resets.tripped().cloned();
        let conn_activity = Arc::clone(&ctx.activity);
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            // Started here, as hyper takes the head, not at the future's
            // first poll: hyper flushes the socket before it polls the
            // future, and the watch for the client leaving there must
            // know that a request runs (`ClientStream::poll_client_left`).
            let started = ctx
                .activity
                .request_started(request.version() == http::Version::HTTP_2);
            guard::serve(Arc::clone(&ctx), request, started)
        });
        let io = TokioIo::new(io);
        let result = match is_h2 {
            // Boxed: an HTTP/1 connection's task is not sized for h2 state.
            true => {
                let exec = StreamExec::new(shared.connections.clone());
                let conn = http2_builder(exec.clone()).serve_connection(io, service);
                let conn = WithStreams::new(conn, &exec, http2::Connection::graceful_shutdown);
                Box::pin(drive(
                    conn,
                    WithStreams::graceful_shutdown,
                    &shared,
                    calm,
                    &conn_activity,
                ))
                .await
            }
            false => {
                let conn = http1_builder(&limits, S::IS_WATCHED)
                    .serve_connection(io, service)
                    .with_upgrades();
                drive(
                    conn,
                    http1::UpgradeableConnection::graceful_shutdown,
                    &shared,
                    calm,
                    &conn_activity,
                )
                .await
            }
        };
        if let Some(Err(e)) = result {
            tracing::debug!(client = %peer, error = %e, "client connection ended with an error");
        }
    }
}

/// Why a connection is shut down before its end.
enum Stop {
    Drain,
    Calm,
}

/// Runs a hyper connection to its end; on drain, or when the premature
/// reset ratio trips (`calm`), shuts it down gracefully: GOAWAY or
/// `Connection: close`, then what is in flight finishes. After a trip the
/// socket turns hyper's GOAWAY into `ENHANCE_YOUR_CALM` (`goaway`), and
/// the connection gets `PREMATURE` at most, then closes (`None`). Only
/// HTTP/2 has a `calm` token.
async fn drive<C>(
    conn: C,
    shut_down: fn(Pin<&mut C>),
    shared: &Shared,
    calm: Option<CancellationToken>,
    activity: &ConnActivity,
) -> Option<Result<(), hyper::Error>>
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    // Polled only when one of them fires, not at every wake of the
    // connection (`Signal`).
    let stop = std::pin::pin!(async {
        let Some(calm) = calm else {
            shared.drain.cancelled().await;
            return Stop::Drain;
        };
        tokio::select! {
            () = shared.drain.cancelled() => Stop::Drain,
            () = calm.cancelled() => Stop::Calm,
        }
    });
    let mut stop = Signal::new(stop);
    let result = tokio::select! {
        biased;
        result = conn.as_mut() => result,
        stop = &mut stop => match stop {
            Stop::Drain => {
                shut_down(conn.as_mut());
                conn.await
            }
            Stop::Calm => {
                // GOAWAY ENHANCE_YOUR_CALM, then a short wait, then close.
                activity.ask_calm();
                shut_down(conn.as_mut());
                return tokio::time::timeout(guard::PREMATURE, conn.as_mut()).await.ok();
            }
        },
    };
    Some(result)
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

/// hyper's HTTP/1 settings; the head and idle deadlines are
/// `ClientStream`'s. The head limits cap hyper's read buffer and field
/// count (hyper answers 431 past them); the service checks each limit again
/// exactly. `is_watched`: the socket is watched for the client leaving
/// below hyper (`ClientStream::poll_client_left`), so hyper does not read
/// it while it answers (`half_close`).
fn http1_builder(limits: &FrontendLimits, is_watched: bool) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .half_close(is_watched)
        .max_headers(limits.max_headers as usize)
        // hyper's smallest buffer is 8 KiB.
        .max_buf_size((limits.max_head as usize).max(8192));
    builder
}

/// hyper's HTTP/2 settings. h2 itself sends GOAWAY `ENHANCE_YOUR_CALM` past
/// 20 streams reset before they were accepted, 1024 streams it had to reset
/// for errors, too many CONTINUATION frames, or a header list far past the
/// limit.
/// Each stream runs in the connection's task (`StreamExec`).
fn http2_builder(exec: StreamExec) -> http2::Builder<StreamExec> {
    let mut builder = http2::Builder::new(exec);
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .max_header_list_size(H2_MAX_HEADER_LIST);
    builder
}

#[cfg(test)]
mod tests {
    use super::bind;
    use super::ip_text;
    use std::time::Duration;

    #[test]
    fn ip_text_is_the_address_as_displayed() {
        for octet in 0..=255u8 {
            let ip = std::net::IpAddr::from([octet, 0, 10, octet]);
            assert_eq!(ip_text(ip), ip.to_string().as_str());
        }
        for text in [
            "127.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "100.99.10.9",
            "::1",
            "::ffff:10.0.0.1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: std::net::IpAddr = text.parse().expect("an address");
            assert_eq!(ip_text(ip), ip.to_string().as_str());
        }
    }

    /// Several workers get one `SO_REUSEPORT` socket each on the same port
    /// (port 0 included), and the kernel spreads connections over them.
    #[tokio::test]
    async fn each_worker_gets_a_socket_on_the_same_port_and_a_share_of_connections() {
        let addr = "127.0.0.1:0".parse().expect("an address");
        let sockets = bind(addr, 3).expect("binds");
        assert_eq!(sockets.len(), 3);
        let port = sockets[0].local_addr().expect("bound").port();
        assert_ne!(port, 0);
        for socket in &sockets {
            assert_eq!(socket.local_addr().expect("bound").port(), port);
        }
        let clients: Vec<_> = (0..30).map(|_| speaking_client(port)).collect();
        // Clients that spoke sit in the accept queue of the socket the
        // kernel chose; the sockets are non-blocking, so drain each.
        let per_socket: Vec<usize> = sockets
            .iter()
            .map(|s| std::iter::from_fn(|| s.accept().ok()).count())
            .collect();
        assert_eq!(per_socket.iter().sum::<usize>(), clients.len());
        assert!(
            per_socket.iter().filter(|&&n| n > 0).count() > 1,
            "connections spread over the sockets: {per_socket:?}"
        );
    }

    /// Accepted sockets send small writes at once: they inherit
    /// `TCP_NODELAY` from the listening socket, which `serve_connection`
    /// relies on instead of setting it per connection.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let addr = "127.0.0.1:0".parse().expect("an address");
        for workers in [1, 2] {
            let sockets = bind(addr, workers).expect("binds");
            let port = sockets[0].local_addr().expect("bound").port();
            let _client = speaking_client(port);
            // The connection sits in the accept queue of the socket the
            // kernel chose (the sockets are non-blocking).
            let (accepted, _) = sockets
                .iter()
                .find_map(|s| s.accept().ok())
                .expect("one socket holds the connection");
            assert!(accepted.nodelay().expect("reads TCP_NODELAY"));
        }
    }

    /// A client connected to `port` that has sent its first byte: a
    /// listening socket hands over a connection only then
    /// (`TCP_DEFER_ACCEPT`), and writes on loopback arrive before `write`
    /// returns.
    fn speaking_client(port: u16) -> std::net::TcpStream {
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
        std::io::Write::write_all(&mut client, b"G").expect("writes");
        client
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_connection_is_handed_over_once_its_client_has_spoken() {
        let addr = "127.0.0.1:0".parse().expect("an address");
        let socket = bind(addr, 1).expect("binds").remove(0);
        let set = nix::sys::socket::getsockopt(&socket, super::DeferAccept).expect("reads");
        assert!(set > 0, "TCP_DEFER_ACCEPT is set: {set}");
        let listener = tokio::net::TcpListener::from_std(socket).expect("registers");
        let port = listener.local_addr().expect("bound").port();
        let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("the handshake completes");
        // Within the kernel's deferral (about a second) a client that has
        // sent nothing is not handed over.
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(early.is_err(), "handed over before it spoke");
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET")
            .await
            .expect("writes");
        let (mut accepted, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("handed over once it spoke")
            .expect("accepts");
        let mut first = [0u8; 3];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut first)
            .await
            .expect("reads");
        assert_eq!(&first, b"GET");
    }

    /// Accepts the connection waiting on a socket `bind` made (its client
    /// has connected and spoken): the connection, non-blocking, and a
    /// reader of its `TCP_QUICKACK` through a second handle on the socket.
    #[cfg(target_os = "linux")]
    fn accept_one(
        listening: &std::net::TcpListener,
    ) -> (std::net::TcpStream, impl Fn() -> bool + use<>) {
        let (accepted, _) = listening.accept().expect("the client has spoken");
        accepted.set_nonblocking(true).expect("non-blocking");
        let probe = accepted.try_clone().expect("a second handle");
        let is_quick = move || {
            socket2::SockRef::from(&probe)
                .tcp_quickack()
                .expect("reads TCP_QUICKACK")
        };
        (accepted, is_quick)
    }

    /// The listening sockets delay the kernel's ACK of a request, so the
    /// response carries it (HAProxy's `tcp-smart-accept`), and accepted
    /// connections start so.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn requests_are_acknowledged_by_their_responses() {
        let addr = "127.0.0.1:0".parse().expect("an address");
        let socket = bind(addr, 1).expect("binds").remove(0);
        let quick = socket2::SockRef::from(&socket).tcp_quickack();
        assert!(!quick.expect("reads"), "the listening socket delays ACKs");
        let port = socket.local_addr().expect("bound").port();
        // The kernel leaves the delayed-ACK mode when its timer fires (40
        // ms after a request came unanswered): on a busy machine one
        // attempt may come too late, so one of five must see the mode.
        let inherited = (0..5).any(|_| {
            let _client = speaking_client(port);
            let (_accepted, is_quick) = accept_one(&socket);
            !is_quick()
        });
        assert!(inherited, "accepted connections start with delayed ACKs");
    }

    /// A request whose body has not all come is acknowledged at once (the
    /// client may wait for that ACK to send the rest); a request that came
    /// whole is not, so its response carries the ACK.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_request_whose_body_is_still_to_come_is_acknowledged_at_once() {
        use super::{ClientStream, ConnActivity, DEFAULT_TIMEOUTS, Socket};
        use tokio::io::AsyncReadExt;
        let addr = "127.0.0.1:0".parse().expect("an address");
        let socket = bind(addr, 1).expect("binds").remove(0);
        let port = socket.local_addr().expect("bound").port();
        let heads: [(&[u8], bool); 3] = [
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nab",
                false,
            ),
        ];
        for (head, is_acked) in heads {
            let mut seen = false;
            // As above, an attempt whose connection has already left the
            // delayed-ACK mode when it is read proves nothing: another.
            for _ in 0..5 {
                let mut client =
                    std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
                std::io::Write::write_all(&mut client, head).expect("writes");
                let (accepted, is_quick) = accept_one(&socket);
                if is_quick() {
                    continue;
                }
                let activity = ConnActivity::new(&DEFAULT_TIMEOUTS);
                let mut stream = ClientStream::new(Socket::accepted(accepted), activity);
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).await.expect("reads");
                assert_eq!(&buf[..n], head);
                seen = is_quick() == is_acked;
                if seen {
                    break;
                }
            }
            let text = String::from_utf8_lossy(head);
            assert!(seen, "acknowledged at once: {is_acked}, for {text:?}");
        }
    }

    #[tokio::test]
    async fn one_worker_binds_one_plain_socket_and_a_taken_port_is_an_error() {
        let addr = "127.0.0.1:0".parse().expect("an address");
        let sockets = bind(addr, 1).expect("binds");
        assert_eq!(sockets.len(), 1);
        let taken = sockets[0].local_addr().expect("bound");
        let error = bind(taken, 1).expect_err("the port is taken");
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        // Without SO_REUSEPORT on the first socket, several workers cannot
        // join it either.
        let error = bind(taken, 2).expect_err("the port is taken");
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }
}
