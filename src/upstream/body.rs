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
}

impl RequestBody {
    pub fn new(inner: Incoming) -> Self {
        RequestBody {
            inner: Some(inner),
            sink: None,
        }
    }

    /// A body with no bytes (health checks, bodiless requests).
    pub fn empty() -> Self {
        RequestBody {
            inner: None,
            sink: None,
        }
    }

    /// Counts the bytes that pass into `counters` (the chosen server's).
    pub fn count_into(&mut self, counters: &Arc<Counters>) {
        self.sink = Some(Arc::clone(counters));
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let (Poll::Ready(Some(Ok(frame))), Some(sink)) = (&polled, &self.sink) {
            if let Some(data) = frame.data_ref() {
                sink.add_bytes_in(data.len() as u64);
            }
        }
        polled
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
