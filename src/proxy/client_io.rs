//! The client connection's socket with its two read deadlines: a request
//! head must arrive within `client_header` of its first byte (or of the
//! accept), and a keep-alive connection may sit idle between requests for
//! `idle`. hyper's own header timer cannot tell the two apart, so the proxy
//! keeps them here, where every read passes. Every write passes here too:
//! a write may wait at most `write_idle` for the client to read.
//!
//! The same place watches request heads for one ambiguity hyper resolves
//! silently: a head with both `Content-Length` and `Transfer-Encoding` (hyper
//! drops the length and closes after the response). `HeadScan` notes it so
//! the service can refuse the request with 400 (R1).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::model::FrontendTimeouts;

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
    /// The last head read had both framing headers.
    is_ambiguous: AtomicBool,
}

impl ConnActivity {
    pub fn new() -> Arc<Self> {
        Arc::new(ConnActivity {
            start: Instant::now(),
            active: AtomicU32::new(0),
            phase: AtomicU8::new(PHASE_HEAD),
            since_ms: AtomicU64::new(0),
            is_h2: AtomicBool::new(false),
            is_ambiguous: AtomicBool::new(false),
        })
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

    /// Whether the request whose head was just read carried both
    /// `Content-Length` and `Transfer-Encoding`; clears the mark.
    pub fn take_ambiguous_framing(&self) -> bool {
        self.is_ambiguous.swap(false, Ordering::Relaxed)
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

    /// When reading must have produced a request by.
    fn deadline(&self, timeouts: &FrontendTimeouts) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Relaxed) {
            PHASE_HEAD => timeouts.client_header,
            PHASE_IDLE => timeouts.idle,
            _ => return None,
        };
        let since = std::time::Duration::from_millis(self.since_ms.load(Ordering::Relaxed));
        Some(self.start + since + limit)
    }
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

/// The client socket, failing a read with `TimedOut` once the connection's
/// deadline passes.
#[derive(Debug)]
pub struct ClientStream {
    inner: TcpStream,
    activity: Arc<ConnActivity>,
    timeouts: FrontendTimeouts,
    timer: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    scan: HeadScan,
    /// Made on the first write that has to wait; fails the connection when
    /// the client reads nothing for `write_idle` (slow read).
    write_timer: Option<Pin<Box<Sleep>>>,
    is_write_waiting: bool,
}

impl ClientStream {
    pub fn new(inner: TcpStream, activity: Arc<ConnActivity>, timeouts: FrontendTimeouts) -> Self {
        ClientStream {
            inner,
            activity,
            timeouts,
            timer: Box::pin(tokio::time::sleep(timeouts.client_header)),
            armed: None,
            scan: HeadScan::default(),
            write_timer: None,
            is_write_waiting: false,
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.activity.on_bytes();
                    if this.activity.phase.load(Ordering::Relaxed) == PHASE_HEAD
                        && !this.activity.is_h2.load(Ordering::Relaxed)
                        && this.scan.feed(&buf.filled()[before..])
                    {
                        this.activity.is_ambiguous.store(true, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl ClientStream {
    /// Called when a read would block: fails once the deadline has passed,
    /// else makes sure the timer wakes this reader by then. While a request
    /// runs there is no deadline, but the timer still wakes the reader every
    /// `idle`, so a connection that turns idle meanwhile gets its deadline.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let deadline = self.activity.deadline(&self.timeouts);
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client sent no complete request in time",
                )));
            }
            let wake_at = match (deadline, self.armed) {
                (Some(d), _) => d,
                (None, Some(armed)) if armed > now && armed <= now + self.timeouts.idle => armed,
                (None, _) => now + self.timeouts.idle,
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

/// Finds header lines named `Content-Length` and `Transfer-Encoding` in the
/// bytes of one request head, across reads. Keeps only the first bytes of
/// each line and skips the rest with `memchr`, so a head costs about one
/// pass and no allocation.
#[derive(Debug)]
struct HeadScan {
    /// The first bytes of the current line, while `is_collecting`.
    prefix: [u8; HeadScan::LONGEST],
    len: usize,
    is_collecting: bool,
    seen_length: bool,
    seen_encoding: bool,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            prefix: [0; HeadScan::LONGEST],
            len: 0,
            is_collecting: true,
            seen_length: false,
            seen_encoding: false,
        }
    }
}

impl HeadScan {
    const LONGEST: usize = "transfer-encoding:".len();

    /// Feeds bytes read during a head; returns true when the head ended with
    /// both framing headers, and starts over for the next head.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        loop {
            if !self.is_collecting {
                let Some(i) = memchr::memchr(b'\n', bytes) else {
                    return false;
                };
                bytes = &bytes[i + 1..];
                self.is_collecting = true;
                self.len = 0;
            }
            let room = Self::LONGEST - self.len;
            let take = memchr::memchr(b'\n', bytes)
                .map_or(bytes.len(), |i| i + 1)
                .min(room);
            self.prefix[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            bytes = &bytes[take..];
            let line = &self.prefix[..self.len];
            let is_line_end = line.ends_with(b"\n");
            if !is_line_end && self.len < Self::LONGEST {
                return false;
            }
            if line == b"\r\n" || line == b"\n" {
                let ambiguous = self.seen_length && self.seen_encoding;
                *self = HeadScan::default();
                return ambiguous;
            }
            let has = |name: &[u8]| {
                line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name)
            };
            self.seen_length |= has(b"content-length");
            self.seen_encoding |= has(b"transfer-encoding");
            self.is_collecting = is_line_end;
            self.len = 0;
        }
    }
}

impl ClientStream {
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
            let deadline = tokio::time::Instant::now() + self.timeouts.write_idle;
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

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const TIMEOUTS: FrontendTimeouts = FrontendTimeouts {
        client_header: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body_idle: Duration::from_secs(30),
        write_idle: Duration::from_secs(30),
    };

    fn limit(a: &ConnActivity) -> Option<Duration> {
        a.deadline(&TIMEOUTS).map(|d| d.duration_since(a.start))
    }

    #[test]
    fn phases_choose_the_deadline() {
        let a = ConnActivity::new();
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
    fn http2_connections_only_have_the_idle_deadline_between_requests() {
        let a = ConnActivity::new();
        drop(a.request_started(true));
        a.on_bytes();
        let idle = limit(&a).expect("idle deadline");
        assert!(idle >= Duration::from_secs(60));
    }

    /// Feeds `head` cut at each position and expects `expected` every time.
    fn check_scan(head: &[u8], expected: bool) {
        for cut in 0..head.len() {
            let mut scan = HeadScan::default();
            let first = scan.feed(&head[..cut]);
            let second = scan.feed(&head[cut..]);
            assert_eq!(
                first || second,
                expected,
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn head_scan_finds_both_framing_headers_across_reads() {
        check_scan(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", true);
        check_scan(
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 6\r\n\r\n",
            true,
        );
        check_scan(
            b"POST / HTTP/1.1\nContent-Length: 6\nTransfer-Encoding: chunked\n\n",
            true,
        );
        check_scan(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n",
            false,
        );
        check_scan(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 6\r\n\r\n",
            false,
        );
        check_scan(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false);
    }

    #[test]
    fn head_scan_starts_over_for_the_next_head() {
        let mut scan = HeadScan::default();
        assert!(
            scan.feed(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
        );
        assert!(!scan.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn tunnels_have_no_request_deadline() {
        let a = ConnActivity::new();
        let guard = a.request_started(false);
        a.upgraded();
        drop(guard);
        a.on_bytes();
        assert_eq!(limit(&a), None);
    }
}
