//! Bodies stream both ways without buffering; WebSocket tunnels; h2c clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{Backend, start_proxy};
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message;

const MB: usize = 1024 * 1024;

fn config(addr: std::net::SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{addr}\"\n"
    )
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// `n` bytes generated 64 KiB at a time as the body is read.
fn generated(n: usize) -> BoxBody<Bytes, Infallible> {
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let take = left.min(chunk.len());
                (
                    Ok::<_, Infallible>(Frame::data(chunk.slice(..take))),
                    left - take,
                )
            })
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_body_streams_both_ways_in_bounded_memory() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let base = format!("http://{}", proxy.frontend_addr("web").unwrap());
    let client = Client::builder(TokioExecutor::new()).build_http::<BoxBody<Bytes, Infallible>>();
    let before = rss();

    // Upload: the backend counts what it receives.
    let request = Request::post(format!("{base}/upload"))
        .body(generated(100 * MB))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&text),
        format!("s POST /upload body={}\n", 100 * MB)
    );

    // Download: count frames as they arrive, keeping none.
    let request = Request::get(format!("{base}/bytes/{}", 100 * MB))
        .body(generated(0))
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, Bytes::len);
    }
    assert_eq!(received, 100 * MB);

    let growth = rss().saturating_sub(before);
    assert!(
        growth < 40 * MB,
        "memory grew by {} MiB while streaming 200 MiB",
        growth / MB
    );
    let counters = proxy
        .runtime
        .registry()
        .get("app", "s")
        .unwrap()
        .counters
        .snapshot();
    assert_eq!(counters.bytes_in, 100 * MB as u64);
    assert!(counters.bytes_out >= 100 * MB as u64);
    proxy.shutdown().await;
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    ws.send(message).await.unwrap();
                }
            });
        }
    });
    let proxy = start_proxy(&config(addr)).await;
    let front = proxy.frontend_addr("web").unwrap();
    let stream = tokio::net::TcpStream::connect(front).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(format!("ws://{front}/chat"), stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "switchyard"] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    let state = proxy.runtime.registry().get("app", "s").unwrap();
    assert_eq!(state.counters.snapshot().tunnels, 1);
    ws.close(None).await.unwrap();
    // Read the server's close and the end of the stream, then hang up.
    while ws.next().await.is_some_and(|m| m.is_ok()) {}
    drop(ws);
    common::eventually("tunnel closed", || async {
        state.counters.snapshot().tunnels == 0
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_h2c_client_is_served_over_http1_upstream() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<BoxBody<Bytes, Infallible>>();
    let url = format!("http://{}/h2?x=1", proxy.frontend_addr("web").unwrap());
    let response = client
        .request(Request::get(url).body(generated(0)).unwrap())
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let seen = backend.captured().pop().unwrap();
    assert_eq!(seen.target, "/h2?x=1");
    let host = seen.headers.get("host").unwrap().to_str().unwrap();
    assert!(
        host.starts_with("127.0.0.1:"),
        "Host from :authority, got {host}"
    );
    proxy.shutdown().await;
}
