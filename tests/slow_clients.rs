//! Slow clients over real sockets, with short configured deadlines: a body
//! that stops arriving (`body_idle`) and a client that stops reading
//! (`write_idle`); and a client that leaves while its request waits for
//! the server. In each case the upstream request is aborted, never ended
//! cleanly, and its connection is closed rather than pooled.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{eventually, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

fn config(server: SocketAddr, timeouts: &str) -> String {
    format!(
        "[global]\naccess_log = \"off\"\ngrace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         timeouts = {{ {timeouts} }}\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{server}\"\n"
    )
}

/// A server that records every byte of one connection until it closes, and
/// never answers.
struct Recorder {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    closed: Arc<AtomicBool>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (r, c) = (Arc::clone(&received), Arc::clone(&closed));
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => r.lock().await.extend_from_slice(&buf[..n]),
                }
            }
            c.store(true, Ordering::SeqCst);
        });
        Recorder {
            addr,
            received,
            closed,
        }
    }

    async fn text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().await).into_owned()
    }
}

/// Sends `head_and_start`, then nothing; returns what the proxy answered
/// before it closed the connection, and how long that took.
async fn stall_after(proxy: SocketAddr, head_and_start: &[u8]) -> (String, Duration) {
    let mut client = TcpStream::connect(proxy).await.unwrap();
    client.write_all(head_and_start).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection")
        .unwrap();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_the_upstream_request_is_cut_short() {
    let server = Recorder::start().await;
    let proxy = start_proxy(&config(server.addr, "body_idle = \"300ms\"")).await;
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789";
    let (answer, took) = stall_after(proxy.frontend_addr("web").unwrap(), head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    eventually("upstream connection closed", || async {
        server.closed.load(Ordering::SeqCst)
    })
    .await;
    let upstream = server.text().await;
    assert!(
        upstream.starts_with("POST /upload HTTP/1.1\r\n"),
        "{upstream}"
    );
    assert!(upstream.ends_with("\r\n\r\n0123456789"), "{upstream}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_chunked_body_that_stops_never_gets_a_terminal_chunk_upstream() {
    let server = Recorder::start().await;
    let proxy = start_proxy(&config(server.addr, "body_idle = \"300ms\"")).await;
    let head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n";
    let (answer, _) = stall_after(proxy.frontend_addr("web").unwrap(), head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    eventually("upstream connection closed", || async {
        server.closed.load(Ordering::SeqCst)
    })
    .await;
    let upstream = server.text().await;
    assert!(upstream.contains("0123456789"), "{upstream}");
    assert!(
        !upstream.ends_with("0\r\n\r\n"),
        "clean end sent: {upstream}"
    );
    proxy.shutdown().await;
}

/// A client that leaves while its whole request (no body) waits for the
/// server, on a connection that had not waited for anything before: the
/// proxy starts watching such a connection for the client leaving only a
/// moment into the request (`client_io::WATCH_AFTER`), then sees it gone
/// and aborts the upstream request, which closes its connection.
#[tokio::test]
async fn a_client_that_leaves_while_its_request_waits_aborts_the_upstream_request() {
    let server = Recorder::start().await;
    let proxy = start_proxy(&config(server.addr, "idle = \"60s\"")).await;
    // Connected and sent without yielding to the proxy, which serves on
    // this test's runtime: the request is there when the proxy accepts, so
    // the connection has waited for nothing when the request starts.
    let mut client = std::net::TcpStream::connect(proxy.frontend_addr("web").unwrap()).unwrap();
    std::io::Write::write_all(&mut client, b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    eventually("the request reached the server", || async {
        server.text().await.ends_with("\r\n\r\n")
    })
    .await;
    assert!(!server.closed.load(Ordering::SeqCst));
    drop(client);
    eventually("upstream connection closed", || async {
        server.closed.load(Ordering::SeqCst)
    })
    .await;
    assert!(server.text().await.starts_with("GET /wait HTTP/1.1\r\n"));
    proxy.shutdown().await;
}

/// A client that leaves once its request, body and all, waits for the
/// server, on a connection that has waited before (its body came in two
/// parts): the proxy sees it gone at once, not a moment into the request,
/// and aborts the upstream request.
#[tokio::test]
async fn a_client_that_leaves_once_its_body_is_sent_aborts_the_upstream_request_at_once() {
    let server = Recorder::start().await;
    let proxy = start_proxy(&config(server.addr, "idle = \"60s\"")).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nfirst")
        .await
        .unwrap();
    // Streamed on to the server: the proxy has read all there was, and
    // waits in the reactor for the rest.
    eventually("the body's first part reached the server", || async {
        server.text().await.ends_with("first")
    })
    .await;
    client.write_all(b"end").await.unwrap();
    eventually("the whole body reached the server", || async {
        server.text().await.ends_with("firstend")
    })
    .await;
    assert!(!server.closed.load(Ordering::SeqCst));
    drop(client);
    // Well before the watch of a connection that never waited would start
    // (`client_io::WATCH_AFTER`, 1 s).
    tokio::time::timeout(Duration::from_millis(800), async {
        while !server.closed.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the upstream connection closed at once");
    proxy.shutdown().await;
}

/// The next request on such a connection is read when the first one
/// ends, not when the watch for a leaving client would have started.
#[tokio::test]
async fn the_next_request_on_a_connection_whose_first_was_there_at_accept_is_read_at_once() {
    let b = common::Backend::start("b").await;
    let proxy = start_proxy(&config(b.addr, "idle = \"60s\"")).await;
    let request = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n";
    // Sent without yielding to the proxy, as above.
    let client = std::net::TcpStream::connect(proxy.frontend_addr("web").unwrap()).unwrap();
    std::io::Write::write_all(&mut &client, request).unwrap();
    client.set_nonblocking(true).unwrap();
    let mut client = TcpStream::from_std(client).unwrap();
    let mut answers = Vec::new();
    for n in 1..=3 {
        if n > 1 {
            client.write_all(request).await.unwrap();
        }
        // Well before the watch would start (`client_io::WATCH_AFTER`, 1 s).
        let answer = tokio::time::timeout(Duration::from_millis(500), read_answer(&mut client))
            .await
            .unwrap_or_else(|_| panic!("answer {n} came at once"));
        answers.push(answer);
    }
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    assert_eq!(b.hits(), 3);
    proxy.shutdown().await;
}

/// A request pipelined while the one before it waits for the server is
/// not taken for the client leaving: it waits in the socket, the watch
/// stops at its bytes, and it is answered after the first.
#[tokio::test]
async fn a_request_pipelined_while_the_first_waits_is_answered_after_it() {
    let b = common::Backend::start("b").await;
    let proxy = start_proxy(&config(b.addr, "idle = \"60s\"")).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    // A first exchange: the proxy's next read then waits, in the reactor,
    // so the watch of the next request starts at once.
    client
        .write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut client).await.starts_with("HTTP/1.1 200"));
    client
        .write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    eventually("the request is held", || async { b.held() == 1 }).await;
    client
        .write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    release_held(&b).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("GET /two") {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let released = text.find("b released").expect("the first answer");
    assert!(released < text.find("GET /two").unwrap(), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(b.hits(), 3);
    proxy.shutdown().await;
}

/// A client that sends two requests in one write and then closes its
/// side: the first, read with the second behind it, is answered in full,
/// as hyper answered it when it watched by reading (its buffer held the
/// second request, so it did not read).
#[tokio::test]
async fn a_request_with_a_next_one_behind_it_is_answered_though_the_client_closed_its_side() {
    let b = common::Backend::start("b").await;
    let proxy = start_proxy(&config(b.addr, "idle = \"60s\"")).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    eventually("the request is held", || async { b.held() == 1 }).await;
    release_held(&b).await;
    let held = read_answer(&mut client).await;
    assert!(held.starts_with("HTTP/1.1 200"), "{held}");
    assert!(held.contains("b released"), "{held}");
    proxy.shutdown().await;
}

/// Releases the backend's held requests until none is held (a request
/// counts as held just before it starts to wait for the release).
async fn release_held(b: &common::Backend) {
    eventually("the held request is released", || async {
        b.release();
        b.held() == 0
    })
    .await;
}

/// One response with a `Content-Length` body, read whole.
async fn read_answer(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = client.read(&mut buf).await.unwrap();
        assert!(n > 0, "the proxy closed the connection");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn a_body_sent_slowly_but_steadily_is_not_cut() {
    let b = common::Backend::start("b").await;
    let proxy = start_proxy(&config(b.addr, "body_idle = \"400ms\"")).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
        .await
        .unwrap();
    // Each byte comes well within `body_idle`, the whole body after it.
    for byte in b"abcd" {
        tokio::time::sleep(Duration::from_millis(150)).await;
        client.write_all(&[*byte]).await.unwrap();
    }
    let mut buf = vec![0u8; 4096];
    let n = client.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("body=4\n"), "{answer}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_and_the_upstream_connection_released() {
    // A server with an endless response, which notes when its connection
    // is closed under it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&released);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        while stream.write_all(&chunk).await.is_ok() {}
        flag.store(true, Ordering::SeqCst);
    });
    let proxy = start_proxy(&config(addr, "write_idle = \"300ms\"")).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The client reads nothing; the proxy's writes stall, then time out.
    eventually("upstream connection released", || async {
        released.load(Ordering::SeqCst)
    })
    .await;
    let state = proxy.runtime.registry().get("app", "s").unwrap();
    eventually("request ended", || async { state.counters.active() == 0 }).await;
    // What the client finds in its buffer ends short of the body.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
    let read = read.expect("client connection closed");
    assert!(
        read.is_err() || got.len() < 1024 * 1024 * 1024,
        "whole body arrived"
    );
    proxy.shutdown().await;
}
