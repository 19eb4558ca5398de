//! The request body sent upstream: the client's body, streamed, with its
//! bytes counted for the server that receives it and a deadline between two
//! reads of it (`body_idle`).
//! Invariant: a body that fails (client error, idle deadline) ends in an
//! error, never a clean end, so hyper aborts the upstream request (R3).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::state::Counters;

/// Why a request body did not arrive whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client connection failed or sent a malformed body.
    #[error("client body: {0}")]
    Client(#[from] hyper::Error),
    /// The client sent nothing for `body_idle` while the proxy waited.
    #[error("client sent no body bytes for {0:?}")]
    Idle(Duration),
}

/// The client's request body on its way to a server. A body error aborts the
/// upstream request (hyper then closes that connection), never a clean end.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    sink: Option<Arc<Counters>>,
    /// Most time to wait for the next frame; `None` waits for ever.
    idle: Option<Duration>,
    /// Made on the first read that has to wait, so bodies that arrive at
    /// once cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// A read is waiting for the client: the timer runs. Only time spent
    /// waiting for the client counts, not time the server takes to read.
    is_waiting: bool,
}

impl RequestBody {
    /// The client's body, failing when no bytes come for `idle`.
    pub fn new(inner: Incoming, idle: Duration) -> Self {
        RequestBody {
            inner: Some(inner),
            sink: None,
            idle: Some(idle),
            timer: None,
            is_waiting: false,
        }
    }

    /// A body with no bytes (health checks, bodiless requests).
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            sink: None,
            idle: None,
            timer: None,
            is_waiting: false,
        }
    }

    /// Counts the bytes that pass into `counters` (the chosen server's).
    pub fn count_into(&mut self, counters: &Arc<Counters>) {
        self.sink = Some(Arc::clone(counters));
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(sink)) = (frame.data_ref(), &this.sink) {
                    sink.add_bytes_in(data.len() as u64);
                }
                this.is_waiting = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                Poll::Ready(Some(Err(BodyError::Client(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                if !this.is_waiting {
                    let deadline = Instant::now() + idle;
                    match this.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    this.is_waiting = true;
                }
                let is_expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
                if is_expired {
                    this.inner = None;
                    return Poll::Ready(Some(Err(BodyError::Idle(idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
