//! `Socket`: a TCP connection, towards a client or a server, that sends
//! gathered buffers with `sendmsg(2)` instead of `writev(2)`.
//!
//! hyper writes a response head and its body as two buffers, and the
//! HTTP/1.1 client a request head and body the same way; TLS records go out
//! gathered too. tokio's `TcpStream` sends those with `writev`, which goes
//! through the file layer first (file position lock, permission hook,
//! write notification) before it reaches the socket. `sendmsg` goes to the
//! socket directly, as `send` does for one buffer, with `MSG_NOSIGNAL` as
//! the standard library's `send` has it. One buffer with bytes, or a few
//! that together fit `GATHER_COPY`, go out with one `send`. Measured under keep-alive load with `perf`, the file
//! layer's part was about 0.5 µs per request.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Gathered writes up to this size are copied into one buffer and sent
/// with `send`: copying a few hundred bytes costs less than `sendmsg`'s
/// message header and vector copies.
const GATHER_COPY: usize = 4096;

thread_local! {
    /// Where small gathered writes are joined; one per thread, used only
    /// inside one synchronous send. Not shared with the client side's
    /// sniffing buffer: a TLS read may write (rustls flushes what it owes
    /// the peer) while that buffer is held.
    static GATHER: std::cell::RefCell<[u8; GATHER_COPY]> =
        const { std::cell::RefCell::new([0; GATHER_COPY]) };
}

/// A connected TCP socket; reads and single-buffer writes are tokio's.
#[derive(Debug)]
pub struct Socket(TcpStream);

impl Socket {
    pub fn get_ref(&self) -> &TcpStream {
        &self.0
    }
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Self {
        Socket(stream)
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let stream = &mut self.get_mut().0;
        // One buffer with bytes (a request head alone, the rest of a
        // body): `send`, without the message header `sendmsg` copies in.
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (full.next(), full.next()) {
            return Pin::new(stream).poll_write(cx, only);
        }
        // A few small buffers (a response head and a short body, TLS
        // records of small frames): copied into one, then `send`.
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if total <= GATHER_COPY {
            return GATHER.with_borrow_mut(|gathered| {
                let mut at = 0;
                for b in bufs {
                    gathered[at..at + b.len()].copy_from_slice(b);
                    at += b.len();
                }
                Pin::new(stream).poll_write(cx, &gathered[..at])
            });
        }
        let stream = &*stream;
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the write readiness when the send would
            // block, so the next `poll_write_ready` waits for the socket.
            let sent = stream.try_io(Interest::WRITABLE, || {
                socket2::SockRef::from(stream).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                sent => return Poll::Ready(sent),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::Socket;

    /// A socket connected to a peer that reads everything until the end,
    /// and the peer's task, which returns what it read.
    async fn socket_to_a_reader() -> (Socket, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = tokio::spawn(async move {
            let (mut peer, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.expect("read");
            got
        });
        let socket = Socket::from(TcpStream::connect(addr).await.expect("connect"));
        (socket, reader)
    }

    /// Gathered buffers arrive whole and in order, including a write larger
    /// than the socket takes at once, which has to wait for the reader.
    #[tokio::test]
    async fn gathered_buffers_arrive_whole_and_in_order() {
        let (mut socket, reader) = socket_to_a_reader().await;
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 4194304\r\n\r\n".to_vec();
        let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        while at < head.len() + body.len() {
            let slices: [IoSlice<'_>; 2] = if at < head.len() {
                [IoSlice::new(&head[at..]), IoSlice::new(&body)]
            } else {
                [IoSlice::new(&body[at - head.len()..]), IoSlice::new(&[])]
            };
            let n = socket.write_vectored(&slices).await.expect("sendmsg");
            assert!(n > 0, "no progress");
            at += n;
        }
        socket.shutdown().await.expect("shutdown");
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), head.len() + body.len());
        assert_eq!(&got[..head.len()], &head[..]);
        assert!(got[head.len()..] == body[..], "the body arrived changed");
    }

    /// Small gathered buffers (joined before one `send`) and a single one
    /// among empty ones arrive whole and in order.
    #[tokio::test]
    async fn small_gathered_buffers_arrive_whole_and_in_order() {
        let (mut socket, reader) = socket_to_a_reader().await;
        let parts: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            b"origin=1\n",
            b"",
        ];
        let slices = parts.map(IoSlice::new);
        let n = socket.write_vectored(&slices).await.expect("send");
        assert_eq!(
            n,
            parts.iter().map(|p| p.len()).sum::<usize>(),
            "one send takes it all"
        );
        let alone = [IoSlice::new(b""), IoSlice::new(b"tail"), IoSlice::new(b"")];
        assert_eq!(socket.write_vectored(&alone).await.expect("send"), 4);
        socket.shutdown().await.expect("shutdown");
        let got = reader.await.expect("reader");
        assert_eq!(got, [&parts.concat()[..], b"tail"].concat());
    }

    /// A write to a socket whose peer has gone fails with a broken pipe or
    /// a reset.
    #[tokio::test]
    async fn a_send_to_a_closed_peer_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut socket = Socket::from(TcpStream::connect(addr).await.expect("connect"));
        let (peer, _) = listener.accept().await.expect("accept");
        drop(peer);
        let chunk = vec![0u8; 64 * 1024];
        let mut failed = None;
        // The first sends may still be taken before the reset comes back.
        for _ in 0..1000 {
            match socket.write_vectored(&[IoSlice::new(&chunk)]).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let e = failed.expect("a send failed");
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }
}
