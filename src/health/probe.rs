//! One check against one address: the `Probe` seam and its real,
//! socket-backed implementation `NetProbe` (TCP connect, or HTTP/1.1 request).
//! Invariant: a probe runs one check to completion and spawns nothing; the
//! caller bounds it with the check's timeout, and dropping the future closes
//! the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::model::{CheckKind, HttpCheck};
use crate::state::CheckOutcome;
use crate::upstream::{Socket, UpstreamStream, UpstreamTls};

/// `User-Agent` of every HTTP check request.
pub const USER_AGENT_VALUE: &str = "switchyard-check";

/// Most body bytes read from a check response; the rest is left unread and
/// the connection closed.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Runs one check. The checker owns timing, timeouts and the rise/fall
/// state; a probe only reports what it saw.
pub trait Probe: Send + Sync + 'static {
    /// Checks `addr` once. `host` is the `Host` header of an HTTP check;
    /// with `tls` the check speaks TLS as the backend's requests do (a TCP
    /// check then also completes the handshake).
    fn check(
        &self,
        addr: SocketAddr,
        kind: &CheckKind,
        host: &str,
        tls: Option<&UpstreamTls>,
    ) -> impl Future<Output = CheckOutcome> + Send;
}

/// The real probe: a TCP connect, or a request over a fresh HTTP/1.1
/// connection. Stateless; a clone costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetProbe;

impl Probe for NetProbe {
    async fn check(
        &self,
        addr: SocketAddr,
        kind: &CheckKind,
        host: &str,
        tls: Option<&UpstreamTls>,
    ) -> CheckOutcome {
        let result = match kind {
            CheckKind::Tcp => tcp(addr, tls).await,
            CheckKind::Http(check) => http(addr, check, host, tls).await,
        };
        result.unwrap_or_else(|message| CheckOutcome::Error { message })
    }
}

async fn tcp(addr: SocketAddr, tls: Option<&UpstreamTls>) -> Result<CheckOutcome, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let Some(tls) = tls {
        handshake(stream, tls).await?;
    }
    Ok(CheckOutcome::Passed { status: None })
}

/// The TLS handshake over `stream`, verified as the backend's requests are.
async fn handshake(stream: TcpStream, tls: &UpstreamTls) -> Result<UpstreamStream, String> {
    tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.config))
        .connect(tls.name.clone(), Socket::from(stream))
        .await
        .map(|s| UpstreamStream::Tls(Box::new(s)))
        .map_err(|e| format!("tls: {e}"))
}

async fn http(
    addr: SocketAddr,
    check: &HttpCheck,
    host: &str,
    tls: Option<&UpstreamTls>,
) -> Result<CheckOutcome, String> {
    let request = Request::builder()
        .method(check.method.clone())
        .uri(&*check.path)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid check request: {e}"))?;

    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // Nagle would only delay a one-packet request; failure to set it is harmless.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%addr, "check socket: set_nodelay: {e}");
    }
    let stream = match tls {
        Some(tls) => handshake(stream, tls).await?,
        None => UpstreamStream::Plain(Socket::from(stream)),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http: {e}"))?;

    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let status = response.status().as_u16();
        discard_body(response.into_body()).await?;
        Ok::<_, String>(status)
    };

    // The connection is driven here, not spawned, so that a timeout that
    // drops this future closes the socket too.
    let mut exchange = pin!(exchange);
    let mut conn = pin!(conn);
    let status = tokio::select! {
        result = &mut exchange => result?,
        done = &mut conn => {
            done.map_err(|e| format!("http: {e}"))?;
            // The connection ended cleanly; the response, if any, is buffered.
            exchange.await?
        }
    };
    Ok(if check.expect.contains(status) {
        CheckOutcome::Passed {
            status: Some(status),
        }
    } else {
        CheckOutcome::BadStatus { status }
    })
}

/// Reads and drops up to `BODY_LIMIT` bytes of the body.
async fn discard_body(mut body: hyper::body::Incoming) -> Result<(), String> {
    let mut read = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("http body: {e}"))?;
        if let Some(data) = frame.data_ref() {
            read = read.saturating_add(data.len());
            if read >= BODY_LIMIT {
                break;
            }
        }
    }
    Ok(())
}
