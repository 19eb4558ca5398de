//! Size and count limits (HARDENING.md 2.3) over raw TCP: at each limit a
//! request passes, one byte or field past it gets 414, 431 or 413 and the
//! connection closes; limits follow `[frontend.limits]` and `max_body`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Backend, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(addr: SocketAddr, frontend: &str, backend: &str) -> String {
    format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n{frontend}\n[[backend]]\nname = \"app\"\n{backend}\n[[backend.server]]\nname = \"s\"\naddress = \"{addr}\"\n"
    )
}

/// Sends `raw`, reads until the proxy closes; returns the first status.
async fn status_of(proxy: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    // The proxy may answer and close before reading everything.
    let _ = stream.write_all(raw).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection stays open");
    let text = String::from_utf8_lossy(&out).into_owned();
    text.get(9..12).unwrap_or("none").to_owned()
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n{headers}Connection: close\r\n\r\n").into_bytes()
}

/// Five header lines whose values add up to `total` bytes.
fn head_lines(total: usize) -> String {
    let first = total - 4 * 189;
    (0..5)
        .map(|i| {
            format!(
                "X-{i}: {}\r\n",
                "x".repeat(if i == 0 { first } else { 189 })
            )
        })
        .collect()
}

#[tokio::test]
async fn configured_head_limits_hold_to_the_byte() {
    let backend = Backend::start("s").await;
    let limits =
        "limits = { max_uri = 100, max_head = 1024, max_headers = 10, max_header_line = 200 }";
    let proxy = start_proxy(&config(backend.addr, limits, "")).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let x = |n: usize| "x".repeat(n);
    let fields = |n: usize| (0..n).map(|i| format!("X-{i}: 1\r\n")).collect::<String>();
    // Host and Connection are two of the fields.
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("target at max_uri", get(&format!("/{}", x(99)), ""), "200"),
        (
            "target past max_uri",
            get(&format!("/{}", x(100)), ""),
            "414",
        ),
        ("fields at max_headers", get("/", &fields(8)), "200"),
        ("fields past max_headers", get("/", &fields(9)), "431"),
        (
            "line at max_header_line",
            get("/", &format!("X: {}\r\n", x(197))),
            "200",
        ),
        (
            "line past max_header_line",
            get("/", &format!("X: {}\r\n", x(198))),
            "431",
        ),
        // 16 (request line) + 9 (host) + 19 (connection) + 2, and five lines
        // of `x-i: ` + value + CRLF: 46 + 35 + 943 = 1024 bytes.
        ("head at max_head", get("/", &head_lines(943)), "200"),
        ("head past max_head", get("/", &head_lines(944)), "431"),
    ];
    for (name, raw, expected) in cases {
        assert_eq!(status_of(addr, &raw).await, expected, "{name}");
    }
    assert_eq!(backend.hits(), 4, "only the requests within the limits");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_declared_body_over_max_body_gets_413_before_any_server_is_asked() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr, "", "max_body = \"1KiB\"")).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let post = |n: usize| {
        let mut raw = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        raw.extend(std::iter::repeat_n(b'x', n));
        raw
    };
    assert_eq!(status_of(addr, &post(1024)).await, "200");
    assert_eq!(status_of(addr, &post(1025)).await, "413");
    assert_eq!(backend.hits(), 1);
    assert_eq!(
        backend.connections(),
        1,
        "no connection for the refused one"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_streamed_body_over_max_body_gets_413_and_the_upstream_request_is_aborted() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let received = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        all
    });
    let proxy = start_proxy(&config(server, "", "max_body = 10")).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let raw = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n";
    assert_eq!(status_of(addr, raw).await, "413");
    let upstream = String::from_utf8_lossy(&received.await.unwrap()).into_owned();
    assert!(
        upstream.starts_with("POST /up HTTP/1.1\r\n"),
        "{upstream:?}"
    );
    assert!(
        upstream.contains("hello "),
        "the first 6 bytes streamed: {upstream:?}"
    );
    assert!(
        !upstream.contains("world!"),
        "nothing past the limit: {upstream:?}"
    );
    assert!(
        !upstream.ends_with("0\r\n\r\n"),
        "never a clean end (R3): {upstream:?}"
    );
    proxy.shutdown().await;
}

#[test]
fn limits_out_of_range_are_named() {
    let text = config(
        "127.0.0.1:9".parse().unwrap(),
        "limits = { max_uri = 65535, max_head = 1048577, max_headers = 1001, max_header_line = 1048577 }",
        "max_body = \"1025GiB\"",
    );
    let errors = switchyard::config::parse(&text, std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    for key in [
        "frontend[web].limits.max_uri: expected an integer from 16 to 65534",
        "frontend[web].limits.max_head: expected an integer from 1024 to 1048576",
        "frontend[web].limits.max_headers: expected an integer from 1 to 1000",
        "frontend[web].limits.max_header_line: expected an integer from 64 to 1048576",
        "backend[app].max_body: expected a size from 1 byte to 1024GiB",
    ] {
        assert!(errors.contains(key), "{key}\n{errors}");
    }
}
