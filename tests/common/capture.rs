//! A capturing backend for the bad-input corpus: it records the bytes each
//! connection sends, so a test can say exactly what reached a server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that records the bytes of each connection, one request each:
/// it reads a head and its body (by length or chunks), answers 200 with
/// `Connection: close` and closes.
#[derive(Clone, Default)]
pub struct Capture {
    addr: Option<SocketAddr>,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    pub open: Arc<AtomicUsize>,
    /// Bytes read so far, over all connections.
    pub read: Arc<AtomicUsize>,
}

impl Capture {
    pub async fn start() -> (SocketAddr, Capture) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let capture = Capture {
            addr: Some(addr),
            ..Capture::default()
        };
        let c = capture.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(c.clone().serve(stream));
            }
        });
        (addr, capture)
    }

    async fn serve(self, mut stream: TcpStream) {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let complete = loop {
            if let Some(end) = request_end(&bytes) {
                break end == bytes.len();
            }
            match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    bytes.extend_from_slice(&buf[..n]);
                    self.read.fetch_add(n, Ordering::SeqCst);
                }
                _ => break false,
            }
        };
        self.received.lock().unwrap().push(bytes);
        if complete {
            let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            let _ = stream.write_all(answer).await;
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Waits until every connection made to the backend so far has been
    /// served to its end. The proxy may connect and give up before the
    /// backend accepts (the kernel completes the handshake on its own), so
    /// `open` alone can read 0 while a connection waits in the accept
    /// queue. The queue is first in, first out: once a connection of our
    /// own has been answered, every earlier one has been accepted.
    pub async fn settle(&self) {
        let addr = self.addr.expect("a started capture");
        let mut barrier = TcpStream::connect(addr).await.unwrap();
        barrier.write_all(BARRIER).await.unwrap();
        let mut answer = Vec::new();
        barrier.read_to_end(&mut answer).await.unwrap();
        assert!(answer.starts_with(b"HTTP/1.1 200"), "barrier answered");
        crate::common::eventually("the backend is done", || async {
            self.open.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    /// What each connection but the probe's and the barrier's received.
    pub fn take(&self) -> Vec<Vec<u8>> {
        let mut all = self.received.lock().unwrap();
        all.drain(..)
            .filter(|b| !b.starts_with(b"GET /probe ") && b != BARRIER)
            .collect()
    }
}

const BARRIER: &[u8] = b"GET /barrier HTTP/1.1\r\n\r\n";

/// Where the request in `bytes` ends, once it is complete.
fn request_end(bytes: &[u8]) -> Option<usize> {
    let head = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&bytes[..head]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if header("transfer-encoding:").is_some() {
        let body = &bytes[head..];
        return body
            .windows(5)
            .position(|w| w == b"0\r\n\r\n")
            .filter(|&i| i == 0 || body[i - 2..i] == *b"\r\n")
            .map(|i| head + i + 5);
    }
    let length: usize = header("content-length:").map_or(0, |v| v.parse().unwrap_or(0));
    (bytes.len() >= head + length).then_some(head + length)
}
