//! The request body sent upstream: the client's body, streamed, with its
//! bytes counted for the server that receives it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

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
}

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client's body broke (bad chunk, reset, timeout).
    #[error("client body failed: {0}")]
    Client(#[from] hyper::Error),
    /// The body passed the backend's `max_body`.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
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
    /// fails with `BodyError::TooLarge`.
    pub fn new(inner: Incoming, max_body: u64) -> Self {
        RequestBody {
            inner: Some(inner),
            sink: None,
            seen: 0,
            max_body,
        }
    }

    /// A body with no bytes (health checks, bodiless requests).
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            sink: None,
            seen: 0,
            max_body: 0,
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
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let len = data.len() as u64;
            self.seen = self.seen.saturating_add(len);
            if self.seen > self.max_body {
                self.inner = None;
                return Poll::Ready(Some(Err(BodyError::TooLarge(self.max_body))));
            }
            if let Some(sink) = &self.sink {
                sink.add_bytes_in(len);
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // (`inner` is dropped after a `TooLarge` error: nothing follows it.)
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
