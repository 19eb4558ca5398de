//! Every failure on the data path, and the one place that maps it to a status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::ProxyBody;

/// Why a request did not get a response from a server.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Ambiguous or malformed request; the client connection is closed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The path uses an encoding the proxy refuses to route (`%2F`, `%00`, ...).
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// The request target is longer than the frontend's `max_uri`.
    #[error("request target too long")]
    UriTooLong,
    /// The head breaks one of the frontend's head limits.
    #[error("request head too large: {0}")]
    HeadTooLarge(&'static str),
    /// The body is larger than the backend's `max_body`.
    #[error("request body too large")]
    BodyTooLarge,
    #[error("method not allowed: {0}")]
    MethodNotAllowed(&'static str),
    /// The client stopped sending its body for `body_idle`.
    #[error("client sent no request body bytes in time")]
    ClientBodyTimeout,
    /// No route matched and the frontend has no default.
    #[error("no route for this request")]
    NoRoute,
    /// Every server of the backend is DOWN, MAINT, DRAIN or weight 0.
    #[error("no server available")]
    NoServer,
    /// Connecting failed (refused, reset, unreachable) on the last attempt.
    #[error("connect to {server} failed: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    /// The TLS handshake with the server failed (certificate not trusted,
    /// wrong name, no common protocol) on the last attempt.
    #[error("tls handshake with {server} failed: {source}")]
    UpstreamTls {
        server: String,
        source: std::io::Error,
    },
    /// Connecting took longer than `connect` on the last attempt.
    #[error("connect to {server} timed out")]
    ConnectTimeout { server: String },
    /// No response head within `response`.
    #[error("{server} sent no response in time")]
    ResponseTimeout { server: String },
    /// The server broke the exchange or answered something unparseable.
    #[error("{server} failed: {source}")]
    Upstream {
        server: String,
        source: super::h1_client::H1Error,
    },
    /// The server answered something the proxy will not relay.
    #[error("{server} sent an invalid response: {reason}")]
    BadResponse {
        server: String,
        reason: &'static str,
    },
}

impl ProxyError {
    /// The one mapping from failure to status; no catch-all arm, so a new
    /// variant must choose.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            // No connection could be made: HAProxy answers 503 too.
            ProxyError::NoServer
            | ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamTls { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Whether the client connection must close after the answer.
    pub fn closes_connection(&self) -> bool {
        // A refused body is not read, a stalled one may never end, and an
        // oversized head may hide another request: none leaves the
        // connection usable.
        matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::BadPath(_)
                | ProxyError::UriTooLong
                | ProxyError::HeadTooLarge(_)
                | ProxyError::BodyTooLarge
                | ProxyError::ClientBodyTimeout
        )
    }

    /// The answer the client sees: a short text naming no internals.
    pub fn to_response(&self) -> Response<ProxyBody> {
        let status = self.status();
        let text: &'static str = match status {
            StatusCode::BAD_REQUEST => "400 Bad Request\n",
            StatusCode::NOT_FOUND => "404 Not Found\n",
            StatusCode::REQUEST_TIMEOUT => "408 Request Timeout\n",
            StatusCode::PAYLOAD_TOO_LARGE => "413 Content Too Large\n",
            StatusCode::URI_TOO_LONG => "414 URI Too Long\n",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "431 Request Header Fields Too Large\n",
            StatusCode::METHOD_NOT_ALLOWED => "405 Method Not Allowed\n",
            StatusCode::SERVICE_UNAVAILABLE => {
                "503 Service Unavailable: no server is available to handle this request\n"
            }
            StatusCode::GATEWAY_TIMEOUT => {
                "504 Gateway Timeout: the server did not answer in time\n"
            }
            _ => "502 Bad Gateway: the server failed to answer\n",
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.closes_connection() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (ProxyError::BadRequest("x"), 400),
            (ProxyError::BadPath("x"), 400),
            (ProxyError::MethodNotAllowed("CONNECT"), 405),
            (ProxyError::ClientBodyTimeout, 408),
            (ProxyError::UriTooLong, 414),
            (ProxyError::HeadTooLarge("x"), 431),
            (ProxyError::BodyTooLarge, 413),
            (ProxyError::NoRoute, 404),
            (ProxyError::NoServer, 503),
            (
                ProxyError::Connect {
                    server: "s".into(),
                    source: io(),
                },
                503,
            ),
            (ProxyError::ConnectTimeout { server: "s".into() }, 503),
            (ProxyError::ResponseTimeout { server: "s".into() }, 504),
            (
                ProxyError::BadResponse {
                    server: "s".into(),
                    reason: "x",
                },
                502,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error}");
            assert_eq!(error.to_response().status().as_u16(), status);
        }
    }
}
