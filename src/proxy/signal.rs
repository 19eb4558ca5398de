//! Waiting for a rare event (drain, an abuse trip) beside a busy future
//! without paying for it on every wake. A `select!` polls each branch at
//! every wake of the task; a cancellation future takes a mutex in tokio
//! each time it is polled while waiting. `Signal` polls its future only when
//! that future's own waker fired (and once at the start), so a connection's
//! many wakes for its sockets cost two atomic operations each.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// `inner`, polled only when it asked to be. It stays where its owner
/// pinned it (`std::pin::pin!`), so a connection's signal allocates only
/// its flag.
pub struct Signal<'a, F> {
    inner: Pin<&'a mut F>,
    flag: Arc<Flag>,
    /// Wakes `flag`, then the task: given to `inner` as its waker.
    waker: Waker,
}

/// Whether the inner future was woken, and the task to wake then.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<'a, F: Future> Signal<'a, F> {
    pub fn new(inner: Pin<&'a mut F>) -> Self {
        let flag = Arc::new(Flag {
            // Polled once at the start, to register.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Signal {
            inner,
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl<F: Future> Future for Signal<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let this = &mut *self;
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    struct Noop;

    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn a_signal_resolves_once_its_future_does() {
        let token = CancellationToken::new();
        let cancelled = std::pin::pin!(token.clone().cancelled_owned());
        let mut signal = std::pin::pin!(Signal::new(cancelled));
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(signal.as_mut().poll(&mut cx).is_pending());
        }
        token.cancel();
        assert!(signal.as_mut().poll(&mut cx).is_ready());
        // Cancelled from another task while this one waits.
        let token = CancellationToken::new();
        let cancelled = token.clone().cancelled_owned();
        let waiting = tokio::spawn(async move { Signal::new(std::pin::pin!(cancelled)).await });
        tokio::task::yield_now().await;
        token.cancel();
        waiting.await.expect("resolves once cancelled");
    }
}
