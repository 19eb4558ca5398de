//! One HTTP/1.1 connection to a server, as the pool keeps it: the socket
//! (plain or TLS) and the bytes read from it that no response has consumed
//! yet. No task drives it: the request that holds it reads and writes it
//! (`proxy::h1_client`), and an idle one is only looked at, never awaited.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::UpstreamStream;

/// A connection to a server, between two requests or during one.
#[derive(Debug)]
pub struct UpstreamConn {
    pub io: UpstreamStream,
    /// Read from the server, not yet consumed by a response.
    pub buf: BytesMut,
    /// What the last exchange left to the next one, empty. Boxed: the
    /// connection moves with each request, from the pool to the exchange,
    /// the response body and back, and a pointer is all that moves.
    pub spare: Box<Spare>,
}

/// A read buffer larger than this is not kept by an idle connection.
const IDLE_BUFFER_KEPT: usize = 16 * 1024;
/// A spare head buffer larger than this is not kept.
const SPARE_HEAD_KEPT: usize = 4 * 1024;
/// A spare header map with room for more fields than this is not kept.
const SPARE_FIELDS_KEPT: usize = 64;

/// The buffers of one exchange, cleared and kept for the next on the same
/// connection: the request's head is written into `head`, and the response's
/// fields are read into `headers`, which was the request's map (written out
/// by then). The map then goes to the client's connection (hyper keeps it
/// for that connection's next request head), so in steady keep-alive no
/// exchange allocates either.
#[derive(Debug, Default)]
pub struct Spare {
    head: Vec<u8>,
    headers: HeaderMap,
}

impl Spare {
    /// A buffer for a request head, empty.
    pub fn take_head(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.head)
    }

    /// Keeps a head buffer once its bytes were written.
    pub fn keep_head(&mut self, mut head: Vec<u8>) {
        if head.capacity() <= SPARE_HEAD_KEPT {
            head.clear();
            self.head = head;
        }
    }

    /// A header map for a response head, empty.
    pub fn take_headers(&mut self) -> HeaderMap {
        std::mem::take(&mut self.headers)
    }

    /// Keeps a request's header map once its head was written.
    pub fn keep_headers(&mut self, mut headers: HeaderMap) {
        if headers.capacity() <= SPARE_FIELDS_KEPT {
            headers.clear();
            self.headers = headers;
        }
    }
}

impl UpstreamConn {
    pub fn new(io: UpstreamStream) -> Self {
        UpstreamConn {
            io,
            buf: BytesMut::new(),
            spare: Box::default(),
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
