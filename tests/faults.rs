//! Backend faults over real sockets, beside `failures.rs` (refusals,
//! timeouts, garbage, shutdown): a server that resets before or after its
//! response head, a pooled connection the server closed, every server DOWN,
//! and one of two servers killed under load.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, client, eventually, get, refused_addr, start_proxy, url};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(servers: &[(&str, SocketAddr)], backend_extra: &str) -> String {
    let mut text = format!(
        "[global]\naccess_log = \"off\"\ngrace = \"1s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\n{backend_extra}\n"
    );
    for (name, addr) in servers {
        text.push_str(&format!(
            "[[backend.server]]\nname = \"{name}\"\naddress = \"{addr}\"\n"
        ));
    }
    text
}

/// A server that answers each connection with `script` (reading the request
/// first), then resets the connection (RST, not FIN).
async fn resetting_server(script: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(script).await;
            // SO_LINGER 0 makes the close a reset; blocking on drop is fine here.
            #[expect(deprecated, reason = "a reset is what the test needs")]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn a_reset_before_the_response_head_gives_502_without_a_resend() {
    let server = resetting_server(b"").await;
    let good = Backend::start("good").await;
    let proxy = start_proxy(&config(
        &[("rst", server), ("good", good.addr)],
        "balance = \"roundrobin\"\nretries = 2",
    ))
    .await;
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&c, &url(&proxy, "web", "/")).await.0);
    }
    statuses.sort_unstable();
    // Round robin: two requests reached the resetting server and got 502;
    // a request that reached a server is never sent to another.
    assert_eq!(statuses, [200, 200, 502, 502]);
    assert_eq!(good.hits(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_reset_after_the_response_head_never_ends_the_body_cleanly() {
    let server =
        resetting_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789").await;
    let proxy = start_proxy(&config(&[("rst", server)], "")).await;
    let response = client()
        .request(
            http::Request::get(url(&proxy, "web", "/"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the head was relayed");
    let body = response.into_body().collect().await;
    assert!(body.is_err(), "a cut body must not look complete");
    let state = proxy.runtime.registry().get("app", "rst").unwrap();
    eventually("counted as a response error", || async {
        state.counters.snapshot().response_errors == 1
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_server_is_replaced_transparently() {
    // Answers one request per connection with keep-alive, then closes it:
    // the proxy's pooled connection is dead when the next request comes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let proxy = start_proxy(&config(&[("s", addr)], "")).await;
    let c = client();
    for _ in 0..5 {
        let (status, _, body) = get(&c, &url(&proxy, "web", "/")).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        5,
        "a fresh connection each"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn every_server_down_gives_a_fast_503() {
    let (a, b) = (refused_addr().await, refused_addr().await);
    let proxy = start_proxy(&config(
        &[("a", a), ("b", b)],
        "check = { kind = \"tcp\", interval = \"50ms\", timeout = \"50ms\", fall = 1, rise = 1 }",
    ))
    .await;
    for name in ["a", "b"] {
        let state = proxy.runtime.registry().get("app", name).unwrap();
        eventually("server DOWN", || async {
            state.health() == switchyard::state::Health::Down
        })
        .await;
    }
    let c = client();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, headers, _) = get(&c, &url(&proxy, "web", "/")).await;
        assert_eq!(status, 503);
        assert!(headers.contains_key("retry-after"));
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_servers_under_load_fails_at_most_its_requests_in_flight() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let proxy = start_proxy(&config(
        &[("a", a.addr), ("b", b.addr)],
        "retries = 1\npassive_fall = 1\n\
         check = { kind = \"http\", path = \"/\", interval = \"100ms\", timeout = \"100ms\", fall = 1, rise = 1 }",
    ))
    .await;
    let target = url(&proxy, "web", "/slow/5");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (target, stop, ok, failed) = (
            target.clone(),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        let (killed, after_kill) = (Arc::clone(&killed), Arc::clone(&after_kill));
        workers.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::SeqCst) {
                let request = http::Request::get(&target)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let outcome = match c.request(request).await {
                    Ok(r) if r.status() == 200 => r.into_body().collect().await.is_ok(),
                    Ok(_) | Err(_) => false,
                };
                if outcome {
                    ok.fetch_add(1, Ordering::SeqCst);
                    if killed.load(Ordering::SeqCst) {
                        after_kill.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    eventually("load on both servers", || async {
        a.hits() > 50 && b.hits() > 50
    })
    .await;
    let b_state = proxy.runtime.registry().get("app", "b").unwrap();
    let in_flight_on_b = b_state.counters.active();
    b.kill().await;
    killed.store(true, Ordering::SeqCst);
    eventually("traffic goes on without b", || async {
        after_kill.load(Ordering::SeqCst) > 200
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.load(Ordering::SeqCst);
    // Each of the 32 connections has at most one request in flight: only
    // those on b when it died may fail; every later one is served by a.
    assert!(
        failed <= 32,
        "{failed} failed; about {in_flight_on_b} were on b"
    );
    assert!(ok.load(Ordering::SeqCst) > 300);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_server_that_sends_a_broken_head_gives_502_and_is_not_reused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    // Content-Length and Transfer-Encoding together.
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\
                              Transfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n0\r\n\r\n",
                        )
                        .await;
                }
            });
        }
    });
    let proxy = start_proxy(&config(&[("s", addr)], "")).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &url(&proxy, "web", "/")).await.0, 502);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "never pooled");
    let _ = TcpStream::connect(addr).await;
    proxy.shutdown().await;
}

/// A server whose first connection answers one request, then reads the
/// next and closes without a byte of answer (its keep-alive ended while the
/// request was on the way); later connections answer and close. Records the
/// request line of every head it read.
async fn server_closing_after_one_answer() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut stream, _)) = listener.accept().await {
            let answers = if first { 1 } else { usize::MAX };
            first = false;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut answered = 0;
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let body_len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < end + 4 + body_len {
                            break;
                        }
                        buf.drain(..end + 4 + body_len);
                        log.lock()
                            .unwrap()
                            .push(head.lines().next().unwrap_or("").to_owned());
                        if answered == answers {
                            return; // closes with no answer
                        }
                        answered += 1;
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn one_server_config(addr: SocketAddr) -> String {
    format!(
        r#"[global]
access_log = "off"
[admin]
listen = "127.0.0.1:0"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"
[[backend]]
name = "app"
retries = 0
  [[backend.server]]
  name = "a"
  address = "{addr}"
"#
    )
}

/// HARDENING.md, stale pooled connection: a GET sent on a pooled connection
/// that the server closes without answering goes once more, on a fresh
/// connection, and the client sees the answer; a POST with a body is never
/// sent twice and gets 502.
#[tokio::test]
async fn a_get_on_a_pooled_connection_the_server_closed_is_sent_again_a_post_is_not() {
    let (addr, seen) = server_closing_after_one_answer().await;
    let proxy = start_proxy(&one_server_config(addr)).await;
    let c = client();
    let (status, _, body) = get(&c, &url(&proxy, "web", "/first")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, _, body) = get(&c, &url(&proxy, "web", "/again")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "ok"),
        "answered on a fresh connection"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET /first HTTP/1.1",
            "GET /again HTTP/1.1",
            "GET /again HTTP/1.1"
        ]
    );
    proxy.shutdown().await;

    let (addr, seen) = server_closing_after_one_answer().await;
    let proxy = start_proxy(&one_server_config(addr)).await;
    let (status, _, _) = get(&c, &url(&proxy, "web", "/first")).await;
    assert_eq!(status, 200);
    let post = http::Request::post(url(&proxy, "web", "/order"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
        .unwrap();
    let (status, _, _) = common::send(&c, post).await;
    assert_eq!(status, 502, "a body is never sent twice");
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /first HTTP/1.1", "POST /order HTTP/1.1"]
    );
    proxy.shutdown().await;
}
