//! The response body sent to the client. An upstream body streams through
//! frame by frame; when it ends cleanly its connection goes back to the pool,
//! and in every case the request is counted, timed and logged exactly once.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::access_log::{AccessLog, LogRecord};
use super::client_io::RequestGuard;
use super::h1_client::{H1Error, UpstreamBody};
use crate::state::{Counters, InFlight, ServerState};
use crate::upstream::{ServerPool, UpstreamConn};

/// A response body: fixed bytes made by the proxy, or a server's stream.
#[derive(Debug)]
pub struct ProxyBody {
    kind: Kind,
}

#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "every proxied response is `Upstream`: boxing it would cost an allocation per request"
)]
enum Kind {
    Full(Option<Bytes>),
    Upstream(Relayed),
}

impl ProxyBody {
    pub fn full(bytes: Bytes) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes)),
        }
    }

    pub fn empty() -> Self {
        ProxyBody {
            kind: Kind::Full(None),
        }
    }

    /// A server's body; `exchange` ends when the body does.
    pub fn upstream(inner: UpstreamBody, exchange: Exchange) -> Self {
        ProxyBody {
            kind: Kind::Upstream(Relayed {
                inner,
                exchange: Some(exchange),
            }),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(up) => up.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(up) => up.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(up) => up.inner.size_hint(),
        }
    }
}

/// A server's body on its way to the client, with the exchange it ends.
#[derive(Debug)]
struct Relayed {
    inner: UpstreamBody,
    exchange: Option<Exchange>,
}

impl Relayed {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(ex)) = (frame.data_ref(), self.exchange.as_mut()) {
                    ex.bytes += data.len() as u64;
                    ex.server.counters.add_bytes_out(data.len() as u64);
                }
            }
            Poll::Ready(None) => {
                if let Some(ex) = self.exchange.take() {
                    let conn = self.inner.take_reusable();
                    ex.finish(None, conn);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(ex) = self.exchange.take() {
                    ex.server.counters.count_response_error();
                    ex.finish(Some("server body error"), None);
                }
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some(ex) = self.exchange.take() {
            // A body hyper never polled because it is empty ended cleanly.
            if self.inner.is_end_stream() {
                let conn = self.inner.take_reusable();
                ex.finish(None, conn);
            } else {
                ex.finish(Some("client aborted"), None);
            }
        }
    }
}

/// One request's exchange with a server, finished when its body ends.
#[derive(Debug)]
pub struct Exchange {
    /// The connection goes back to `pool` when the body ends cleanly;
    /// `None` for one that may switch protocols, which is never pooled.
    pub pool: Option<Arc<ServerPool>>,
    pub server: Arc<ServerState>,
    pub in_flight: InFlight,
    pub frontend_in_flight: InFlight,
    /// Ends the request on its client connection (idle deadline).
    pub request_guard: RequestGuard,
    pub frontend: Arc<Counters>,
    pub started: Instant,
    pub connect: Duration,
    pub response: Duration,
    pub bytes: u64,
    /// Boxed: only present when the access log is on.
    pub log: Option<Box<(AccessLog, LogRecord)>>,
}

impl Exchange {
    /// Ends the exchange: a clean end returns the connection to the pool; an
    /// early one drops it, which closes it (R3).
    fn finish(mut self, termination: Option<&'static str>, conn: Option<UpstreamConn>) {
        // One clock read for both the timings and the pool.
        let ended = Instant::now();
        let total = ended.saturating_duration_since(self.started);
        if let (None, Some(conn), Some(pool)) = (termination, conn, self.pool.as_ref()) {
            pool.checkin(conn, ended);
        }
        self.server
            .counters
            .record_timings(self.connect, self.response, total);
        drop(self.in_flight);
        drop(self.frontend_in_flight);
        drop(self.request_guard);
        self.frontend.add_bytes_out(self.bytes);
        // With `drain_to_maint`, the last request of a DRAIN server ends it.
        self.server.finish_drain();
        if let Some(mut entry) = self.log.take() {
            let (log, record) = &mut *entry;
            record.bytes = self.bytes;
            record.total = total;
            record.termination = termination;
            log.record(record);
        }
    }
}
