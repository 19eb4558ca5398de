//! Opening connections to servers, over TLS when the server's backend asks
//! for it. The connection is a socket and an empty read buffer: the request
//! that opened it speaks HTTP/1.1 over it (`h1_client`); no task is spawned.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::upstream::{Socket, UpstreamConn, UpstreamStream, UpstreamTls};

/// Why a connection could not be opened. Nothing was sent, so the request
/// may go to another server.
#[derive(Debug)]
pub enum ConnectFailure {
    Io(std::io::Error),
    Timeout,
    /// The TLS handshake failed (e.g. the certificate did not verify).
    Tls(std::io::Error),
}

/// A new connection. TCP connect and TLS handshake share the connect
/// timeout.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<UpstreamConn, ConnectFailure> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectFailure::Timeout)?
        .map_err(ConnectFailure::Io)?;
    stream.set_nodelay(true).map_err(ConnectFailure::Io)?;
    let stream = Socket::from(stream);
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
    Ok(UpstreamConn::new(stream))
}
