//! Ambiguous and malformed requests beyond the data corpus (tests/corpus.rs,
//! which asserts each case's status, close and upstream bytes): pipelined
//! tails, bodies that break mid-stream, bad response framing (R1-R4 of
//! HARDENING.md).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Backend, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{addr}\"\n"
    )
}

/// Sends raw bytes and returns everything the proxy answers until it closes.
async fn exchange(proxy: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "connection not closed after answering {:?}",
        String::from_utf8_lossy(raw)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_rejected_request_closes_the_connection_and_its_pipelined_tail_is_never_parsed() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let answer = exchange(
        proxy.frontend_addr("web").unwrap(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1").count(),
        1,
        "one answer only: {answer}"
    );
    assert_eq!(backend.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_smuggling_head_pipelined_behind_a_clean_one_in_the_same_read_is_refused() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let answer = exchange(
        proxy.frontend_addr("web").unwrap(),
        b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /second HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    )
    .await;
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "400"], "{answer}");
    let targets: Vec<String> = backend
        .captured()
        .iter()
        .map(|c| c.target.clone())
        .collect();
    assert_eq!(targets, ["/first"]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_bare_lf_request_reaches_the_server_reframed_with_crlf() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a full head");
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8(head).unwrap()
    });
    let proxy = start_proxy(&config(addr)).await;
    let answer = exchange(
        proxy.frontend_addr("web").unwrap(),
        b"GET /lf HTTP/1.1\nHost: a\nConnection: close\n\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = seen.await.unwrap();
    assert!(head.starts_with("GET /lf HTTP/1.1\r\n"), "{head:?}");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "every line ends with CRLF: {head:?}"
    );
    proxy.shutdown().await;
}

/// A raw server that records what it receives until the proxy hangs up.
async fn recording_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        all
    });
    (addr, handle)
}

#[tokio::test]
async fn a_body_that_breaks_mid_stream_aborts_the_upstream_request() {
    let (addr, received) = recording_server().await;
    let proxy = start_proxy(&config(addr)).await;
    let mut client = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer)).await;
    let upstream = String::from_utf8_lossy(&received.await.unwrap()).into_owned();
    assert!(
        upstream.starts_with("POST /upload HTTP/1.1\r\n"),
        "{upstream:?}"
    );
    assert!(
        !upstream.ends_with("0\r\n\r\n"),
        "never a clean end after a body error (R3): {upstream:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_response_with_bad_framing_gives_502() {
    for response in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(response).await;
            let _ = s.shutdown().await;
        });
        let proxy = start_proxy(&config(addr)).await;
        let answer = exchange(
            proxy.frontend_addr("web").unwrap(),
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 502"),
            "{:?} gave {answer:?}",
            String::from_utf8_lossy(response)
        );
        proxy.shutdown().await;
    }
}
