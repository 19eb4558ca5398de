//! The bad-input corpus (HARDENING.md 2.1, 2.2, 2.3 and 2.5) as data, sent
//! through the proxy to a capturing backend. `tests/corpus/MANIFEST` says,
//! per file, what the client must get, whether the connection must close
//! after it, and the exact bytes the backend must receive (`-`: no
//! connection at all; `nothing`: no byte, though a connection may have been
//! opened). A case that must leave the connection open is followed by a
//! probe request that must get its own 200. `CORPUS_BLESS=1 cargo test
//! --test corpus` writes the bytes received into the `.upstream` files, for
//! review in the diff.
//!
//! `*.http` files are raw HTTP/1 bytes sent as-is over TCP; the client gets
//! a status. `*.h2` files are one HTTP/2 request in the text format of
//! `common::h2_case`, sent as stream 1 of a prior-knowledge h2c connection;
//! the client gets a status, `rst:CODE` (RST_STREAM on that stream) or
//! `goaway:CODE` (the connection goes away).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::capture::Capture;
use common::h2_case::H2Case;
use common::h2_frames as h2;
use common::{eventually, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROBE: &[u8] = b"GET /probe HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

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
    outcome: Outcome,
    closes: bool,
    upstream: Upstream,
}

/// What the client gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Status(u16),
    /// RST_STREAM on the case's stream, with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
}

/// HTTP/2 error codes by name (RFC 9113 section 7).
const CODES: [(&str, u32); 5] = [
    ("PROTOCOL_ERROR", 0x1),
    ("INTERNAL_ERROR", 0x2),
    ("REFUSED_STREAM", 0x7),
    ("COMPRESSION_ERROR", 0x9),
    ("ENHANCE_YOUR_CALM", 0xb),
];

fn code(name: &str) -> u32 {
    CODES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("unknown HTTP/2 error code {name}"))
        .1
}

impl Outcome {
    fn parse(field: &str) -> Outcome {
        match field.split_once(':') {
            Some(("rst", name)) => Outcome::Reset(code(name)),
            Some(("goaway", name)) => Outcome::GoAway(code(name)),
            _ => Outcome::Status(field.parse().unwrap()),
        }
    }
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
                outcome: Outcome::parse(fields[1]),
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

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// The proxy in front of a capturing backend; bodies over 1 KiB are refused.
async fn proxy_and_capture() -> (switchyard::app::Running, Capture) {
    let (backend, capture) = Capture::start().await;
    let config = format!(
        "[global]\naccess_log = \"off\"\nrequest_id = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\nmax_body = \"1KiB\"\n\
         [[backend.server]]\nname = \"s\"\naddress = \"{backend}\"\n"
    );
    (start_proxy(&config).await, capture)
}

/// Waits for the backend to finish, then checks what it received against
/// the case (or writes it, when blessing).
async fn check_upstream(case: &Case, capture: &Capture, failures: &mut Vec<String>) {
    capture.settle().await;
    let received = capture.take();
    let bless = std::env::var_os("CORPUS_BLESS").is_some();
    let all = || received.iter().map(|b| shown(b)).collect::<Vec<_>>();
    match &case.upstream {
        Upstream::NoConnection if !received.is_empty() => {
            failures.push(format!("{}: reached the backend: {:?}", case.file, all()));
        }
        Upstream::NoBytes if received.iter().any(|b| !b.is_empty()) => {
            failures.push(format!(
                "{}: bytes reached the backend: {:?}",
                case.file,
                all()
            ));
        }
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
                    all(),
                    shown(&wanted)
                ));
            }
        }
    }
}

#[tokio::test]
async fn every_http1_corpus_case_gets_its_status_close_and_upstream_bytes() {
    let dir = corpus_dir();
    let (proxy, capture) = proxy_and_capture().await;
    let addr = proxy.frontend_addr("web").unwrap();
    let mut failures = Vec::new();
    let cases = manifest(&dir);
    let cases: Vec<&Case> = cases.iter().filter(|c| c.file.ends_with(".http")).collect();
    assert!(cases.len() > 50, "only {} HTTP/1 cases", cases.len());
    for case in cases {
        let Outcome::Status(status) = case.outcome else {
            panic!("{}: an HTTP/1 case gets a status", case.file);
        };
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
        let got = statuses(&answer);
        let expected: Vec<u16> = match case.closes {
            true => vec![status],
            false => vec![status, 200],
        };
        if !closed || got != expected {
            failures.push(format!(
                "{}: statuses {got:?}, expected {expected:?} (closed: {closed}): {}",
                case.file,
                shown(&answer)
            ));
        }
        check_upstream(case, &capture, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.shutdown().await;
}

/// What the client sees of stream `stream`: its response status, its reset
/// or the connection's GOAWAY; `None` when the connection ends (or 5 s
/// pass) without any.
async fn h2_outcome(s: &mut TcpStream, stream: u32) -> Option<Result<Outcome, String>> {
    let read =
        async {
            loop {
                let f = h2::read(s).await.ok()?;
                match f.kind {
                    h2::HEADERS if f.stream == stream => {
                        return Some(h2::status(&f.payload).map(Outcome::Status).ok_or_else(
                            || format!("undecoded response head {}", shown(&f.payload)),
                        ));
                    }
                    h2::RST_STREAM if f.stream == stream => {
                        return Some(Ok(Outcome::Reset(f.error_code()?)));
                    }
                    h2::GOAWAY => return Some(Ok(Outcome::GoAway(f.error_code()?))),
                    _ => {}
                }
            }
        };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// Whether the peer closes the connection within 5 s (frames before the
/// end are skipped).
async fn h2_closes(s: &mut TcpStream) -> bool {
    let drain = async { while h2::read(s).await.is_ok() {} };
    tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_ok()
}

#[tokio::test]
async fn every_http2_corpus_case_gets_its_answer_and_upstream_bytes() {
    let dir = corpus_dir();
    let (proxy, capture) = proxy_and_capture().await;
    let addr = proxy.frontend_addr("web").unwrap();
    let mut failures = Vec::new();
    let cases = manifest(&dir);
    let cases: Vec<&Case> = cases.iter().filter(|c| c.file.ends_with(".h2")).collect();
    assert!(cases.len() > 20, "only {} HTTP/2 cases", cases.len());
    for case in cases {
        let text = std::fs::read_to_string(dir.join(&case.file)).unwrap();
        let request = H2Case::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let mut s = h2::connect(addr).await;
        // One write: h2 sees the whole stream at once, as a client that
        // sends everything before the proxy answers.
        s.write_all(&request.frames(1)).await.unwrap();
        match h2_outcome(&mut s, 1).await {
            Some(Ok(got)) if got == case.outcome => {}
            got => failures.push(format!(
                "{}: got {got:?}, expected {:?}",
                case.file, case.outcome
            )),
        }
        if case.closes {
            if !h2_closes(&mut s).await {
                failures.push(format!("{}: the connection stays open", case.file));
            }
        } else {
            // The connection still serves: a probe on the next stream.
            let flags = h2::END_HEADERS | h2::END_STREAM;
            let probe = h2::frame(h2::HEADERS, flags, 3, &h2::get("/probe"));
            let sent = s.write_all(&probe).await;
            let got = match sent {
                Ok(()) => h2_outcome(&mut s, 3).await,
                Err(e) => Some(Err(e.to_string())),
            };
            if !matches!(got, Some(Ok(Outcome::Status(200)))) {
                failures.push(format!("{}: the probe got {got:?}", case.file));
            }
        }
        drop(s);
        check_upstream(case, &capture, &mut failures).await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    proxy.shutdown().await;
}

/// The one 2.2 row that cannot always hold before forwarding: when the
/// DATA that contradicts `content-length` comes after the request went
/// upstream, the stream is reset and the upstream request aborted (R3):
/// the server sees a body cut short and the connection end, never a
/// complete request.
#[tokio::test]
async fn a_content_length_contradicted_after_forwarding_aborts_the_upstream_request() {
    let (proxy, capture) = proxy_and_capture().await;
    let mut s = h2::connect(proxy.frontend_addr("web").unwrap()).await;
    let head = H2Case::parse(
        ":method: POST\n:scheme: http\n:authority: a\n:path: /\ncontent-length: 10\n",
    )
    .unwrap();
    let mut block = Vec::new();
    for (name, value) in &head.fields {
        h2::literal(name, value, &mut block);
    }
    s.write_all(&h2::frame(h2::HEADERS, h2::END_HEADERS, 1, &block))
        .await
        .unwrap();
    s.write_all(&h2::frame(h2::DATA, 0, 1, b"hello"))
        .await
        .unwrap();
    let forwarded: &[u8] = b"POST / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 127.0.0.1\r\n\
        x-forwarded-proto: http\r\nx-forwarded-host: a\r\ncontent-length: 10\r\n\r\nhello";
    eventually("the head and 5 bytes reach the server", || async {
        capture.read.load(Ordering::SeqCst) == forwarded.len()
    })
    .await;
    // 6 more bytes: 11 in all, one past content-length.
    s.write_all(&h2::frame(h2::DATA, h2::END_STREAM, 1, b"world!"))
        .await
        .unwrap();
    let got = h2_outcome(&mut s, 1).await;
    assert!(
        matches!(got, Some(Ok(Outcome::Reset(1)))),
        "expected RST_STREAM PROTOCOL_ERROR, got {got:?}"
    );
    capture.settle().await;
    assert_eq!(
        capture.take().iter().map(|b| shown(b)).collect::<Vec<_>>(),
        [shown(forwarded)],
        "the server got the head and 5 of 10 body bytes, then the end"
    );
    drop(s);
    proxy.shutdown().await;
}
