//! The HTTP/1.1 client towards servers, against scripted servers that write
//! exact bytes: every response framing RFC 9112 allows, interim answers,
//! broken heads and bodies (R4), how requests are framed again (R2), a
//! server that answers while the request body still streams, and idle
//! pooled connections the server closed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{client, eventually, send, start_proxy, url};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server read it: the connection's number (in accept
/// order) and the raw bytes, head and body.
type Seen = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// A server that answers the n-th request it reads (over all connections)
/// with `answers[n]` (the last one again when there are fewer), and closes
/// the connection after an answer whose `close` is set.
async fn scripted(answers: Vec<(&'static [u8], bool)>) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let answers = Arc::new(answers);
        let mut conn_no = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let (answers, log) = (Arc::clone(&answers), Arc::clone(&log));
            let conn = conn_no;
            conn_no += 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(request) = read_request(&mut stream, &mut buf).await {
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push((conn, request));
                        log.len() - 1
                    };
                    let (bytes, close) = answers[n.min(answers.len() - 1)];
                    if stream.write_all(bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Reads one request (head, and a body by `content-length` or chunked).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            let total = if head.contains("transfer-encoding: chunked") {
                buf[end + 4..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|at| end + 4 + at + 5)
            } else {
                Some(end + 4 + length.unwrap_or(0))
            };
            if let Some(total) = total.filter(|&t| buf.len() >= t) {
                return Some(buf.drain(..total).collect());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn config(addr: SocketAddr) -> String {
    format!(
        "[global]\naccess_log = \"off\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"app\"\n\
         [[backend]]\nname = \"app\"\nretries = 0\n\
         [[backend.server]]\nname = \"s\"\naddress = \"{addr}\"\n"
    )
}

fn text(seen: &Seen, n: usize) -> (usize, String) {
    let seen = seen.lock().unwrap();
    (seen[n].0, String::from_utf8_lossy(&seen[n].1).into_owned())
}

/// Each framing of RFC 9112 6.3 gives the body it delimits; the connection
/// is reused after every response that leaves it usable, and not after one
/// delimited by the close.
#[tokio::test]
async fn every_response_framing_is_relayed_and_the_connection_reused_when_it_may_be() {
    let (addr, seen) = scripted(vec![
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", false),
        (
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the close", true),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh", false),
    ])
    .await;
    let proxy = start_proxy(&config(addr)).await;
    let c = client();
    let get = |path: &str| http::Request::get(url(&proxy, "web", path));
    let empty = || Full::new(Bytes::new());
    let mut answers = Vec::new();
    for (method, path) in [
        ("GET", "/length"),
        ("GET", "/chunked"),
        ("GET", "/no-content"),
        ("GET", "/not-modified"),
        ("HEAD", "/head"),
        ("GET", "/interim"),
        ("GET", "/until-close"),
        ("GET", "/after"),
    ] {
        let request = get(path).method(method).body(empty()).unwrap();
        let (status, _, body) = send(&c, request).await;
        answers.push((status, body));
    }
    let expected = [
        (200, "hello"),
        (200, "hello world"),
        (204, ""),
        (304, ""),
        (200, ""),
        (200, "ok"),
        (200, "until the close"),
        (200, "fresh"),
    ];
    let answers: Vec<(u16, &str)> = answers.iter().map(|(s, b)| (*s, b.as_str())).collect();
    assert_eq!(answers, expected);
    // One connection up to the close-delimited body; a new one after it.
    let conns: Vec<usize> = (0..8).map(|n| text(&seen, n).0).collect();
    assert_eq!(conns, [0, 0, 0, 0, 0, 0, 0, 1]);
    // Every head went out with CRLF line ends and HTTP/1.1.
    let (_, head) = text(&seen, 4);
    assert!(head.starts_with("HEAD /head HTTP/1.1\r\n"), "{head}");
    assert!(!head.replace("\r\n", "").contains('\n'), "{head:?}");
    proxy.shutdown().await;
}

/// R4: a head the client cannot trust gives 502; a chunked body the decoder
/// cannot follow is cut, never ended cleanly.
#[tokio::test]
async fn broken_response_heads_give_502_and_broken_chunks_cut_the_body() {
    let heads: [&'static [u8]; 7] = [
        b"HTTP/1.1 200 OK\r\nx-a : b\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx-a: b\r\n folded\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabc",
    ];
    for head in heads {
        let (addr, _) = scripted(vec![(head, true)]).await;
        let proxy = start_proxy(&config(addr)).await;
        let (status, _, _) = common::get(&client(), &url(&proxy, "web", "/")).await;
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(head));
        proxy.shutdown().await;
    }
    let bodies: [&'static [u8]; 8] = [
        b"0x1\r\na\r\n0\r\n\r\n",
        b"+1\r\na\r\n0\r\n\r\n",
        b" 1\r\na\r\n0\r\n\r\n",
        b"1_0\r\na\r\n0\r\n\r\n",
        b"FFFFFFFFFFFFFFFFF1\r\na\r\n0\r\n\r\n",
        b"1\na\r\n0\r\n\r\n",
        b"1;a\nb\r\na\r\n0\r\n\r\n",
        b"1\r\nab0\r\n\r\n",
    ];
    for body in bodies {
        let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        answer.extend_from_slice(body);
        let answer: &'static [u8] = answer.leak();
        let (addr, _) = scripted(vec![(answer, true)]).await;
        let proxy = start_proxy(&config(addr)).await;
        let request = http::Request::get(url(&proxy, "web", "/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = client().request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let collected = response.into_body().collect().await;
        assert!(
            collected.is_err(),
            "{} ended cleanly",
            String::from_utf8_lossy(body)
        );
        proxy.shutdown().await;
    }
}

/// R2: the request is framed again from its body. An empty POST says
/// `content-length: 0`; a known length is sent as such; a body of unknown
/// length (h2 without `content-length`) goes chunked; a GET with a length
/// keeps its body (HARDENING.md 2.1 #22).
#[tokio::test]
async fn requests_are_framed_again_from_their_bodies() {
    let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (addr, seen) = scripted(vec![(ok, false)]).await;
    let proxy = start_proxy(&config(addr)).await;
    let c = client();
    let post = |path: &str, body: &'static str| {
        http::Request::post(url(&proxy, "web", path))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    assert_eq!(send(&c, post("/empty", "")).await.0, 200);
    assert_eq!(send(&c, post("/known", "abc")).await.0, 200);
    let get_with_body = http::Request::get(url(&proxy, "web", "/get-body"))
        .body(Full::new(Bytes::from_static(b"xyz")))
        .unwrap();
    assert_eq!(send(&c, get_with_body).await.0, 200);

    // h2c, a body of two frames and no content-length.
    let tcp = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let frames = futures_util::stream::iter([
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"abc"))),
        Ok(Frame::data(Bytes::from_static(b"defgh"))),
    ]);
    let request = http::Request::post("http://x/streamed")
        .body(StreamBody::new(frames))
        .unwrap();
    let response = h2.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    let requests: Vec<String> = (0..4).map(|n| text(&seen, n).1).collect();
    assert!(requests[0].starts_with("POST /empty HTTP/1.1\r\n"));
    assert!(
        requests[0].contains("\r\ncontent-length: 0\r\n"),
        "{}",
        requests[0]
    );
    assert!(
        requests[1].contains("\r\ncontent-length: 3\r\n"),
        "{}",
        requests[1]
    );
    assert!(requests[1].ends_with("\r\n\r\nabc"), "{}", requests[1]);
    assert!(
        requests[2].contains("\r\ncontent-length: 3\r\n"),
        "{}",
        requests[2]
    );
    assert!(requests[2].ends_with("\r\n\r\nxyz"), "{}", requests[2]);
    assert!(
        requests[3].contains("\r\ntransfer-encoding: chunked\r\n"),
        "{}",
        requests[3]
    );
    assert!(
        requests[3].ends_with("\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{:?}",
        requests[3]
    );
    for request in &requests {
        assert_eq!(
            request.matches("content-length").count()
                + request.matches("transfer-encoding").count(),
            1,
            "{request}"
        );
    }
    proxy.shutdown().await;
}

/// A server that answers at once and echoes each chunk of the request body
/// as it comes: the client sees the answer before its request ended, and
/// each echo before it sends the next piece.
#[tokio::test]
async fn a_server_may_answer_while_the_request_body_still_streams() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let mut body: Vec<u8> = buf.split_off(end + 4);
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // Echo each complete chunk as it arrives, until the last one.
        loop {
            if let Some(line) = body.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&body[..line]).unwrap(), 16).unwrap();
                if size == 0 {
                    stream.write_all(b"0\r\n\r\n").await.unwrap();
                    return;
                }
                if body.len() >= line + 2 + size + 2 {
                    let piece: Vec<u8> = body.drain(..line + 2 + size + 2).collect();
                    stream.write_all(&piece).await.unwrap();
                    continue;
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the request body ended early");
            body.extend_from_slice(&chunk[..n]);
        }
    });
    let proxy = start_proxy(&config(addr)).await;
    let tcp = TcpStream::connect(proxy.frontend_addr("web").unwrap())
        .await
        .unwrap();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let request = http::Request::post(format!("http://{addr}/echo"))
        .body(StreamBody::new(frames))
        .unwrap();
    tx.send(Bytes::from_static(b"ping-1")).await.unwrap();
    let response = h1.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "answered before the request ended");
    let mut body = response.into_body();
    let mut echoed = Vec::new();
    for piece in [&b"ping-2"[..], b"ping-3"] {
        let frame = body.frame().await.unwrap().unwrap();
        echoed.push(frame.into_data().unwrap());
        tx.send(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    drop(tx);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            echoed.push(data);
        }
    }
    assert_eq!(echoed.concat(), b"ping-1ping-2ping-3");
    proxy.shutdown().await;
}

/// Sockets in CLOSE_WAIT whose far end is `port`: connections the server
/// closed that this process still holds.
fn close_wait_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[2].ends_with(&port) && fields[3] == "08"
        })
        .count()
}

/// No task watches an idle pooled connection: the pool's sweep frees the
/// socket of one the server closed, with no request to find it.
#[tokio::test]
async fn an_idle_connection_the_server_closed_is_freed_without_a_request() {
    let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    // The answer says keep-alive; the server closes right after it.
    let (addr, seen) = scripted(vec![(ok, true)]).await;
    let proxy = start_proxy(&config(addr)).await;
    let (status, _, body) = common::get(&client(), &url(&proxy, "web", "/")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(seen.lock().unwrap().len(), 1);
    eventually("the closed idle connection is freed", || async {
        close_wait_to(addr.port()) == 0
    })
    .await;
    proxy.shutdown().await;
}

/// The body of `/<size>/<seed>/<framing>`: `size` bytes that differ with
/// their position and the seed.
fn patterned(size: usize, seed: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i * 31 + seed * 7) % 251) as u8)
        .collect()
}

/// A server that answers `GET /<size>/<seed>/length|chunked` with
/// `patterned(size, seed)`, delimited by its length or in chunks of 5,000
/// bytes, on keep-alive connections.
async fn patterned_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(request) = read_request(&mut stream, &mut buf).await {
                    let line = String::from_utf8_lossy(&request).into_owned();
                    let path = line.split(' ').nth(1).unwrap().to_owned();
                    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                    let size: usize = parts[0].parse().unwrap();
                    let body = patterned(size, parts[1].parse().unwrap());
                    let mut answer = Vec::new();
                    if parts[2] == "chunked" {
                        answer.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                        );
                        for chunk in body.chunks(5_000) {
                            answer.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                            answer.extend_from_slice(chunk);
                            answer.extend_from_slice(b"\r\n");
                        }
                        answer.extend_from_slice(b"0\r\n\r\n");
                    } else {
                        answer.extend_from_slice(
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").as_bytes(),
                        );
                        answer.extend_from_slice(&body);
                    }
                    if stream.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Responses longer than a first read go through large read buffers that
/// a thread reuses once their bytes have been sent: many of them, of many
/// sizes and both framings, over a few keep-alive connections at once,
/// some read slowly by their client, each arrive byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_arrive_byte_for_byte_through_reused_read_buffers() {
    let proxy = start_proxy(&config(patterned_server().await)).await;
    let sizes = [70_000, 1_000, 65_536, 9_000, 200_000, 64_000, 130_000];
    let mut clients = Vec::new();
    for task in 0..6 {
        let base = url(&proxy, "web", "");
        clients.push(tokio::spawn(async move {
            let c = client();
            for round in 0..14 {
                let size = sizes[(task + round) % sizes.len()];
                let seed = task * 100 + round;
                let framing = if round % 2 == 0 { "length" } else { "chunked" };
                let uri = format!("{base}/{size}/{seed}/{framing}");
                let request = http::Request::get(uri)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let mut body = c.request(request).await.unwrap().into_body();
                let mut got = Vec::with_capacity(size);
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        got.extend_from_slice(&data);
                    }
                    // A slow reader now and then: its bytes stay in the
                    // proxy's buffers while other responses need some.
                    if task % 3 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                assert_eq!(got.len(), size, "{size}/{seed}/{framing}");
                assert!(got == patterned(size, seed), "{size}/{seed}/{framing}");
            }
        }));
    }
    for task in clients {
        task.await.unwrap();
    }
    proxy.shutdown().await;
}
