//! HTTP/2 streams run in their connection's task (`proxy::h2_streams`):
//! many at once on one connection, more than it keeps slots for, each with
//! its own answer and bodies both ways, and a drain that lets every one of
//! them finish. Over real sockets, with hyper's HTTP/2 client (h2c).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Backend, eventually, start_proxy};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

fn config(backend: std::net::SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\ngrace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"{backend}\"\n"
    )
}

/// One HTTP/2 connection (prior knowledge) to `addr`.
async fn h2_connection(addr: std::net::SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends `request` on `sender` and reads the whole answer.
async fn exchange(
    mut sender: SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> (u16, Bytes) {
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// 100 streams at once on one connection (hyper's limit, past the 32 a
/// connection takes into its slots from one poll, so some run in tasks of
/// their own): every one
/// gets its own answer, request bodies and answers past the 64 KiB flow
/// control window included.
#[tokio::test]
async fn a_hundred_streams_at_once_each_get_their_own_answer_with_bodies_both_ways() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let sender = h2_connection(proxy.frontend_addr("web").unwrap()).await;
    let mut streams = Vec::new();
    for i in 0..100usize {
        let sender = sender.clone();
        streams.push(tokio::spawn(async move {
            let (request, expected) = if i % 2 == 0 {
                let size = i * 1_500 + 1;
                let request = Request::get(format!("http://x/bytes/{size}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                (request, Err(size))
            } else {
                let body = Bytes::from(vec![b'a' + (i % 26) as u8; i * 1_300]);
                let request = Request::post(format!("http://x/stream/{i}"))
                    .body(Full::new(body.clone()))
                    .unwrap();
                let answer = format!("s POST /stream/{i} body={}\n", body.len());
                (request, Ok(answer))
            };
            let (status, body) = exchange(sender, request).await;
            assert_eq!(status, 200, "stream {i}");
            match expected {
                Err(size) => assert_eq!(body.len(), size, "stream {i}'s answer"),
                Ok(answer) => assert_eq!(body, answer.as_bytes(), "stream {i}'s answer"),
            }
        }));
    }
    for stream in streams {
        tokio::time::timeout(Duration::from_secs(20), stream)
            .await
            .expect("every stream is answered")
            .unwrap();
    }
    // The connection serves on once they are done.
    let (status, body) = exchange(
        sender,
        Request::get("http://x/after")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"s GET /after body=0\n"[..]));
    proxy.shutdown().await;
}

/// A drain while 80 streams of one connection wait for their server: the
/// listener closes, every stream still gets its answer, and the shutdown
/// ends after the last of them.
#[tokio::test]
async fn a_drain_lets_every_stream_in_flight_finish() {
    let backend = Backend::start("s").await;
    let proxy = start_proxy(&config(backend.addr)).await;
    let addr = proxy.frontend_addr("web").unwrap();
    let sender = h2_connection(addr).await;
    let held: Vec<_> = (0..80)
        .map(|_| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let request = Request::get("http://x/hold")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                exchange(sender, request).await
            })
        })
        .collect();
    eventually("80 streams at the server", || async {
        backend.held() == 80
    })
    .await;
    let shutdown = tokio::spawn(proxy.shutdown());
    eventually("listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!shutdown.is_finished(), "the drain waits for the streams");
    backend.release();
    for stream in held {
        let (status, body) = stream.await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"s released\n"[..]));
    }
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("the drain ends with the last stream")
        .unwrap();
}
