//! What wraps each request's service future on a client connection: a panic
//! inside one request's handling becomes a `500` for that request alone
//! (counted on the frontend), and on HTTP/2 the premature-reset ratio, which
//! tells a connection to go away when most of its streams are reset by the
//! client right after they start (rapid reset that gets past h2's own
//! pending-accept limit).
//! Invariant: nothing here locks; a connection's `ResetWatch` is only
//! atomics and, on HTTP/2, one cancellation token.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::ProxyBody;
use super::boxed_in_place;
use super::client_io::RequestGuard;
use super::service::{self, ConnContext};

/// A stream reset by the client sooner than this after it started counts
/// as premature.
pub const PREMATURE: Duration = Duration::from_secs(1);
/// The ratio is judged only once a connection has started this many streams.
pub const MIN_STREAMS: u32 = 100;

/// Streams started and reset early on one connection; trips when more than
/// half of at least `MIN_STREAMS` streams were reset within `PREMATURE`.
/// Only HTTP/2 has streams: an HTTP/1 connection's watch has no token (a
/// token per connection is an allocation and a registration that nothing
/// would ever cancel).
#[derive(Debug, Default)]
pub struct ResetWatch {
    started: AtomicU32,
    premature: AtomicU32,
    tripped: Option<CancellationToken>,
}

impl ResetWatch {
    /// The watch of an HTTP/2 connection.
    pub fn for_http2() -> Self {
        ResetWatch {
            tripped: Some(CancellationToken::new()),
            ..ResetWatch::default()
        }
    }

    /// Cancelled when the connection should go away; `None` on HTTP/1.
    pub fn tripped(&self) -> Option<&CancellationToken> {
        self.tripped.as_ref()
    }

    fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one premature reset; trips the watch when the ratio is passed.
    fn reset_early(&self) {
        let premature = self.premature.fetch_add(1, Ordering::Relaxed) + 1;
        let started = self.started.load(Ordering::Relaxed);
        let Some(tripped) = &self.tripped else {
            return;
        };
        if is_abusive(started, premature) && !tripped.is_cancelled() {
            tracing::warn!(
                started,
                premature,
                "most HTTP/2 streams reset right after they started; closing the connection"
            );
            tripped.cancel();
        }
    }
}

/// The premature-reset rule: more than half of at least `MIN_STREAMS`.
fn is_abusive(started: u32, premature: u32) -> bool {
    started >= MIN_STREAMS && u64::from(premature) * 2 > u64::from(started)
}

/// An HTTP/2 stream from its start until its response is ready: hyper
/// drops the service future of a stream the client resets.
struct Stream {
    started: Instant,
}

impl Stream {
    /// Notes the stream as reset early when it ends unanswered within
    /// `PREMATURE` of its start.
    fn dropped_unanswered(self, watch: &ResetWatch) {
        if self.started.elapsed() < PREMATURE {
            watch.reset_early();
        }
    }
}

/// The future of one request as hyper holds it: `service::serve`'s future,
/// made in a box of its own (`boxed_in_place`), behind a small wrapper that
/// turns a panic in it into a `500` and notes an HTTP/2 stream dropped
/// unanswered. A hand-written future rather than an `async` block around
/// `catch_unwind` combinators: each combinator and each `.await` moves the
/// request's whole future (3 KiB) once more, a `memcpy` into lines the
/// cache does not hold.
pub struct Serve<F> {
    caught: CatchPanic<F>,
    ctx: Arc<ConnContext>,
    /// HTTP/2 only, until the response is ready.
    stream: Option<Stream>,
}

/// Serves one request through `service::serve`, catching a panic in it.
pub fn serve(
    ctx: Arc<ConnContext>,
    request: Request<Incoming>,
    request_guard: RequestGuard,
) -> Serve<impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send> {
    let stream = (request.version() == Version::HTTP_2).then(|| {
        ctx.resets.start();
        Stream {
            started: Instant::now(),
        }
    });
    let future = boxed_in_place(|| service::serve(Arc::clone(&ctx), request, request_guard));
    Serve {
        caught: CatchPanic {
            future: Some(future),
        },
        ctx,
        stream,
    }
}

impl<F> Future for Serve<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let ctx = &this.ctx;
        let response = ready!(this.caught.poll_caught(cx, |message| {
            let snapshot = ctx.shared.runtime.snapshot();
            let frontend = snapshot.frontends.iter().find(|f| f.listen == ctx.listen);
            if let Some(frontend) = frontend {
                frontend.counters.count_panic();
                frontend.counters.count_response(500);
            }
            tracing::error!(client = %ctx.peer, panic = message, "request handling panicked; answered 500");
        }));
        this.stream = None;
        Poll::Ready(Ok(response))
    }
}

impl<F> Drop for Serve<F> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.dropped_unanswered(&self.ctx.resets);
        }
    }
}

/// A boxed future whose panic becomes a `500` that closes the connection.
struct CatchPanic<F> {
    /// `None` once it has answered.
    future: Option<Pin<Box<F>>>,
}

impl<F> CatchPanic<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    /// Polls the future; a panic in it calls `note` with the panic's text
    /// and answers `500`. Polled again after it answered, it answers `500`.
    fn poll_caught(
        &mut self,
        cx: &mut Context<'_>,
        note: impl FnOnce(&str),
    ) -> Poll<Response<ProxyBody>> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(internal_error());
        };
        let response = match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
        {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => response,
            Ok(Poll::Ready(Err(never))) => match never {},
            Err(panic) => {
                note(panic_text(panic.as_ref()));
                internal_error()
            }
        };
        self.future = None;
        Poll::Ready(response)
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-text panic payload")
}

fn internal_error() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(Bytes::from_static(
        b"500 Internal Server Error\n",
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_needs_enough_streams_and_more_than_half_reset() {
        let cases = [
            (99, 99, false),
            (100, 50, false),
            (100, 51, true),
            (1000, 500, false),
            (1000, 501, true),
            (u32::MAX, u32::MAX, true),
        ];
        for (started, premature, expected) in cases {
            assert_eq!(
                is_abusive(started, premature),
                expected,
                "{premature} of {started}"
            );
        }
    }

    #[test]
    fn the_watch_trips_once_the_ratio_is_passed() {
        let watch = ResetWatch::for_http2();
        let tripped = watch.tripped().expect("an HTTP/2 watch has a token");
        for _ in 0..MIN_STREAMS {
            watch.start();
        }
        for _ in 0..50 {
            watch.reset_early();
        }
        assert!(!tripped.is_cancelled(), "half is not more than half");
        watch.reset_early();
        assert!(tripped.is_cancelled());
    }

    #[test]
    fn an_http1_watch_has_nothing_to_trip() {
        let watch = ResetWatch::default();
        for _ in 0..MIN_STREAMS {
            watch.start();
            watch.reset_early();
        }
        assert!(watch.tripped().is_none());
    }

    /// Polls `future` to its answer through `CatchPanic`, as `Serve` does.
    async fn caught(
        future: impl Future<Output = Result<Response<ProxyBody>, Infallible>>,
        note: impl FnOnce(&str),
    ) -> Response<ProxyBody> {
        let mut caught = CatchPanic {
            future: Some(Box::pin(future)),
        };
        let mut note = Some(note);
        std::future::poll_fn(|cx| {
            caught.poll_caught(cx, |text| {
                if let Some(note) = note.take() {
                    note(text);
                }
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_panic_in_one_request_becomes_a_500_and_is_noted() {
        fn explode() -> Result<Response<ProxyBody>, Infallible> {
            panic!("boom in the handler")
        }
        let mut noted = None;
        let response = caught(async { explode() }, |text| noted = Some(text.to_owned())).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(noted.as_deref(), Some("boom in the handler"));
        let fine = caught(async { Ok(Response::new(ProxyBody::empty())) }, |_| {
            unreachable!("no panic")
        })
        .await;
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_request_that_waits_is_polled_again_and_answers_once() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut caught = CatchPanic {
            future: Some(Box::pin(async move {
                let _ = rx.await;
                Ok(Response::new(ProxyBody::empty()))
            })),
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(caught.poll_caught(&mut cx, |_| unreachable!()).is_pending());
        tx.send(()).expect("the request waits");
        let Poll::Ready(response) = caught.poll_caught(&mut cx, |_| unreachable!()) else {
            panic!("answers once its wait is over");
        };
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            caught.future.is_none(),
            "the request's state is freed with its answer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_streams_dropped_early_count() {
        let watch = ResetWatch::default();
        let stream = || Stream {
            started: Instant::now(),
        };
        stream().dropped_unanswered(&watch);
        let late = stream();
        tokio::time::advance(PREMATURE).await;
        late.dropped_unanswered(&watch);
        assert_eq!(watch.premature.load(Ordering::Relaxed), 1);
    }
}
