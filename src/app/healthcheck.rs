//! `switchyard healthcheck`: one HTTP GET for container health checks, where
//! the runtime image has no curl (Docker's `HEALTHCHECK`, compose's
//! `healthcheck`). Owns `probe` and its error type.
//! Invariant: one request on one fresh connection, bounded by one deadline;
//! only a 2xx answer is healthy.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a probe did not find the target healthy.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("only http:// URLs with a host are supported, got {0}")]
    Url(Uri),
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    #[error("http error: {0}")]
    Http(#[from] hyper::Error),
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
}

/// GETs `url` and returns its status when it is a 2xx, within `timeout`.
pub async fn probe(url: &Uri, timeout: Duration) -> Result<StatusCode, ProbeError> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(Ok(status)) if status.is_success() => Ok(status),
        Ok(Ok(status)) => Err(ProbeError::Status(status)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

async fn get(url: &Uri) -> Result<StatusCode, ProbeError> {
    let authority = match (url.scheme_str(), url.authority()) {
        (Some("http"), Some(authority)) => authority.clone(),
        _ => return Err(ProbeError::Url(url.clone())),
    };
    let port = authority.port_u16().unwrap_or(80);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|source| ProbeError::Connect {
            authority: authority.to_string(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "switchyard-healthcheck")
        .body(Empty::new())?;
    let response = sender.send_request(request).await;
    driver.abort();
    Ok(response?.status())
}
