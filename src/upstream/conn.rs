//! One HTTP/1.1 connection to a server, as the pool keeps it: the socket
//! (plain or TLS) and the bytes read from it that no response has consumed
//! yet. No task drives it: the request that holds it reads and writes it
//! (`proxy::h1_client`), and an idle one is only looked at, never awaited.

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
}

/// A read buffer larger than this is not kept by an idle connection.
const IDLE_BUFFER_KEPT: usize = 16 * 1024;

impl UpstreamConn {
    pub fn new(io: UpstreamStream) -> Self {
        UpstreamConn {
            io,
            buf: BytesMut::new(),
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

    /// Lets go of a large read buffer before the connection waits idle.
    pub fn shrink_idle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUFFER_KEPT {
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
