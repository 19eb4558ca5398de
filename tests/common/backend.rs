//! A real backend for tests: answers with its name in `x-served-by`, records
//! every request it receives, and has a few behaviours chosen by path:
//! `/hold` waits until the test releases it, `/status/NNN` answers NNN,
//! `/bytes/N` streams N bytes, `/slow/MS` waits MS ms before answering,
//! `/cache/DIRECTIVES` answers with `Cache-Control: DIRECTIVES` (`,` separated).
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

#[derive(Debug, Default)]
struct Inner {
    hits: AtomicUsize,
    held: AtomicUsize,
    connections: AtomicUsize,
    captured: Mutex<Vec<Captured>>,
    release: Notify,
    status_override: Mutex<Option<u16>>,
    /// Notified once the listener is closed and every connection cut.
    dead: Notify,
}

/// A running test backend; stops when dropped.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    stop: CancellationToken,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(name, listener)
    }

    /// Starts on a given address (to bring a killed backend back).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Backend {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(name, listener)
    }

    fn serve(name: &str, listener: TcpListener) -> Backend {
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let stop = CancellationToken::new();
        let (i, s, n) = (Arc::clone(&inner), stop.clone(), name.to_owned());
        tokio::spawn(async move {
            let connections = tokio_util::task::TaskTracker::new();
            loop {
                let (stream, _) = tokio::select! {
                    () = s.cancelled() => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                i.connections.fetch_add(1, Ordering::SeqCst);
                let (i, n, s2) = (Arc::clone(&i), n.clone(), s.clone());
                connections.spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&i), n.clone(), req));
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        () = s2.cancelled() => {}
                    }
                });
            }
            // Dropping the listener refuses new connections; open ones are cut.
            drop(listener);
            connections.close();
            connections.wait().await;
            i.dead.notify_one();
        });
        Backend {
            name: name.to_owned(),
            addr,
            inner,
            stop,
        }
    }

    pub fn hits(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Requests currently waiting in `/hold`.
    pub fn held(&self) -> usize {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Lets every request waiting in `/hold` answer.
    pub fn release(&self) {
        self.inner.release.notify_waiters();
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.inner.captured.lock().unwrap().clone()
    }

    /// Makes every answer (health checks included) use this status.
    pub fn set_status(&self, status: Option<u16>) {
        *self.inner.status_override.lock().unwrap() = status;
    }

    /// Stops accepting and cuts open connections; returns once the
    /// listener is closed and every connection is.
    pub async fn kill(&self) {
        self.stop.cancel();
        self.inner.dead.notified().await;
    }
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    inner: Arc<Inner>,
    name: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    inner.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let target = parts.uri.to_string();
    let mut body_len = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => break,
        }
    }
    inner.captured.lock().unwrap().push(Captured {
        method: parts.method.clone(),
        target: target.clone(),
        headers: parts.headers.clone(),
        body_len,
    });
    let override_status = *inner.status_override.lock().unwrap();
    let path = parts.uri.path();
    let mut status = StatusCode::OK;
    let body: Body = if path == "/hold" {
        inner.held.fetch_add(1, Ordering::SeqCst);
        let notified = inner.release.notified();
        notified.await;
        inner.held.fetch_sub(1, Ordering::SeqCst);
        full(format!("{name} released\n"))
    } else if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
        full(format!("{name} {code}\n"))
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(100))).await;
        full(format!("{name} slow\n"))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        stream_bytes(n.parse().unwrap_or(0))
    } else {
        full(format!(
            "{name} {} {target} body={body_len}\n",
            parts.method
        ))
    };
    if let Some(code) = override_status {
        status = StatusCode::from_u16(code).unwrap();
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if path.ends_with("/hop") {
        let h = response.headers_mut();
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("connection", "x-private-resp".parse().unwrap());
        h.insert("x-private-resp", "1".parse().unwrap());
        h.insert("x-public-resp", "1".parse().unwrap());
    }
    if let Some(cache) = path.strip_prefix("/cache/") {
        let h = response.headers_mut();
        h.insert("cache-control", cache.replace(',', ", ").parse().unwrap());
    }
    response
        .headers_mut()
        .insert("x-served-by", name.parse().unwrap());
    Ok(response)
}

fn full(text: String) -> Body {
    http_body_util::Full::new(Bytes::from(text))
        .map_err(|e| match e {})
        .boxed()
}

/// `n` bytes in 64 KiB chunks, generated as they are read.
fn stream_bytes(n: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK);
            Some((
                Ok::<_, Infallible>(Frame::data(chunk.slice(..take))),
                left - take,
            ))
        }
    });
    StreamBody::new(stream).boxed()
}
