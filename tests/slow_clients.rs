//! Slow clients over real sockets, with short configured deadlines: a body
//! that stops arriving (`body_idle`) and a client that stops reading
//! (`write_idle`). In both cases the upstream request is aborted, never
//! ended cleanly, and its connection is closed rather than pooled.
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
