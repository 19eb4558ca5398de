//! The client-side TLS handshake of a TLS frontend: bounded by the
//! frontend's `client_header` timeout, counted by outcome (version and ALPN
//! on success, a reason on failure).
//! Invariant: a failed handshake is counted and logged at debug level and
//! costs nothing else; it never reaches the request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::server::TlsStream;

use crate::state::{Alpn, HandshakeFailure, TlsCounters, TlsVersion};
use crate::upstream::Socket;

/// Runs the handshake; `None` when it failed or timed out (counted).
pub async fn handshake(
    socket: Socket,
    config: Arc<rustls::ServerConfig>,
    limit: Duration,
    counters: &TlsCounters,
    peer: SocketAddr,
) -> Option<TlsStream<Socket>> {
    let accept = tokio_rustls::TlsAcceptor::from(config).accept(socket);
    let failure = match tokio::time::timeout(limit, accept).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
                _ => TlsVersion::Tls13,
            };
            let alpn = match conn.alpn_protocol() {
                Some(b"h2") => Alpn::H2,
                Some(_) => Alpn::Http11,
                None => Alpn::None,
            };
            counters.count_handshake(version, alpn);
            return Some(stream);
        }
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, error = %e, "tls handshake failed");
            classify(&e)
        }
        Err(_elapsed) => {
            tracing::debug!(client = %peer, "tls handshake timed out");
            HandshakeFailure::Timeout
        }
    };
    counters.count_failure(failure);
    None
}

/// Why a handshake failed, from the error tokio-rustls returned.
fn classify(e: &std::io::Error) -> HandshakeFailure {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return HandshakeFailure::Closed;
    };
    match tls {
        rustls::Error::PeerIncompatible(_) | rustls::Error::NoApplicationProtocol => {
            HandshakeFailure::Incompatible
        }
        rustls::Error::AlertReceived(_) => HandshakeFailure::Alert,
        // Anything else is a broken or hostile peer: bad messages, bad
        // records, misbehaviour. rustls' error enum is non-exhaustive.
        _ => HandshakeFailure::Malformed,
    }
}
