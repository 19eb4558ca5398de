//! One HTTP/1.1 connection to a server, as the pool keeps it: the socket
//! (plain or TLS) and the bytes read from it that no response has consumed
//! yet. No task drives it: the request that holds it reads and writes it
//! (`proxy::h1_client`), and an idle one is only looked at, never awaited.
//!
//! Read buffers: a connection reads into a buffer of its own, and the
//! body's bytes leave it as shared slices (no copy) that the client's
//! connection holds until it has sent them. A response longer than the
//! first read takes a large buffer (`LARGE_BUFFER`) from a small stack of
//! spares kept per thread, and gives it back there when the connection
//! goes idle; a spare is reused once the client has been sent every byte
//! in it. Freed instead, these buffers made glibc give the thread's heap
//! back to the kernel and fault it in again on the next large response
//! (BENCHMARKS.md, "Read buffers for large bodies").

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::UpstreamStream;

/// A connection to a server, between two requests or during one.
#[derive(Debug)]
pub struct UpstreamConn {
    pub io: UpstreamStream,
    /// Read from the server, not yet consumed by a response.
    pub buf: BytesMut,
    /// `buf` lies in a large buffer, which goes back to this thread's
    /// spares when the connection goes idle.
    is_large: bool,
}

/// A read buffer larger than this is not kept by an idle connection.
const IDLE_BUFFER_KEPT: usize = 16 * 1024;

/// The size of a large read buffer: room for the most that is read from a
/// server at once.
pub const LARGE_BUFFER: usize = 64 * 1024;

/// Most large buffers a thread keeps as spares (1 MiB).
const SPARES_KEPT: usize = 16;

thread_local! {
    /// Large read buffers this thread's connections gave back, the most
    /// recent last. Some may still share their bytes with responses being
    /// sent to clients; those are skipped until they are free.
    static SPARES: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A spare large buffer, empty, that no response shares any more, taken
/// from this thread's spares (the most recent first); `None` when there
/// is none.
fn take_spare() -> Option<BytesMut> {
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        let free = spares
            .iter_mut()
            .rposition(|b| b.try_reclaim(LARGE_BUFFER))?;
        Some(spares.swap_remove(free))
    })
}

/// Keeps a large buffer as a spare of this thread, or frees it when the
/// thread keeps enough.
fn keep_spare(mut buf: BytesMut) {
    buf.clear();
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < SPARES_KEPT {
            spares.push(buf);
        }
    });
}

impl UpstreamConn {
    pub fn new(io: UpstreamStream) -> Self {
        UpstreamConn {
            io,
            buf: BytesMut::new(),
            is_large: false,
        }
    }

    /// Makes room in `buf` for a read of `want` bytes (at most
    /// `LARGE_BUFFER`); a buffer that has to be made has room for `small`
    /// at least. Room is reclaimed in place when no response shares the
    /// buffer any more. Otherwise a read of more than `small`, or one on a
    /// connection already on a large buffer, goes to a large buffer (a
    /// free spare, or a new one), and a small read on a small buffer grows
    /// it; so does a read that would not fit a large buffer beside the
    /// bytes still unread (a long head).
    pub fn make_room(&mut self, want: usize, small: usize) {
        if self.buf.capacity() - self.buf.len() >= want {
            return;
        }
        let room = want.max(small);
        if self.buf.try_reclaim(room) {
            return;
        }
        let fits = self.buf.len() + room <= LARGE_BUFFER;
        let mut next = match fits.then(take_spare).flatten() {
            Some(spare) => spare,
            None if fits && (room > small || self.is_large) => {
                BytesMut::with_capacity(LARGE_BUFFER)
            }
            None => {
                self.is_large = false;
                self.buf.reserve(room);
                return;
            }
        };
        next.extend_from_slice(&self.buf);
        let last = std::mem::replace(&mut self.buf, next);
        if std::mem::replace(&mut self.is_large, true) {
            keep_spare(last);
        }
    }

    /// Whether an idle connection may carry the next request: the server
    /// has neither closed it nor sent anything unasked. Never waits: one
    /// non-blocking read (none when the socket was not readable since the
    /// last one).
    pub fn is_idle_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    /// Lets go of a large read buffer before the connection waits idle: a
    /// large buffer goes back to this thread's spares.
    pub fn shrink_idle(&mut self) {
        if !self.buf.is_empty() {
            return;
        }
        if self.is_large {
            self.is_large = false;
            keep_spare(std::mem::take(&mut self.buf));
        } else if self.buf.capacity() > IDLE_BUFFER_KEPT {
            self.buf = BytesMut::new();
        }
    }
}

/// A connection whose server switched protocols (WebSocket): the socket and
/// the bytes the server sent after its `101`, which are read first.
#[derive(Debug)]
pub struct UpgradedConn {
    io: UpstreamStream,
    pending: Bytes,
}

impl UpgradedConn {
    pub fn new(conn: UpstreamConn) -> Self {
        UpgradedConn {
            io: conn.io,
            pending: conn.buf.freeze(),
        }
    }
}

impl AsyncRead for UpgradedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pending.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for UpgradedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A connection to a fresh listener, and the server's side of it.
#[cfg(test)]
pub async fn connected() -> (UpstreamConn, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    let conn = UpstreamConn::new(UpstreamStream::Plain(crate::upstream::Socket::from(client)));
    (conn, server)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn conn() -> UpstreamConn {
        connected().await.0
    }

    fn spares() -> usize {
        SPARES.with(|s| s.borrow().len())
    }

    /// Bytes "read" into the buffer and handed on as a body frame, as the
    /// client does: the frame shares the buffer's allocation.
    fn frame(conn: &mut UpstreamConn, n: usize) -> Bytes {
        conn.buf.extend_from_slice(&vec![7; n]);
        conn.buf.split_to(n).freeze()
    }

    #[tokio::test]
    async fn a_large_buffer_is_reused_by_the_next_connection_once_its_bytes_are_sent() {
        let mut first = conn().await;
        first.make_room(50_000, 8 * 1024);
        assert!(first.buf.capacity() >= LARGE_BUFFER);
        let at = first.buf.as_ptr();
        let sent = frame(&mut first, 50_000);
        first.shrink_idle();
        assert_eq!((first.buf.capacity(), spares()), (0, 1));

        // Its bytes are still on their way to a client: not reused.
        let mut second = conn().await;
        second.make_room(50_000, 8 * 1024);
        assert_ne!(second.buf.as_ptr(), at);
        assert_eq!(spares(), 1);

        // Sent: the next large read takes it, from its start.
        drop(sent);
        let mut third = conn().await;
        third.make_room(50_000, 8 * 1024);
        assert_eq!(third.buf.as_ptr(), at);
        assert!(third.buf.capacity() >= LARGE_BUFFER);
        assert_eq!(spares(), 0);
    }

    #[tokio::test]
    async fn small_reads_stay_in_a_small_buffer_that_the_idle_connection_keeps() {
        let mut conn = conn().await;
        conn.make_room(8 * 1024, 8 * 1024);
        let capacity = conn.buf.capacity();
        assert!((8 * 1024..LARGE_BUFFER).contains(&capacity), "{capacity}");
        let at = conn.buf.as_ptr();
        drop(frame(&mut conn, 300));
        conn.shrink_idle();
        assert_eq!(spares(), 0);
        // The next response reads into the same block, from its start.
        conn.make_room(8 * 1024, 8 * 1024);
        assert_eq!(conn.buf.as_ptr(), at);
    }

    #[tokio::test]
    async fn bytes_not_yet_consumed_move_with_the_read_to_a_large_buffer() {
        let mut conn = conn().await;
        conn.make_room(8 * 1024, 8 * 1024);
        conn.buf
            .extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\nab");
        let head = conn.buf.split_to(42).freeze();
        assert_eq!(
            &head[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n"
        );
        // The head still shares the small buffer, so the large read moves.
        conn.make_room(60_000, 8 * 1024);
        assert_eq!(&conn.buf[..], b"ab");
        assert!(conn.buf.capacity() >= LARGE_BUFFER);
        // The small buffer is not a spare; the large one will be.
        assert_eq!(spares(), 0);
        conn.buf.clear();
        conn.shrink_idle();
        assert_eq!(spares(), 1);
    }

    #[tokio::test]
    async fn a_thread_keeps_at_most_sixteen_spares() {
        let mut held = Vec::new();
        for _ in 0..SPARES_KEPT + 4 {
            let mut conn = conn().await;
            conn.make_room(LARGE_BUFFER, 8 * 1024);
            held.push(frame(&mut conn, 10));
            conn.shrink_idle();
        }
        assert_eq!(spares(), SPARES_KEPT);
    }
}
