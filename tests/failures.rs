//! Failures over real sockets: retries on connect failure, 502/503/504,
//! the client-header timeout, and graceful shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Backend, client, eventually, get, refused_addr, served_by, start_proxy, url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(servers: &str, backend_extra: &str, frontend_extra: &str) -> String {
    format!(
        "[global]\naccess_log = \"off\"\ngrace = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n{frontend_extra}\n[[backend]]\nname = \"app\"\n{backend_extra}\n{servers}"
    )
}

fn server(name: &str, addr: impl std::fmt::Display) -> String {
    format!("[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n")
}

#[tokio::test]
async fn a_refused_server_is_retried_on_another_and_the_client_sees_200() {
    let good = Backend::start("good").await;
    let dead = refused_addr().await;
    let proxy = start_proxy(&config(
        &(server("dead", dead) + &server("good", good.addr)),
        "retries = 2",
        "",
    ))
    .await;
    let c = client();
    for _ in 0..10 {
        let (status, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
        assert_eq!((status, served_by(&headers).as_str()), (200, "good"));
    }
    let dead_state = proxy
        .runtime
        .registry()
        .get("app", "dead")
        .unwrap()
        .counters
        .snapshot();
    assert!(dead_state.connection_errors >= 1);
    assert_eq!(dead_state.retries, dead_state.connection_errors);
    proxy.shutdown().await;
}

/// Connect failures of server `name` of backend `app` (the CSV's `econ`).
fn econ(proxy: &switchyard::app::Running, name: &str) -> u64 {
    let state = proxy.runtime.registry().get("app", name).unwrap();
    state.counters.snapshot().connection_errors
}

#[tokio::test]
async fn when_no_connection_can_be_made_the_answer_is_a_quick_503_and_each_failure_counts() {
    for (retries, requests) in [(1, 1), (5, 3)] {
        let proxy = start_proxy(&config(
            &(server("a", refused_addr().await) + &server("b", refused_addr().await)),
            &format!("retries = {retries}"),
            "",
        ))
        .await;
        for _ in 0..requests {
            let started = Instant::now();
            let (status, headers, body) = get(&client(), &url(&proxy, "web", "/")).await;
            assert_eq!(status, 503, "retries = {retries}");
            assert_eq!(headers.get("retry-after").unwrap(), "1");
            assert!(body.starts_with("503 Service Unavailable"), "{body}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        // Each request tried both servers once (retries go to other servers).
        let counts = (econ(&proxy, "a"), econ(&proxy, "b"));
        assert_eq!(counts, (requests, requests), "retries = {retries}");
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn no_server_gives_503_with_retry_after() {
    let proxy = start_proxy(&config(
        &(server("a", "127.0.0.1:9") + "state = \"maint\"\n"),
        "",
        "",
    ))
    .await;
    let (status, headers, body) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(status, 503);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert!(body.contains("no server is available"), "{body}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_server_that_never_answers_gives_504_after_the_response_timeout() {
    let slow = Backend::start("slow").await;
    let proxy = start_proxy(&config(
        &server("slow", slow.addr),
        "timeouts = { response = \"200ms\" }",
        "",
    ))
    .await;
    let (status, _, _) = get(&client(), &url(&proxy, "web", "/hold")).await;
    assert_eq!(status, 504);
    let errors = proxy
        .runtime
        .registry()
        .get("app", "slow")
        .unwrap()
        .counters
        .snapshot()
        .response_errors;
    assert_eq!(errors, 1);
    slow.release();
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_server_that_closes_without_answering_gives_502() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            // Garbage instead of a status line, then close.
            let _ = stream.write_all(b"NOT HTTP\r\n\r\n").await;
        }
    });
    let proxy = start_proxy(&config(&server("bad", addr), "", "")).await;
    let (status, _, _) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(status, 502);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_slow_request_head_is_cut_by_the_client_header_timeout() {
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(
        &server("b", b.addr),
        "",
        "timeouts = { client_header = \"300ms\" }",
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The proxy closes the connection (with or without a 408) well before 5 s.
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(b.hits(), 0, "an incomplete head never reaches a server");
    proxy.shutdown().await;
}

/// A client that connects and sends nothing is held by the kernel until
/// its deferral ends (`TCP_DEFER_ACCEPT`, about a second), then handed to
/// the proxy, which closes it when `client_header` has passed.
#[tokio::test]
async fn a_client_that_sends_nothing_is_closed_after_the_deferral_and_the_client_header_timeout() {
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(
        &server("b", b.addr),
        "",
        "timeouts = { client_header = \"300ms\" }",
    ))
    .await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 10 s");
    assert!(buf.is_empty(), "nothing is answered: {buf:?}");
    // The kernel's deferral, then the head deadline.
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert_eq!(b.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(
        &server("b", b.addr),
        "",
        "timeouts = { client_header = \"5s\", idle = \"300ms\" }",
    ))
    .await;
    let mut stream = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_from = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(4), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "idle connection still open after 4 s");
    assert!(idle_from.elapsed() >= Duration::from_millis(250));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_request_that_reached_a_server_is_never_sent_again() {
    // The first server reads the request and hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rude = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
        }
    });
    let good = Backend::start("good").await;
    let proxy = start_proxy(&config(
        &(server("rude", rude) + &server("good", good.addr)),
        "retries = 2",
        "",
    ))
    .await;
    let (status, _, _) = get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!(
        status, 502,
        "the request reached the first server: no retry"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(good.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unresolvable_server_name_is_down_and_the_proxy_still_starts() {
    let good = Backend::start("good").await;
    let proxy = start_proxy(&config(
        &(server("ghost", "ghost.invalid:80")
            + &server("named", format!("localhost:{}", good.addr.port()))),
        "",
        "",
    ))
    .await;
    let ghost = proxy.runtime.registry().get("app", "ghost").unwrap();
    assert_eq!(ghost.health(), switchyard::state::Health::Down);
    assert_eq!(ghost.check_status().reason.as_deref(), Some("dns"));
    let c = client();
    for _ in 0..4 {
        let (status, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
        assert_eq!(
            (status, served_by(&headers).as_str()),
            (200, "good"),
            "a host name resolves"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_idle_keep_alive_connections_at_once() {
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(
        &server("b", b.addr),
        "",
        "timeouts = { idle = \"60s\" }",
    ))
    .await;
    let mut idle = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let held = {
        let u = url(&proxy, "web", "/hold");
        tokio::spawn(async move { get(&client(), &u).await })
    };
    eventually("request in flight", || async { b.held() == 1 }).await;
    let shutdown = tokio::spawn(proxy.shutdown());
    // The idle connection closes while the other request is still running.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(!shutdown.is_finished());
    b.release();
    assert_eq!(held.await.unwrap().0, 200);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_an_in_flight_request_and_stops_accepting() {
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(&server("b", b.addr), "", "")).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let held = {
        let u = url(&proxy, "web", "/hold");
        tokio::spawn(async move { get(&client(), &u).await })
    };
    eventually("request in flight", || async { b.held() == 1 }).await;
    let shutdown = tokio::spawn(proxy.shutdown());
    eventually("listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    b.release();
    let (status, _, body) = held.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "b released\n"));
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
}
