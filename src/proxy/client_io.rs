//! The client connection's socket with its two read deadlines: a request
//! head must arrive within `client_header` of its first byte (or of the
//! accept), and a keep-alive connection may sit idle between requests for
//! `idle`. hyper's own header timer cannot tell the two apart, so the proxy
//! keeps them here, where every read passes. Every write passes here too:
//! a write may wait at most `write_idle` for the client to read. The limits
//! come from the snapshot at accept and then from the snapshot serving each
//! request (`ConnActivity::follow_timeouts`), so a reload reaches open
//! connections.
//!
//! The same place feeds every HTTP/1 byte read to `head_scan::HeadScan`,
//! whose verdict on each request head (both `Content-Length` and
//! `Transfer-Encoding`?) waits in `ConnActivity` for that request. It also
//! tells HTTP/1 from HTTP/2 by the first bytes (`ClientStream::is_http2`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::goaway::{Calm, OutFrames};
use super::head_scan::{HeadScan, HeadVerdicts};
use crate::model::FrontendTimeouts;
use crate::upstream::Socket;

const PHASE_HEAD: u8 = 0;
const PHASE_BUSY: u8 = 1;
const PHASE_IDLE: u8 = 2;
/// Upgraded to a tunnel: the tunnel's own idle timeout applies.
const PHASE_TUNNEL: u8 = 3;

/// What a client connection is doing, shared by its socket and its requests.
#[derive(Debug)]
pub struct ConnActivity {
    start: Instant,
    active: AtomicU32,
    phase: AtomicU8,
    /// Milliseconds after `start` when the current phase began.
    since_ms: AtomicU64,
    is_h2: AtomicBool,
    /// The premature-reset ratio tripped: the socket ends an HTTP/2
    /// connection with GOAWAY `ENHANCE_YOUR_CALM`.
    is_calm_asked: AtomicBool,
    /// The scanner's verdicts on heads not yet taken by their requests.
    verdicts: HeadVerdicts,
    /// The frontend's limits in the snapshot of the latest request, in ms.
    client_header_ms: AtomicU64,
    idle_ms: AtomicU64,
    write_idle_ms: AtomicU64,
}

impl ConnActivity {
    /// A new connection with the limits of the snapshot at accept.
    pub fn new(timeouts: &FrontendTimeouts) -> Arc<Self> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            active: AtomicU32::new(0),
            phase: AtomicU8::new(PHASE_HEAD),
            since_ms: AtomicU64::new(0),
            is_h2: AtomicBool::new(false),
            is_calm_asked: AtomicBool::new(false),
            verdicts: HeadVerdicts::default(),
            client_header_ms: AtomicU64::new(millis(timeouts.client_header)),
            idle_ms: AtomicU64::new(millis(timeouts.idle)),
            write_idle_ms: AtomicU64::new(millis(timeouts.write_idle)),
        })
    }

    /// Takes the limits of the snapshot serving the current request: the
    /// next idle, head and write deadlines follow a reload. Three relaxed
    /// stores.
    pub fn follow_timeouts(&self, timeouts: &FrontendTimeouts) {
        self.client_header_ms
            .store(millis(timeouts.client_header), Ordering::Relaxed);
        self.idle_ms.store(millis(timeouts.idle), Ordering::Relaxed);
        self.write_idle_ms
            .store(millis(timeouts.write_idle), Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms.load(Ordering::Relaxed))
    }

    fn write_idle(&self) -> Duration {
        Duration::from_millis(self.write_idle_ms.load(Ordering::Relaxed))
    }

    /// Ends an HTTP/2 connection with GOAWAY `ENHANCE_YOUR_CALM` at the
    /// next frame boundary of what the server writes.
    pub fn ask_calm(&self) {
        self.is_calm_asked.store(true, Ordering::Relaxed);
    }

    /// A request head arrived; the guard ends the request when dropped.
    pub fn request_started(self: &Arc<Self>, is_h2: bool) -> RequestGuard {
        if is_h2 {
            self.is_h2.store(true, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
        self.phase.store(PHASE_BUSY, Ordering::Relaxed);
        RequestGuard {
            activity: Arc::clone(self),
        }
    }

    /// Whether the HTTP/1 request whose head was read first of those not
    /// yet asked about carried both `Content-Length` and
    /// `Transfer-Encoding` (or could not be followed); call once per request.
    pub fn take_ambiguous_framing(&self) -> bool {
        !self.is_h2.load(Ordering::Relaxed) && self.verdicts.take()
    }

    /// The connection became a tunnel (WebSocket): no more request deadlines.
    pub fn upgraded(&self) {
        self.phase.store(PHASE_TUNNEL, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: on an idle HTTP/1 connection they begin a request head.
    fn on_bytes(&self) {
        if self.phase.load(Ordering::Relaxed) == PHASE_IDLE && !self.is_h2.load(Ordering::Relaxed) {
            self.since_ms.store(self.now_ms(), Ordering::Relaxed);
            self.phase.store(PHASE_HEAD, Ordering::Relaxed);
        }
    }

    /// An HTTP/1 request is being served.
    fn is_serving_http1(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == PHASE_BUSY && !self.is_h2.load(Ordering::Relaxed)
    }

    /// When reading must have produced a request by.
    fn deadline(&self) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Relaxed) {
            PHASE_HEAD => Duration::from_millis(self.client_header_ms.load(Ordering::Relaxed)),
            PHASE_IDLE => self.idle(),
            _ => return None,
        };
        let since = Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        Some(self.start + since + limit)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One request in progress on a connection.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<ConnActivity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        if a.active.fetch_sub(1, Ordering::Relaxed) == 1
            && a.phase.load(Ordering::Relaxed) != PHASE_TUNNEL
        {
            a.since_ms.store(a.now_ms(), Ordering::Relaxed);
            a.phase.store(PHASE_IDLE, Ordering::Relaxed);
        }
    }
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The client socket, failing a read with `TimedOut` once the connection's
/// deadline passes.
#[derive(Debug)]
pub struct ClientStream<S> {
    /// The first bytes, read to tell HTTP/1 from HTTP/2 and handed out
    /// again by the first reads (`sniffed[at..]`); emptied (and freed)
    /// once handed out.
    sniffed: Vec<u8>,
    sniffed_at: usize,
    inner: S,
    activity: Arc<ConnActivity>,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    scan: HeadScan,
    /// Made on the first write that has to wait; fails the connection when
    /// the client reads nothing for `write_idle` (slow read).
    write_timer: Option<Pin<Box<Sleep>>>,
    is_write_waiting: bool,
    /// On HTTP/2: where the frames written so far end.
    out_frames: Option<OutFrames>,
    /// The GOAWAY `ENHANCE_YOUR_CALM` being written, once asked for.
    calm: Option<Calm>,
    /// The watch of the current request (`poll_client_left`); emptied when
    /// a head is read, so each request starts its own.
    watch: Option<Watch>,
}

/// One request's watch for the client leaving.
#[derive(Debug, Clone, Copy, Default)]
struct Watch {
    /// On a socket not yet in the reactor: when the watch starts.
    from: Option<Instant>,
    /// Bytes of a next request came: nothing more to watch for this one.
    is_over: bool,
}

/// How long the proxy lets a request that came whole run before it
/// watches an accepted socket, not yet in the reactor, for the client
/// leaving (`ClientStream::poll_client_left`). The workers' timer anchor: a
/// timer due this far ahead never wakes the worker's thread early
/// (`workers::anchor_timers`), where a shorter one would cost an eventfd
/// write per request.
pub const WATCH_AFTER: Duration = super::workers::TIMER_ANCHOR;

/// A client socket, as the proxy watches it for the client leaving.
pub trait Reactor {
    /// Whether the proxy watches the socket for the client leaving itself
    /// (`ClientStream::poll_client_left`), so hyper does not read it while
    /// it answers an HTTP/1 request (hyper's `half_close`).
    const IS_WATCHED: bool = false;

    /// Whether the socket has not waited for anything yet, and so is not
    /// in the reactor's epoll set.
    fn is_unregistered(&self) -> bool {
        false
    }

    /// Waits, reading nothing, until the client sends more bytes
    /// (`Ready(false)`) or closes or resets the connection (`Ready(true)`);
    /// called only when `IS_WATCHED`.
    fn poll_peer_closed(&mut self, _cx: &mut Context<'_>) -> Poll<bool> {
        Poll::Pending
    }

    /// Acknowledges what the client sent at once, and what it sends next
    /// until the kernel delays acknowledgements again
    /// (`Socket::acknowledge_now`).
    fn acknowledge_now(&self) {}
}

impl Reactor for Socket {
    const IS_WATCHED: bool = true;

    fn is_unregistered(&self) -> bool {
        Socket::is_unregistered(self)
    }

    fn poll_peer_closed(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        Socket::poll_peer_closed(self, cx)
    }

    fn acknowledge_now(&self) {
        Socket::acknowledge_now(self);
    }
}

/// Watched by hyper's own read: a client that leaves may first send TLS's
/// closing alert, bytes that only a read through TLS tells from a request.
impl Reactor for tokio_rustls::server::TlsStream<Socket> {
    fn acknowledge_now(&self) {
        self.get_ref().0.acknowledge_now();
    }
}

#[cfg(test)]
impl Reactor for tokio::io::DuplexStream {}

impl<S> ClientStream<S> {
    pub fn new(inner: S, activity: Arc<ConnActivity>) -> Self {
        let first = activity.deadline().unwrap_or_else(Instant::now);
        ClientStream {
            sniffed: Vec::new(),
            sniffed_at: 0,
            inner,
            activity,
            timer: Box::pin(tokio::time::sleep_until(first.into())),
            armed: None,
            scan: HeadScan::default(),
            write_timer: None,
            is_write_waiting: false,
            out_frames: None,
            calm: None,
            watch: None,
        }
    }
}

impl<S: AsyncRead + Unpin> ClientStream<S> {
    /// Reads the first bytes, under the head deadline, until they tell the
    /// protocol: `true` when they are the HTTP/2 preface (prior knowledge,
    /// or after ALPN `h2`), `false` at the first byte that differs from it
    /// (or at the end of the stream). The bytes read are kept for hyper.
    /// Telling the protocol here, below hyper, lets the first read hand
    /// hyper the whole head: read in two parts, hyper's buffer would double
    /// to 16 KiB and stay so for the connection's life.
    pub async fn is_http2(&mut self) -> io::Result<bool> {
        let is_h2 = std::future::poll_fn(|cx| self.poll_sniff(cx)).await?;
        if is_h2 {
            self.activity.is_h2.store(true, Ordering::Relaxed);
            self.out_frames = Some(OutFrames::default());
        }
        Ok(is_h2)
    }

    /// Each read takes all the socket has, up to `SNIFF_READ`, into the
    /// worker's scratch buffer, and keeps what came in a buffer of its size:
    /// a head that arrived whole costs one read, where reading just the 24
    /// bytes that tell the protocol would cost a second one for the rest.
    fn poll_sniff(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let have = self.sniffed.len().min(PREFACE.len());
            if self.sniffed[..have] != PREFACE[..have] {
                return Poll::Ready(Ok(false));
            }
            if have == PREFACE.len() {
                return Poll::Ready(Ok(true));
            }
            let read = SCRATCH.with_borrow_mut(|scratch| {
                let mut buf = ReadBuf::new(&mut scratch[..]);
                let polled = Pin::new(&mut self.inner).poll_read(cx, &mut buf);
                self.sniffed.extend_from_slice(buf.filled());
                polled.map_ok(|()| buf.filled().len())
            });
            match read {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match self.poll_deadline(cx) {
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) | Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    /// Hands out sniffed bytes not yet read; `false` when there are none.
    /// No read from the socket follows in the same call: the sniffing read
    /// took all it had.
    fn poll_sniffed(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let pending = &self.sniffed[self.sniffed_at..];
        if pending.is_empty() {
            return false;
        }
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        self.sniffed_at += n;
        if self.sniffed_at == self.sniffed.len() {
            self.sniffed = Vec::new();
            self.sniffed_at = 0;
        }
        true
    }
}

/// Most bytes the sniffing read takes: hyper's first read buffer.
const SNIFF_READ: usize = 8192;

thread_local! {
    /// Where sniffing reads land before they are kept at their size; one
    /// per worker thread, used only inside one synchronous read.
    static SCRATCH: std::cell::RefCell<[u8; SNIFF_READ]> =
        const { std::cell::RefCell::new([0; SNIFF_READ]) };
}

impl<S: Reactor> ClientStream<S> {
    /// Whether the client has left while its HTTP/1 request, read whole, is
    /// answered; an end of the stream counts as leaving, as it does for
    /// hyper. hyper does not read the socket then (`half_close`): its read,
    /// which would see the end of the stream, first takes a new 8 KiB
    /// buffer, since the head just read still holds the old one. This
    /// watch reads nothing. It runs where hyper flushes, which hyper does
    /// on every poll of the connection, so the wake-up of a socket that
    /// turns readable reaches it.
    ///
    /// On a socket not yet in the reactor the watch starts `WATCH_AFTER`
    /// into the request: waiting for the socket would add it to the epoll
    /// set, an `epoll_ctl` now and another at close, for a request that is
    /// mostly answered well before. Bytes of a next request end the watch
    /// for this one: hyper reads them once it has answered. The request's
    /// verdict is taken before its first flush (`routing::route` runs at
    /// the future's first poll), so a verdict still waiting is a later
    /// head's.
    fn poll_client_left(&mut self, cx: &mut Context<'_>) -> bool {
        // A next head already read (pipelined) is served after this
        // request whatever the socket says next, as hyper's read did not
        // watch while its buffer held bytes.
        if !S::IS_WATCHED
            || !self.activity.is_serving_http1()
            || !self.scan.is_between_messages()
            || !self.activity.verdicts.is_empty()
        {
            return false;
        }
        let watch = self.watch.get_or_insert_default();
        if watch.is_over {
            return false;
        }
        if self.inner.is_unregistered() {
            let from = *watch
                .from
                .get_or_insert_with(|| Instant::now() + WATCH_AFTER);
            if self.armed != Some(from) {
                self.timer.as_mut().reset(from.into());
                self.armed = Some(from);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.armed = None;
        }
        match self.inner.poll_peer_closed(cx) {
            Poll::Ready(true) => true,
            Poll::Ready(false) => {
                watch.is_over = true;
                false
            }
            Poll::Pending => false,
        }
    }
}

impl<S: AsyncRead + Reactor + Unpin> AsyncRead for ClientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match this.poll_sniffed(buf) {
            true => Poll::Ready(Ok(())),
            false => Pin::new(&mut this.inner).poll_read(cx, buf),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.on_bytes();
                    let a = &this.activity;
                    // Bodies too: the scanner skips them by their framing,
                    // and a pipelined head may follow one in any read.
                    if a.phase.load(Ordering::Relaxed) != PHASE_TUNNEL
                        && !a.is_h2.load(Ordering::Relaxed)
                    {
                        let watch = &mut this.watch;
                        let mut is_head_read = false;
                        this.scan.feed(&buf.filled()[before..], |v| {
                            *watch = None;
                            is_head_read = true;
                            a.verdicts.push(v);
                        });
                        // The listening socket delays the kernel's ACK of a
                        // request so that its response carries it
                        // (`listener::bind`). A client whose body is still
                        // to come may wait for that ACK before sending it
                        // (Nagle's algorithm), so it gets one now, as
                        // HAProxy re-enables quick ACKs for a request not
                        // yet whole.
                        if is_head_read && this.scan.is_in_body() {
                            this.inner.acknowledge_now();
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl<S> ClientStream<S> {
    /// Called when a read would block: fails once the deadline has passed,
    /// else makes sure the timer wakes this reader by then. While a request
    /// runs there is no deadline, but the timer still wakes the reader every
    /// `idle`, so a connection that turns idle meanwhile gets its deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline = self.activity.deadline();
            let idle = self.activity.idle();
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client sent no complete request in time",
                )));
            }
            let wake_at = match (deadline, self.armed) {
                (Some(d), _) => d,
                (None, Some(armed)) if armed > now && armed <= now + idle => armed,
                (None, _) => now + idle,
            };
            if self.armed != Some(wake_at) {
                self.timer.as_mut().reset(wake_at.into());
                self.armed = Some(wake_at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired: look again at what the connection is doing.
            self.armed = None;
        }
    }
}

impl<S: AsyncWrite + Unpin> ClientStream<S> {
    /// Once the connection was asked to calm down and the server's frames
    /// are at a boundary: the GOAWAY `ENHANCE_YOUR_CALM` goes out instead
    /// of anything more the server writes (`goaway::Calm`).
    fn poll_calm(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        if self.calm.is_none() {
            let frames = self.out_frames.as_ref()?;
            if !self.activity.is_calm_asked.load(Ordering::Relaxed) || !frames.is_at_boundary() {
                return None;
            }
            self.calm = Some(Calm::new(frames));
        }
        let calm = self.calm.as_mut()?;
        Some(calm.poll_write(&mut self.inner, cx))
    }
}

impl<S> ClientStream<S> {
    /// Watches one write: a write that makes progress stops the clock; one
    /// that has to wait starts it, and fails with `TimedOut` once the client
    /// has read nothing for `write_idle`. hyper then drops the connection and
    /// with it the response body, which releases the upstream connection.
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.is_write_waiting = false;
            return polled;
        }
        if !self.is_write_waiting {
            let deadline = tokio::time::Instant::now() + self.activity.write_idle();
            match self.write_timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.write_timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.is_write_waiting = true;
        }
        let is_expired = self
            .write_timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if is_expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client read nothing in time",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncWrite + Reactor + Unpin> AsyncWrite for ClientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(calm) = this.poll_calm(cx) {
            return calm;
        }
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&polled, this.out_frames.as_mut()) {
            frames.advance(&buf[..*n]);
        }
        this.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(calm) = this.poll_calm(cx) {
            return calm;
        }
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(frames)) = (&polled, this.out_frames.as_mut()) {
            frames.advance_vectored(bufs, *n);
        }
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Also where the client is watched for leaving
    /// (`poll_client_left`); its leaving fails the flush, and hyper then
    /// drops the connection with the request, which aborts the upstream
    /// request.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        let polled = this.watch_write(cx, polled);
        if matches!(polled, Poll::Ready(Ok(()))) && this.poll_client_left(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client left before its answer",
            )));
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: FrontendTimeouts = FrontendTimeouts {
        client_header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body_idle: Duration::from_secs(30),
        write_idle: Duration::from_secs(30),
    };

    fn limit(a: &ConnActivity) -> Option<Duration> {
        a.deadline().map(|d| d.duration_since(a.start))
    }

    #[test]
    fn phases_choose_the_deadline() {
        let a = ConnActivity::new(&TIMEOUTS);
        assert_eq!(
            limit(&a),
            Some(Duration::from_secs(10)),
            "a new connection owes a head"
        );
        let guard = a.request_started(false);
        assert_eq!(limit(&a), None, "no read deadline while a request runs");
        let second = a.request_started(false);
        drop(guard);
        assert_eq!(limit(&a), None, "still one request running");
        drop(second);
        let idle = limit(&a).expect("idle deadline");
        assert!(idle >= Duration::from_secs(60) && idle < Duration::from_secs(61));
        a.on_bytes();
        let head = limit(&a).expect("head deadline");
        assert!(head >= Duration::from_secs(10) && head < Duration::from_secs(11));
    }

    #[test]
    fn the_latest_requests_snapshot_sets_the_next_deadlines() {
        let a = ConnActivity::new(&TIMEOUTS);
        let guard = a.request_started(false);
        a.follow_timeouts(&FrontendTimeouts {
            client_header: Duration::from_secs(2),
            idle: Duration::from_secs(5),
            body_idle: Duration::from_secs(3),
            write_idle: Duration::from_secs(4),
        });
        assert_eq!(a.write_idle(), Duration::from_secs(4));
        drop(guard);
        let idle = limit(&a).expect("idle deadline");
        assert!(idle >= Duration::from_secs(5) && idle < Duration::from_secs(6));
        a.on_bytes();
        let head = limit(&a).expect("head deadline");
        assert!(head >= Duration::from_secs(2) && head < Duration::from_secs(3));
    }

    #[test]
    fn http2_connections_only_have_the_idle_deadline_between_requests() {
        let a = ConnActivity::new(&TIMEOUTS);
        drop(a.request_started(true));
        a.on_bytes();
        let idle = limit(&a).expect("idle deadline");
        assert!(idle >= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn the_first_bytes_tell_the_protocol_and_reach_hyper_with_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(head).await.expect("write");
        let mut io = ClientStream::new(server, ConnActivity::new(&TIMEOUTS));
        assert!(!io.is_http2().await.expect("sniffed"));
        let mut buf = [0u8; 8192];
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], head, "one read hands over the whole head");

        let (mut client, server) = tokio::io::duplex(1024);
        let mut io = ClientStream::new(server, ConnActivity::new(&TIMEOUTS));
        let sniff = tokio::spawn(async move { (io.is_http2().await.expect("sniffed"), io) });
        // The preface in two parts still counts.
        client.write_all(&PREFACE[..5]).await.expect("write");
        tokio::task::yield_now().await;
        client.write_all(&PREFACE[5..]).await.expect("write");
        let (is_h2, mut io) = sniff.await.expect("task");
        assert!(is_h2);
        let n = io.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], PREFACE);
    }

    #[tokio::test]
    async fn a_head_longer_than_one_read_reaches_hyper_whole_and_the_copy_is_freed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut head = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
        head.resize(SNIFF_READ + 1000, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let (mut client, server) = tokio::io::duplex(2 * SNIFF_READ);
        client.write_all(&head).await.expect("write");
        let mut io = ClientStream::new(server, ConnActivity::new(&TIMEOUTS));
        assert!(!io.is_http2().await.expect("sniffed"));
        assert_eq!(io.sniffed.len(), SNIFF_READ, "one sniffing read, at most");
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while got.len() < head.len() {
            let n = io.read(&mut buf).await.expect("read");
            assert!(n > 0, "the head ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, head);
        assert_eq!(io.sniffed.capacity(), 0, "the sniffed copy is freed");
    }

    #[test]
    fn tunnels_have_no_request_deadline() {
        let a = ConnActivity::new(&TIMEOUTS);
        let guard = a.request_started(false);
        a.upgraded();
        drop(guard);
        a.on_bytes();
        assert_eq!(limit(&a), None);
    }
}
