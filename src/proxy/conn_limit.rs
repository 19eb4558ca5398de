//! The cap on client connections over all frontends (`max_connections`).
//! An accept loop takes a place before it accepts, and at the cap waits
//! (new clients wait in the kernel's backlog) until a connection ends. Below
//! the cap a place costs one compare-and-swap to take and two atomic
//! operations to give back; tokio's `Semaphore` took its waiters' mutex on
//! every release, once per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct ConnectionLimit {
    open: AtomicUsize,
    max: usize,
    /// Accept loops waiting at the cap.
    waiting: AtomicUsize,
    /// Told once per place given back while a loop waits.
    freed: Notify,
}

/// A connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub struct Place(Arc<ConnectionLimit>);

impl ConnectionLimit {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionLimit {
            open: AtomicUsize::new(0),
            max,
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// A place, at once below the cap, or once a connection ends.
    pub async fn place(self: &Arc<Self>) -> Place {
        if let Some(place) = self.try_place() {
            return place;
        }
        // Counted before the next check: a place given back after it sees
        // the count and tells `freed` (both sides `SeqCst`).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(self);
        loop {
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Some(place) = self.try_place() {
                return place;
            }
            freed.await;
        }
    }

    fn try_place(self: &Arc<Self>) -> Option<Place> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| Place(Arc::clone(self)))
    }

    /// Connections holding a place.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let limit = &self.0;
        limit.open.fetch_sub(1, Ordering::SeqCst);
        if limit.waiting.load(Ordering::SeqCst) > 0 {
            // One waiting loop per place: each takes it or waits again.
            limit.freed.notify_one();
        }
    }
}

/// A loop waiting at the cap, counted until it has a place or is dropped.
struct Waiting<'a>(&'a ConnectionLimit);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionLimit;
    use std::pin::Pin;
    use std::task::Poll;

    #[tokio::test]
    async fn places_are_taken_up_to_the_cap_and_given_back_when_dropped() {
        let limit = ConnectionLimit::new(2);
        let first = limit.place().await;
        let second = limit.place().await;
        assert_eq!(limit.open(), 2);
        drop(first);
        assert_eq!(limit.open(), 1);
        let third = limit.place().await;
        assert_eq!(limit.open(), 2);
        drop((second, third));
        assert_eq!(limit.open(), 0);
    }

    #[tokio::test]
    async fn at_the_cap_a_place_waits_for_a_connection_to_end() {
        let limit = ConnectionLimit::new(1);
        let held = limit.place().await;
        let mut waiting = std::pin::pin!(limit.place());
        assert!(
            poll_once(waiting.as_mut()).await.is_pending(),
            "a place beyond the cap"
        );
        drop(held);
        let place = waiting.await;
        assert_eq!(limit.open(), 1);
        drop(place);
        assert_eq!(limit.open(), 0);
    }

    #[tokio::test]
    async fn every_loop_waiting_at_the_cap_gets_a_place_as_connections_end() {
        let limit = ConnectionLimit::new(2);
        let held = [limit.place().await, limit.place().await];
        let mut first = std::pin::pin!(limit.place());
        let mut second = std::pin::pin!(limit.place());
        assert!(poll_once(first.as_mut()).await.is_pending());
        assert!(poll_once(second.as_mut()).await.is_pending());
        // Both places come back before either waiting loop runs again.
        drop(held);
        let places = [first.await, second.await];
        assert_eq!(limit.open(), 2);
        drop(places);
        assert_eq!(limit.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_loop_that_stops_waiting_is_no_longer_counted() {
        let limit = ConnectionLimit::new(1);
        let held = limit.place().await;
        {
            let mut waiting = std::pin::pin!(limit.place());
            assert!(poll_once(waiting.as_mut()).await.is_pending());
        }
        assert_eq!(limit.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
        drop(held);
        assert_eq!(limit.open(), 0);
    }

    /// Polls `future` once, with this task's waker.
    async fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        let mut future = Some(future);
        std::future::poll_fn(|cx| {
            let polled = future
                .as_mut()
                .map_or(Poll::Pending, |f| f.as_mut().poll(cx));
            Poll::Ready(polled)
        })
        .await
    }
}
