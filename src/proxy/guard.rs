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
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::ProxyBody;
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

/// Notes an HTTP/2 stream whose service future is dropped before it ends:
/// hyper drops it when the client resets the stream.
struct StreamGuard<'a> {
    watch: &'a ResetWatch,
    started: Instant,
    is_done: bool,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        if !self.is_done && self.started.elapsed() < PREMATURE {
            self.watch.reset_early();
        }
    }
}

/// Serves one request through `service::serve`, catching a panic in it.
// An `async` block returned by a plain `fn`, not an `async fn`: an `async fn`
// keeps each argument twice in its state, as the argument and as the local it
// is moved into, and this state is part of every request's (the request's
// future: 3,704 bytes, against 4,904 as `async fn`s; BENCHMARKS.md).
#[allow(clippy::manual_async_fn)]
pub fn serve(
    ctx: Arc<ConnContext>,
    request: Request<Incoming>,
    request_guard: RequestGuard,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> {
    async move {
        let mut stream = (request.version() == Version::HTTP_2).then(|| {
            ctx.resets.start();
            StreamGuard {
                watch: &ctx.resets,
                started: Instant::now(),
                is_done: false,
            }
        });
        let response = catch_panic(service::serve(Arc::clone(&ctx), request, request_guard), |message| {
            let snapshot = ctx.shared.runtime.snapshot();
            let frontend = snapshot.frontends.iter().find(|f| f.listen == ctx.listen);
            if let Some(frontend) = frontend {
                frontend.counters.count_panic();
                frontend.counters.count_response(500);
            }
            tracing::error!(client = %ctx.peer, panic = message, "request handling panicked; answered 500");
        })
        .await;
        if let Some(stream) = stream.as_mut() {
            stream.is_done = true;
        }
        Ok(response)
    }
}

/// Runs `future`; a panic in it calls `note` with the panic's text and
/// becomes a 500 that closes the connection. A combinator, not an `async
/// fn`: an `async fn` would hold `future` twice in its state (once as its
/// argument, once as what it awaits), and this state is allocated for every
/// request.
fn catch_panic<F>(future: F, note: impl FnOnce(&str)) -> impl Future<Output = Response<ProxyBody>>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    AssertUnwindSafe(future)
        .catch_unwind()
        .map(|caught| match caught {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(panic) => {
                note(panic_text(panic.as_ref()));
                internal_error()
            }
        })
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

    #[tokio::test]
    async fn a_panic_in_one_request_becomes_a_500_and_is_noted() {
        fn explode() -> Result<Response<ProxyBody>, Infallible> {
            panic!("boom in the handler")
        }
        let mut noted = None;
        let response = catch_panic(async { explode() }, |text| noted = Some(text.to_owned())).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        assert_eq!(noted.as_deref(), Some("boom in the handler"));
        let fine = catch_panic(async { Ok(Response::new(ProxyBody::empty())) }, |_| {
            unreachable!("no panic")
        })
        .await;
        assert_eq!(fine.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn only_streams_dropped_early_and_unfinished_count() {
        let watch = ResetWatch::default();
        let guard = |watch| StreamGuard {
            watch,
            started: Instant::now(),
            is_done: false,
        };
        drop(guard(&watch));
        let mut finished = guard(&watch);
        finished.is_done = true;
        drop(finished);
        let late = guard(&watch);
        tokio::time::advance(PREMATURE).await;
        drop(late);
        assert_eq!(watch.premature.load(Ordering::Relaxed), 1);
    }
}
