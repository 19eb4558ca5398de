//! One exchange with a peer: `POST /api/peers/exchange` on a fresh HTTP/1.1
//! connection (hyper's client over tokio), with the admin token as a bearer
//! token. Owns `exchange` and `ExchangeError`.
//! Invariant: bounded: one deadline covers connect, request and answer, and
//! the answer's size is capped; nothing the peer sends can panic here.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Exchange;

/// Largest answer read from a peer.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why an exchange failed, as the stats page shows it.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("http error: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}: {1}")]
    Status(StatusCode, String),
    #[error("unreadable answer: {0}")]
    Body(String),
}

/// Sends `ours` to the peer at `addr` and returns its answer, within `timeout`.
pub async fn exchange(
    addr: SocketAddr,
    token: &str,
    ours: &Exchange,
    timeout: Duration,
) -> Result<Exchange, ExchangeError> {
    let body = serde_json::to_vec(ours).map_err(|e| ExchangeError::Body(e.to_string()))?;
    tokio::time::timeout(timeout, send(addr, token, body))
        .await
        .unwrap_or(Err(ExchangeError::Timeout(timeout)))
}

async fn send(addr: SocketAddr, token: &str, body: Vec<u8>) -> Result<Exchange, ExchangeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ExchangeError::Connect)?;
    // Small requests and answers: send each at once.
    let _nodelay = stream.set_nodelay(true);
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let request = Request::post("/api/peers/exchange")
        .header(header::HOST, addr.to_string())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "switchyard-peer")
        .body(Full::new(Bytes::from(body)))?;
    let answer = async {
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| ExchangeError::Body(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(ExchangeError::Status(status, text));
        }
        serde_json::from_slice(&body).map_err(|e| ExchangeError::Body(e.to_string()))
    }
    .await;
    driver.abort();
    answer
}
