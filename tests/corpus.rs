//! The bad-input corpus (HARDENING.md 2.1, 2.3 and 2.5) as data: each
//! `tests/corpus/*.http` file is sent as-is over raw TCP through the proxy
//! to a capturing backend. `tests/corpus/MANIFEST` says, per file, the status
//! the client must get, whether the connection must close after it, and the
//! exact bytes the backend must receive (`-`: no connection at all;
//! `nothing`: no byte, though a connection may have been opened). A case
//! that must leave the connection open is followed by a probe request that
//! must get its own 200. `CORPUS_BLESS=1 cargo test --test corpus` writes
//! the bytes received into the `.upstream` files, for review in the diff.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PROBE: &[u8] = b"GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

/// A backend that records the bytes of each connection, one request each:
/// it reads a head and its body (by length or chunks), answers 200 with
/// `Connection: close` and closes.
#[derive(Clone, Default)]
struct Capture {
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    open: Arc<AtomicUsize>,
}

impl Capture {
    async fn start() -> (SocketAddr, Capture) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let capture = Capture::default();
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
                Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
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

    /// What each connection but the probe's received.
    fn take(&self) -> Vec<Vec<u8>> {
        let mut all = self.received.lock().unwrap();
        all.drain(..)
            .filter(|b| !b.starts_with(b"GET /probe "))
            .collect()
    }
}

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

/// The statuses of the final responses in `answer`, in order.
fn statuses(answer: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answer);
    text.match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n') || text[..*i].ends_with("ok"))
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .filter(|s| *s >= 200)
        .collect()
}

struct Case {
    file: String,
    status: u16,
    closes: bool,
    upstream: Upstream,
}

/// What the backend must receive.
enum Upstream {
    NoConnection,
    NoBytes,
    Exactly(PathBuf),
}

fn manifest(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 4, "manifest line {line:?}");
            Case {
                file: fields[0].to_owned(),
                status: fields[1].parse().unwrap(),
                closes: match fields[2] {
                    "close" => true,
                    "open" => false,
                    other => panic!("close or open, not {other}"),
                },
                upstream: match fields[3] {
                    "-" => Upstream::NoConnection,
                    "nothing" => Upstream::NoBytes,
                    file => Upstream::Exactly(dir.join(file)),
                },
            }
        })
        .collect()
}

fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

#[tokio::test]
async fn every_corpus_case_gets_its_status_close_and_upstream_bytes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let (backend, capture) = Capture::start().await;
    let config = format!(
        "[global]\naccess_log = \"off\"\nrequest_id = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\nmax_body = \"1KiB\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"{backend}\"\n"
    );
    let proxy = start_proxy(&config).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let mut failures = Vec::new();
    for case in manifest(&dir) {
        let raw = std::fs::read(dir.join(&case.file)).unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut sent = raw.clone();
        if !case.closes {
            sent.extend_from_slice(PROBE);
        }
        // The proxy may answer and close before reading everything.
        let _ = client.write_all(&sent).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer));
        let closed = read.await.is_ok();
        eventually("the backend is done", || async {
            capture.open.load(Ordering::SeqCst) == 0
        })
        .await;
        let got = statuses(&answer);
        let expected: Vec<u16> = match case.closes {
            true => vec![case.status],
            false => vec![case.status, 200],
        };
        if !closed || got != expected {
            failures.push(format!(
                "{}: statuses {got:?}, expected {expected:?} (closed: {closed}): {}",
                case.file,
                shown(&answer)
            ));
        }
        let received = capture.take();
        let bless = std::env::var_os("CORPUS_BLESS").is_some();
        match &case.upstream {
            Upstream::NoConnection if !received.is_empty() => failures.push(format!(
                "{}: reached the backend: {:?}",
                case.file,
                received.iter().map(|b| shown(b)).collect::<Vec<_>>()
            )),
            Upstream::NoBytes if received.iter().any(|b| !b.is_empty()) => failures.push(format!(
                "{}: bytes reached the backend: {:?}",
                case.file,
                received.iter().map(|b| shown(b)).collect::<Vec<_>>()
            )),
            Upstream::NoConnection | Upstream::NoBytes => {}
            Upstream::Exactly(path) if bless && received.len() == 1 => {
                std::fs::write(path, &received[0]).unwrap();
            }
            Upstream::Exactly(path) => {
                let wanted = std::fs::read(path).unwrap_or_default();
                if received != [wanted.clone()] {
                    failures.push(format!(
                        "{}: backend received {:?}, expected {:?}",
                        case.file,
                        received.iter().map(|b| shown(b)).collect::<Vec<_>>(),
                        shown(&wanted)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.shutdown().await;
}
