//! Opening HTTP/1.1 connections to servers, over TLS when the server's
//! backend asks for it.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::upstream::{RequestBody, UpstreamSender, UpstreamStream, UpstreamTls};

/// Why a connection could not be opened. Nothing was sent, so the request
/// may go to another server.
#[derive(Debug)]
pub enum ConnectFailure {
    Io(std::io::Error),
    Timeout,
    /// The TLS handshake failed (e.g. the certificate did not verify).
    Tls(std::io::Error),
    Handshake(hyper::Error),
}

/// A new keep-alive connection. Its driver task ends when the sender is
/// dropped and the connection is idle, or when the server closes it.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<UpstreamSender, ConnectFailure> {
    let (sender, conn) = handshake(addr, tls, timeout).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(server = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// A connection that may switch protocols (WebSocket); never pooled.
pub async fn connect_upgradable(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<UpstreamSender, ConnectFailure> {
    let (sender, conn) = handshake(addr, tls, timeout).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(server = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Most bytes read ahead from one server connection. hyper's default (about
/// 400 KiB) let every pooled connection keep a buffer that large after one
/// big response; 64 KiB still moves large bodies in few reads.
const READ_BUFFER_LIMIT: usize = 64 * 1024;

type Connection = hyper::client::conn::http1::Connection<TokioIo<UpstreamStream>, RequestBody>;

/// TCP connect and TLS handshake share the connect timeout.
async fn handshake(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<(UpstreamSender, Connection), ConnectFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectFailure::Timeout)?
        .map_err(ConnectFailure::Io)?;
    stream.set_nodelay(true).map_err(ConnectFailure::Io)?;
    let stream = match tls {
        None => UpstreamStream::Plain(stream),
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.config));
            let tls_stream =
                tokio::time::timeout_at(deadline, connector.connect(tls.name.clone(), stream))
                    .await
                    .map_err(|_| ConnectFailure::Timeout)?
                    .map_err(ConnectFailure::Tls)?;
            UpstreamStream::Tls(Box::new(tls_stream))
        }
    };
    hyper::client::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER_LIMIT)
        .handshake::<_, RequestBody>(TokioIo::new(stream))
        .await
        .map_err(ConnectFailure::Handshake)
}
