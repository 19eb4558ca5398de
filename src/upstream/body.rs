//! The request body sent upstream: the client's body, streamed, with its
//! bytes counted for the server that receives it, capped at the backend's
//! `max_body` and with a deadline between two reads of it (`body_idle`).
//! Invariant: a body that fails (client error, too large, idle deadline) ends
//! in an error, never a clean end, so hyper aborts the upstream request (R3).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::state::Counters;

/// The client's request body on its way to a server. A body error aborts the
/// upstream request (hyper then closes that connection), never a clean end.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    sink: Option<Arc<Counters>>,
    /// Bytes passed so far.
    seen: u64,
    /// Most bytes allowed; one more is `BodyError::TooLarge`.
    max_body: u64,
    /// Most time to wait for the next frame; `None` waits for ever.
    idle: Option<Duration>,
    /// Made on the first read that has to wait, so bodies that arrive at
    /// once cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// A read is waiting for the client: the timer runs. Only time spent
    /// waiting for the client counts, not time the server takes to read.
    is_waiting: bool,
}

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client's body broke (bad chunk, reset).
    #[error("client body failed: {0}")]
    Client(#[from] hyper::Error),
    /// The body passed the backend's `max_body`.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The client sent nothing for `body_idle` while the proxy waited.
    #[error("client sent no body bytes for {0:?}")]
    Idle(Duration),
    /// The body's bytes did not match the length it announced.
    #[error("request body length differs from its announced length")]
    Short,
}

impl BodyError {
    /// The body error that caused `error`, if one did.
    pub fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyError> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(body) = e.downcast_ref::<BodyError>() {
                return Some(body);
            }
            cause = e.source();
        }
        None
    }
}

impl RequestBody {
    /// The client's body, counted while it streams: past `max_body` bytes it
    /// fails with `BodyError::TooLarge`, and when no bytes come for `idle`
    /// with `BodyError::Idle`.
    pub fn new(inner: Incoming, max_body: u64, idle: Duration) -> Self {
        RequestBody {
            inner: Some(inner),
            sink: None,
            seen: 0,
            max_body,
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
            seen: 0,
            max_body: 0,
            idle: None,
            timer: None,
            is_waiting: false,
        }
    }

    /// Counts the bytes that pass into `counters` (the chosen server's).
    pub fn count_into(&mut self, counters: &Arc<Counters>) {
        self.sink = Some(Arc::clone(counters));
    }

    /// Arms the idle timer on the first wait; whether it has run out.
    fn is_idle_expired(&mut self, idle: Duration, cx: &mut Context<'_>) -> bool {
        if !self.is_waiting {
            let deadline = Instant::now() + idle;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.is_waiting = true;
        }
        self.timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready())
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
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                this.inner = None;
                return Poll::Ready(Some(Err(BodyError::Client(e))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                let Some(idle) = this.idle else {
                    return Poll::Pending;
                };
                if this.is_idle_expired(idle, cx) {
                    this.inner = None;
                    return Poll::Ready(Some(Err(BodyError::Idle(idle))));
                }
                return Poll::Pending;
            }
        };
        this.is_waiting = false;
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            this.seen = this.seen.saturating_add(len);
            if this.seen > this.max_body {
                this.inner = None;
                return Poll::Ready(Some(Err(BodyError::TooLarge(this.max_body))));
            }
            if let Some(sink) = &this.sink {
                sink.add_bytes_in(len);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // (`inner` is dropped after an error: nothing follows it.)
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
