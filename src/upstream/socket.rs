//! `Socket`: a TCP connection, towards a client or a server, that sends
//! gathered buffers with `sendmsg(2)` instead of `writev(2)`, and that
//! joins the reactor only when it first has to wait.
//!
//! hyper writes a response head and its body as two buffers, and the
//! HTTP/1.1 client a request head and body the same way; TLS records go out
//! gathered too. tokio's `TcpStream` sends those with `writev`, which goes
//! through the file layer first (file position lock, permission hook,
//! write notification) before it reaches the socket. `sendmsg` goes to the
//! socket directly, as `send` does for one buffer, with `MSG_NOSIGNAL` as
//! the standard library's `send` has it. One buffer with bytes, or a few
//! that together fit `GATHER_COPY`, go out with one `send`. Measured under
//! keep-alive load with `perf`, the file layer's part was about 0.5 µs per
//! request.
//!
//! An accepted client connection starts unregistered (`Socket::accepted`):
//! reads and writes go to the socket itself until one would block, and
//! only then is it added to the reactor's epoll set. A request that is
//! already there when the connection is accepted, answered with a
//! response the socket takes at once, on a connection that then closes
//! (`Connection: close`), is served without an `epoll_ctl` to add the
//! socket or one to remove it, and without tokio's registration
//! bookkeeping, as HAProxy serves it.

use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Gathered writes up to this size are copied into one buffer and sent
/// with `send`: copying a few hundred bytes costs less than `sendmsg`'s
/// message header and vector copies.
const GATHER_COPY: usize = 4096;

/// Most bytes one read takes from an unregistered socket; a request head
/// fits, and a longer one takes another read.
const DIRECT_READ: usize = 8192;

thread_local! {
    /// Where small gathered writes are joined, and where a read from an
    /// unregistered socket lands when the caller's buffer is not
    /// initialized (hyper's is not): reading there and copying the bytes
    /// that came costs less than zeroing the caller's `DIRECT_READ` bytes
    /// first, which would also push 128 lines out of the data cache for a
    /// head of a few hundred bytes (tokio's registered read needs neither,
    /// but only by `unsafe` code). One per thread, borrowed only around
    /// one system call, so never twice at once. Not shared with the client
    /// side's sniffing buffer: a TLS read may write (rustls flushes what it
    /// owes the peer) while that buffer is held.
    static STAGING: std::cell::RefCell<[u8; DIRECT_READ]> =
        const { std::cell::RefCell::new([0; DIRECT_READ]) };
}

/// A connected TCP socket; once registered, reads and single-buffer writes
/// are tokio's.
#[derive(Debug)]
pub struct Socket(Io);

#[derive(Debug)]
enum Io {
    /// Accepted, non-blocking, not in the reactor yet: every operation
    /// goes to the socket, and the first one that would block registers it.
    Direct(std::net::TcpStream),
    Polled(TcpStream),
    /// The registration failed, which closed the socket.
    Closed,
}

impl Socket {
    /// An accepted connection, non-blocking; registered with the current
    /// runtime's reactor when an operation first has to wait.
    pub fn accepted(stream: std::net::TcpStream) -> Self {
        Socket(Io::Direct(stream))
    }

    /// Whether the socket never had to wait, and so is not in the
    /// reactor.
    pub fn is_unregistered(&self) -> bool {
        matches!(self.0, Io::Direct(_))
    }

    /// Waits, reading nothing, until the peer sends more bytes or closes
    /// its side: `Ready(true)` when it closed or reset the connection,
    /// `Ready(false)` when bytes wait to be read. Joins the reactor; a
    /// socket with nothing new to read then waits without a system call.
    pub fn poll_peer_closed(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        let stream = match self.polled() {
            Ok(stream) => stream.into_ref().get_ref(),
            Err(_) => return Poll::Ready(true),
        };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        match ready!(stream.poll_peek(cx, &mut buf)) {
            Ok(n) => Poll::Ready(n == 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Err(_) => Poll::Ready(true),
        }
    }

    /// Acknowledges at once the bytes received and not yet acknowledged,
    /// and leaves the kernel's delayed-ACK ("pingpong") mode, which an
    /// accepted client connection starts in (`listener::bind`). Linux's
    /// `TCP_QUICKACK`; a failure changes nothing but when the ACK leaves,
    /// so it is ignored.
    pub fn acknowledge_now(&self) {
        #[cfg(target_os = "linux")]
        {
            let _ = match &self.0 {
                Io::Direct(stream) => socket2::SockRef::from(stream).set_tcp_quickack(true),
                Io::Polled(stream) => socket2::SockRef::from(stream).set_tcp_quickack(true),
                Io::Closed => Ok(()),
            };
        }
    }

    /// The registered stream, registering an accepted socket first.
    fn polled(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        if let Io::Direct(_) = self.0 {
            if let Io::Direct(stream) = std::mem::replace(&mut self.0, Io::Closed) {
                self.0 = Io::Polled(TcpStream::from_std(stream)?);
            }
        }
        match &mut self.0 {
            Io::Polled(stream) => Ok(Pin::new(stream)),
            _ => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The unregistered socket, if this one is.
    fn direct(&self) -> Option<&std::net::TcpStream> {
        match &self.0 {
            Io::Direct(stream) => Some(stream),
            _ => None,
        }
    }
}

impl From<TcpStream> for Socket {
    fn from(stream: TcpStream) -> Self {
        Socket(Io::Polled(stream))
    }
}

/// Runs one operation on an unregistered socket, again if a signal
/// interrupted it; `None` when it would block.
fn at_once<T>(mut op: impl FnMut() -> io::Result<T>) -> Option<io::Result<T>> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            done => return Some(done),
        }
    }
}

/// `sendmsg` of the buffers, without `SIGPIPE` when the peer has gone.
fn send_vectored(socket: &impl std::os::fd::AsFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    socket2::SockRef::from(socket).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(mut stream) = this.direct() {
            let limit = buf.remaining().min(DIRECT_READ);
            let read = if buf.initialized().len() - buf.filled().len() >= limit {
                at_once(|| stream.read(buf.initialize_unfilled_to(limit)))
                    .map(|read| read.map(|n| buf.advance(n)))
            } else {
                STAGING.with_borrow_mut(|staging| {
                    at_once(|| stream.read(&mut staging[..limit]))
                        .map(|read| read.map(|n| buf.put_slice(&staging[..n])))
                })
            };
            if let Some(read) = read {
                return Poll::Ready(read);
            }
        }
        match this.polled() {
            Ok(stream) => stream.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(sent) = this.direct().and_then(|mut s| at_once(|| s.write(buf))) {
            return Poll::Ready(sent);
        }
        match this.polled() {
            Ok(stream) => stream.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // One buffer with bytes (a request head alone, the rest of a
        // body): `send`, without the message header `sendmsg` copies in.
        let mut full = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (full.next(), full.next()) {
            return self.poll_write(cx, only);
        }
        // A few small buffers (a response head and a short body, TLS
        // records of small frames): copied into one, then `send`.
        let total = bufs.iter().map(|b| b.len()).sum::<usize>();
        if total <= GATHER_COPY {
            return STAGING.with_borrow_mut(|gathered| {
                let mut at = 0;
                for b in bufs {
                    gathered[at..at + b.len()].copy_from_slice(b);
                    at += b.len();
                }
                self.as_mut().poll_write(cx, &gathered[..at])
            });
        }
        let this = self.get_mut();
        if let Some(sent) = this
            .direct()
            .and_then(|s| at_once(|| send_vectored(s, bufs)))
        {
            return Poll::Ready(sent);
        }
        let stream = match this.polled() {
            Ok(stream) => stream.into_ref().get_ref(),
            Err(e) => return Poll::Ready(Err(e)),
        };
        loop {
            ready!(stream.poll_write_ready(cx))?;
            // `try_io` clears the write readiness when the send would
            // block, so the next `poll_write_ready` waits for the socket.
            match stream.try_io(Interest::WRITABLE, || send_vectored(stream, bufs)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                sent => return Poll::Ready(sent),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Io::Polled(stream) => Pin::new(stream).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Io::Direct(stream) => Poll::Ready(stream.shutdown(std::net::Shutdown::Write)),
            Io::Polled(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Closed => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
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

    /// A connection accepted as the listener does it (non-blocking, not in
    /// the reactor), and the client's end.
    async fn accepted_socket_and_its_client() -> (Socket, TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("non-blocking");
        (Socket::accepted(accepted), client)
    }

    /// An accepted socket reads and writes without the reactor, joins it
    /// when a read first has to wait, and then gets what arrives later.
    #[tokio::test]
    async fn an_accepted_socket_joins_the_reactor_when_it_first_waits() {
        use futures_util::FutureExt;
        let (mut socket, mut client) = accepted_socket_and_its_client().await;
        assert!(socket.is_unregistered());

        client.write_all(b"request").await.expect("write");
        let mut buf = [0u8; 7];
        socket.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"request");
        socket.write_all(b"answer").await.expect("write");
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.expect("read");
        assert_eq!(&answer, b"answer");

        // Nothing to read: the read waits, in the reactor.
        assert!(socket.read(&mut buf).now_or_never().is_none());
        assert!(!socket.is_unregistered());
        client.write_all(b"later").await.expect("write");
        let mut later = [0u8; 5];
        socket.read_exact(&mut later).await.expect("read");
        assert_eq!(&later, b"later");
        socket.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("the end");
        assert!(rest.is_empty());
    }

    /// Watching a socket for its peer leaving reads nothing: bytes that
    /// came stay for the next read, and the end of the stream is seen
    /// only once they are read. A reset counts as leaving.
    #[tokio::test]
    async fn watching_for_the_peer_leaving_reads_nothing() {
        use std::future::poll_fn;
        let (mut socket, mut client) = accepted_socket_and_its_client().await;
        client.write_all(b"next").await.expect("write");
        client.shutdown().await.expect("shutdown");
        assert!(
            !poll_fn(|cx| socket.poll_peer_closed(cx)).await,
            "bytes wait"
        );
        assert!(!socket.is_unregistered(), "the watch joins the reactor");
        let mut next = [0u8; 4];
        socket.read_exact(&mut next).await.expect("read");
        assert_eq!(&next, b"next");
        assert!(poll_fn(|cx| socket.poll_peer_closed(cx)).await, "the end");

        let (mut socket, client) = accepted_socket_and_its_client().await;
        let mut watch = Box::pin(poll_fn(|cx| socket.poll_peer_closed(cx)));
        assert!(
            futures_util::FutureExt::now_or_never(&mut watch).is_none(),
            "still there"
        );
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("linger");
        drop(client);
        assert!(watch.await, "a reset");
    }

    /// Reads from an accepted socket into buffers that are not
    /// initialized (as hyper's are) and into ones that are, before it
    /// joins the reactor, take every byte in order, a read of more than
    /// `DIRECT_READ` bytes included.
    #[tokio::test]
    async fn an_accepted_socket_reads_into_uninitialized_and_initialized_buffers() {
        let (mut socket, mut client) = accepted_socket_and_its_client().await;
        let sent: Vec<u8> = (0..3 * super::DIRECT_READ + 100)
            .map(|i| (i % 251) as u8)
            .collect();
        client.write_all(&sent).await.expect("write");
        let mut got = Vec::with_capacity(sent.len());
        // `read_buf` offers the vector's spare capacity, not initialized.
        while got.len() < 2 * super::DIRECT_READ {
            let n = socket.read_buf(&mut got).await.expect("read");
            assert!(n > 0 && n <= super::DIRECT_READ, "read {n}");
        }
        assert!(socket.is_unregistered(), "every byte was there at once");
        let mut rest = vec![0u8; sent.len() - got.len()];
        socket.read_exact(&mut rest).await.expect("read");
        got.extend_from_slice(&rest);
        assert_eq!(got, sent);
    }

    /// An accepted socket that never waited shuts down and closes
    /// without the reactor: the peer sees the end of the stream.
    #[tokio::test]
    async fn an_accepted_socket_that_never_waited_shuts_down() {
        let (mut socket, mut client) = accepted_socket_and_its_client().await;
        socket.write_all(b"bye").await.expect("write");
        socket.shutdown().await.expect("shutdown");
        assert!(socket.is_unregistered());
        drop(socket);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.expect("the end");
        assert_eq!(got, b"bye");
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
