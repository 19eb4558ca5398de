//! HTTP/2 abuse over real sockets, with a raw h2 client (the `h2` crate) or
//! hand-written frames: rapid reset, the premature-reset ratio, the
//! CONTINUATION flood, more streams than allowed, PING and SETTINGS floods.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::h2_frames as raw;
use common::{client, eventually, get, start_proxy, url};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A server that counts requests started and requests still running (a
/// request whose connection is dropped stops running); `/hold` never ends.
#[derive(Clone, Default)]
struct Upstream {
    started: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Upstream {
    async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            me.started.fetch_add(1, Ordering::SeqCst);
                            me.running.fetch_add(1, Ordering::SeqCst);
                            let _running = Running(Arc::clone(&me.running));
                            if req.uri().path() == "/hold" {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok\n"))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }
}

fn config(server: SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\ngrace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{server}\"\n"
    )
}

fn h2_request(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://x{path}"))
        .body(())
        .unwrap()
}

/// CPU time (user + system, in clock ticks) of this thread: the tests run
/// on a current-thread runtime, so that is the proxy and the client, and
/// not the other tests of this binary.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn rapid_reset_of_10000_streams_ends_in_goaway_and_cpu_returns_to_idle() {
    let upstream = Upstream::default();
    let proxy = start_proxy(&config(upstream.start().await)).await;
    let s = raw::connect(proxy.frontend_addr("web").unwrap()).await;
    let (mut reader, mut writer) = s.into_split();
    // Each stream: HEADERS, then RST_STREAM(CANCEL) at once.
    let block = raw::get("/");
    let attack = tokio::spawn(async move {
        for n in 0..10_000u32 {
            let id = 2 * n + 1;
            let flags = raw::END_STREAM | raw::END_HEADERS;
            let mut pair = raw::frame(raw::HEADERS, flags, id, &block);
            pair.extend(raw::frame(raw::RST_STREAM, 0, id, &8u32.to_be_bytes()));
            if writer.write_all(&pair).await.is_err() {
                break;
            }
        }
    });
    let code = tokio::time::timeout(Duration::from_secs(10), raw::goaway_code(&mut reader))
        .await
        .expect("the proxy answers the attack");
    assert_eq!(code, Some(ENHANCE_YOUR_CALM));
    // The attacker's writes end once the proxy closes (or all went out).
    attack.await.unwrap();
    let reached = upstream.started.load(Ordering::SeqCst);
    assert!(reached <= 200, "{reached} requests reached the server");
    // Idle again: a 300 ms window of this thread uses under 10% of a core.
    eventually("proxy CPU back to idle", || async {
        let before = thread_cpu_ticks();
        tokio::time::sleep(Duration::from_millis(300)).await;
        thread_cpu_ticks() - before <= 3
    })
    .await;
    let (status, _, _) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(status, 200, "the proxy still serves");
    proxy.shutdown().await;
}

#[tokio::test]
async fn streams_reset_right_after_they_start_trip_the_ratio_and_cancel_upstream() {
    let upstream = Upstream::default();
    let proxy = start_proxy(&config(upstream.start().await)).await;
    let tcp = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    let (mut sender, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    // Batches of 50 that reach the server, then are reset: the ratio trips
    // once more than half of at least 100 streams were reset.
    for batch in 1..=3 {
        let mut streams = Vec::new();
        for _ in 0..50 {
            let Ok(ready) = sender.clone().ready().await else {
                break;
            };
            sender = ready;
            match sender.send_request(h2_request("/hold"), false) {
                Ok((response, stream)) => streams.push((response, stream)),
                Err(_) => break,
            }
        }
        if streams.len() < 50 {
            assert!(batch > 2, "refused in batch {batch}");
            break;
        }
        eventually("batch reached the server", || async {
            upstream.running.load(Ordering::SeqCst) == 50
        })
        .await;
        for (_, stream) in &mut streams {
            stream.send_reset(h2::Reason::CANCEL);
        }
        eventually("upstream requests cancelled", || async {
            upstream.running.load(Ordering::SeqCst) == 0
        })
        .await;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the proxy ends the connection");
    // GOAWAY ENHANCE_YOUR_CALM, then the close.
    let error = ended.unwrap().expect_err("the connection ends in GOAWAY");
    assert!(error.is_go_away(), "{error}");
    assert_eq!(
        error.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error}"
    );
    assert!(upstream.started.load(Ordering::SeqCst) <= 150);
    proxy.shutdown().await;
}

const ENHANCE_YOUR_CALM: u32 = 0xb;
const REFUSED_STREAM: u32 = 0x7;

#[tokio::test]
async fn a_continuation_flood_ends_in_goaway() {
    let upstream = Upstream::default();
    let proxy = start_proxy(&config(upstream.start().await)).await;
    let s = raw::connect(proxy.frontend_addr("web").unwrap()).await;
    // A header block that never ends: HEADERS without END_HEADERS, then
    // CONTINUATION frames of 16 headers of 1000 bytes each.
    let mut headers = raw::get("/");
    let mut one = vec![0x00, 0x03];
    one.extend_from_slice(b"x-a");
    raw::length(1000, &mut one);
    one.extend(std::iter::repeat_n(b'a', 1000));
    let continuation = raw::frame(raw::CONTINUATION, 0, 1, &one.repeat(16));
    headers.extend_from_slice(&one);
    let (mut reader, mut writer) = s.into_split();
    let flood = tokio::spawn(async move {
        writer
            .write_all(&raw::frame(raw::HEADERS, raw::END_STREAM, 1, &headers))
            .await?;
        for _ in 0..10_000 {
            writer.write_all(&continuation).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let code = tokio::time::timeout(Duration::from_secs(10), raw::goaway_code(&mut reader))
        .await
        .expect("the proxy answers the flood");
    assert_eq!(code, Some(ENHANCE_YOUR_CALM));
    assert!(
        flood.await.unwrap().is_err(),
        "the proxy closed before 160 MB of header block arrived"
    );
    assert_eq!(upstream.started.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn more_streams_than_allowed_are_refused() {
    let upstream = Upstream::default();
    let proxy = start_proxy(&config(upstream.start().await)).await;
    let mut s = raw::connect(proxy.frontend_addr("web").unwrap()).await;
    let block = raw::get("/hold");
    let mut burst = Vec::new();
    for n in 0..101u32 {
        let flags = raw::END_STREAM | raw::END_HEADERS;
        burst.extend(raw::frame(raw::HEADERS, flags, 2 * n + 1, &block));
    }
    s.write_all(&burst).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let f = raw::read(&mut s).await.unwrap();
            if f.kind == raw::RST_STREAM {
                let code =
                    u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]);
                return (f.stream, code);
            }
        }
    })
    .await
    .expect("a stream is refused");
    assert_eq!(
        refused,
        (201, REFUSED_STREAM),
        "the 101st stream is refused"
    );
    eventually("100 streams reached the server", || async {
        upstream.running.load(Ordering::SeqCst) == 100
    })
    .await;
    assert_eq!(upstream.started.load(Ordering::SeqCst), 100);
    drop(s);
    eventually(
        "upstream requests cancelled with the connection",
        || async { upstream.running.load(Ordering::SeqCst) == 0 },
    )
    .await;
    proxy.shutdown().await;
}

/// Floods `kind` frames (each one asks for an answer) without reading any
/// answer: h2 keeps one answer pending and then stops reading, so the flood
/// backs up into the client's socket instead of the proxy's memory.
async fn flood_without_reading(kind: u8, payload: &[u8]) {
    let upstream = Upstream::default();
    let proxy = start_proxy(&config(upstream.start().await)).await;
    let s = raw::connect(proxy.frontend_addr("web").unwrap()).await;
    let (_reader, mut writer) = s.into_split();
    let one = raw::frame(kind, 0, 0, payload);
    let chunk = one.repeat(65_536 / one.len());
    let mut written = 0usize;
    let blocked = tokio::time::timeout(Duration::from_secs(3), async {
        // Far more answers than socket buffers can hold (256 MiB of frames).
        while written < 256 << 20 {
            writer.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await
    .is_err();
    assert!(
        blocked,
        "the proxy read {written} bytes of flood without answering"
    );
    // Other clients are served meanwhile.
    let (status, _, _) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(status, 200);
    drop(writer);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_ping_flood_backs_up_into_the_client() {
    flood_without_reading(raw::PING, &[7u8; 8]).await;
}

#[tokio::test]
async fn a_settings_flood_backs_up_into_the_client() {
    flood_without_reading(raw::SETTINGS, &[]).await;
}
