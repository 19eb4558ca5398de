//! HTTP/2 streams polled in their connection's own task. hyper hands each
//! stream's future (its request through `guard::serve`, then its response
//! body) to an executor; a spawning executor would give every stream a
//! task of its own: an aligned allocation, the runtime's task list, and two
//! more task switches per request (the stream's task to send upstream and to
//! answer, the connection's again to write the answer). `StreamExec` instead
//! queues the future for the connection's future, `WithStreams`, which keeps
//! it in a slot reused from stream to stream and polls it when its own waker
//! fires, next to the connection in the same poll.
//!
//! Invariant: a stream's future is polled only from its connection's task,
//! through its slot's waker, and runs until it ends or the connection's
//! future is dropped, as a stream's task would. A stream gets a task of its
//! own, tracked with the connections, when more than `QUEUE` are handed
//! over in one poll of the connection or `SLOTS` are in flight on it.
//! Nothing here locks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use tokio_util::task::TaskTracker;

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The bit in `Wakeups::ready` of the connection itself; slot `i` has bit
/// `i + 1`.
const CONN: u64 = 1;
/// Streams polled in the connection's task at once (one bit each beside
/// the connection's).
const SLOTS: usize = 63;
/// Streams hyper may hand over in one poll of the connection before they
/// find a slot (it accepts every stream the client has opened); past it
/// they get a task of their own.
const QUEUE: usize = 32;
/// Rounds of one poll before the task yields to the others on its runtime.
const ROUNDS: usize = 16;

/// What the executor, the wakers and the connection's future share: one
/// allocation per connection.
struct Wakeups {
    /// Streams hyper handed over, not yet in a slot.
    queue: ArrayQueue<StreamFuture>,
    /// What has been woken since the last look: `CONN` and slot bits.
    ready: AtomicU64,
    /// The connection's task, when it waits.
    task: AtomicWaker,
    /// Where streams past `SLOTS` and `QUEUE` run.
    overflow: TaskTracker,
}

/// hyper's executor for one HTTP/2 connection. A clone (one per stream,
/// kept by hyper in the stream's future) costs one atomic increment.
#[derive(Clone)]
pub struct StreamExec(Arc<Wakeups>);

impl StreamExec {
    /// `overflow` runs the streams that find no slot.
    pub fn new(overflow: TaskTracker) -> Self {
        StreamExec(Arc::new(Wakeups {
            queue: ArrayQueue::new(QUEUE),
            ready: AtomicU64::new(CONN),
            task: AtomicWaker::new(),
            overflow,
        }))
    }
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        if let Err(future) = self.0.queue.push(Box::pin(future)) {
            self.0.overflow.spawn(future);
            return;
        }
        // Called from the connection's poll, which takes the queue next;
        // the wake is for a call from anywhere else.
        self.0.task.wake();
    }
}

impl Wakeups {
    fn wake(&self, bits: u64) {
        self.ready.fetch_or(bits, Ordering::AcqRel);
        self.task.wake();
    }

    fn has_work(&self) -> bool {
        self.ready.load(Ordering::Acquire) != 0 || !self.queue.is_empty()
    }
}

/// The waker of the connection (`bit` `CONN`) or of one slot.
struct Wakeup {
    bit: u64,
    wakeups: Arc<Wakeups>,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wakeups.wake(self.bit);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakeups.wake(self.bit);
    }
}

fn waker(bit: u64, wakeups: &Arc<Wakeups>) -> Waker {
    Waker::from(Arc::new(Wakeup {
        bit,
        wakeups: Arc::clone(wakeups),
    }))
}

struct Slot {
    future: Option<StreamFuture>,
    /// Made once with the slot; every stream in it is polled with it.
    waker: Waker,
}

/// An HTTP/2 connection (`C`, hyper's, built with `StreamExec`) and the
/// streams it started. Ends with the connection's result once the
/// connection and every stream in a slot have ended.
pub struct WithStreams<C: Future> {
    conn: C,
    shut_down: fn(Pin<&mut C>),
    /// The connection's result, once it has one.
    ended: Option<C::Output>,
    conn_waker: Waker,
    wakeups: Arc<Wakeups>,
    slots: Vec<Slot>,
    /// Slot bits (as in `Wakeups::ready`) of the slots that hold a stream.
    busy: u64,
}

impl<C> WithStreams<C>
where
    C: Future + Unpin,
    C::Output: Unpin,
{
    /// `exec` is the executor `conn` was built with; `shut_down` asks `conn`
    /// to finish gracefully.
    pub fn new(conn: C, exec: &StreamExec, shut_down: fn(Pin<&mut C>)) -> Self {
        WithStreams {
            conn,
            shut_down,
            ended: None,
            conn_waker: waker(CONN, &exec.0),
            wakeups: Arc::clone(&exec.0),
            slots: Vec::new(),
            busy: 0,
        }
    }

    /// Asks the connection to finish what it has started and close (h2's
    /// GOAWAY); the streams run to their end.
    pub fn graceful_shutdown(self: Pin<&mut Self>) {
        let this = self.get_mut();
        if this.ended.is_none() {
            (this.shut_down)(Pin::new(&mut this.conn));
            this.wakeups.wake(CONN);
        }
    }

    /// Puts `future` in the free slot with the lowest index (the one most
    /// recently used, likeliest still in the cache) and returns its bit, or
    /// gives it a task of its own when every slot is taken (bit 0).
    fn place(&mut self, future: StreamFuture) -> u64 {
        let index = (!self.busy & !CONN).trailing_zeros() as usize - 1;
        if index >= SLOTS {
            self.wakeups.overflow.spawn(future);
            return 0;
        }
        let bit = 1 << (index + 1);
        if index == self.slots.len() {
            self.slots.push(Slot {
                future: None,
                waker: waker(bit, &self.wakeups),
            });
        }
        self.slots[index].future = Some(future);
        self.busy |= bit;
        bit
    }

    /// Polls the streams whose bits are in `ready`.
    fn poll_streams(&mut self, mut ready: u64) {
        ready &= self.busy;
        while ready != 0 {
            let bit = ready & ready.wrapping_neg();
            ready &= !bit;
            let slot = &mut self.slots[bit.trailing_zeros() as usize - 1];
            let Some(future) = slot.future.as_mut() else {
                continue;
            };
            let mut cx = Context::from_waker(&slot.waker);
            if future.as_mut().poll(&mut cx).is_ready() {
                slot.future = None;
                self.busy &= !bit;
            }
        }
    }
}

impl<C> Future for WithStreams<C>
where
    C: Future + Unpin,
    C::Output: Unpin,
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.get_mut();
        // Wakes while this poll runs only set bits: the loop sees them.
        drop(this.wakeups.task.take());
        for _ in 0..ROUNDS {
            let mut ready = this.wakeups.ready.swap(0, Ordering::AcqRel);
            if ready == 0 && this.wakeups.queue.is_empty() {
                this.wakeups.task.register(cx.waker());
                if this.wakeups.has_work() {
                    continue;
                }
                if this.busy == 0
                    && let Some(result) = this.ended.take()
                {
                    return Poll::Ready(result);
                }
                return Poll::Pending;
            }
            if ready & CONN != 0 && this.ended.is_none() {
                let mut conn_cx = Context::from_waker(&this.conn_waker);
                if let Poll::Ready(result) = Pin::new(&mut this.conn).poll(&mut conn_cx) {
                    this.ended = Some(result);
                }
            }
            while let Some(future) = this.wakeups.queue.pop() {
                ready |= this.place(future);
            }
            this.poll_streams(ready);
            if !tokio::task::coop::has_budget_remaining() {
                break;
            }
        }
        // Still busy: let the runtime's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<C: Future> Drop for WithStreams<C> {
    fn drop(&mut self) {
        // A queued stream holds a `StreamExec`, which holds the queue.
        while self.wakeups.queue.pop().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    /// Stands in for hyper's connection: hands `streams` to the executor at
    /// its first poll, then ends once `end` fires.
    struct FakeConn {
        exec: StreamExec,
        streams: Vec<StreamFuture>,
        end: oneshot::Receiver<()>,
    }

    impl Future for FakeConn {
        type Output = &'static str;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            for stream in std::mem::take(&mut self.streams) {
                hyper::rt::Executor::execute(&self.exec, stream);
            }
            Pin::new(&mut self.end).poll(cx).map(|_| "ended")
        }
    }

    /// 100 streams from one poll: 32 fit the queue and find slots, the rest
    /// run in tasks of their own; each runs when woken, and the connection's
    /// result comes once every stream in a slot has ended.
    #[tokio::test]
    async fn streams_run_in_slots_or_their_own_tasks_and_the_connection_ends_after_them() {
        let tracker = TaskTracker::new();
        let exec = StreamExec::new(tracker.clone());
        let done = Arc::new(AtomicUsize::new(0));
        let mut go = Vec::new();
        let mut streams: Vec<StreamFuture> = Vec::new();
        for _ in 0..100 {
            let (tx, rx) = oneshot::channel::<()>();
            go.push(tx);
            let done = Arc::clone(&done);
            streams.push(Box::pin(async move {
                let _ = rx.await;
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        let (end, ended) = oneshot::channel();
        let conn = FakeConn {
            exec: exec.clone(),
            streams,
            end: ended,
        };
        let mut with = WithStreams::new(conn, &exec, |_| {});
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut with).poll(&mut cx).is_pending());
        assert_eq!(with.slots.len(), QUEUE, "the queued streams took slots");
        assert_eq!(tracker.len(), 100 - QUEUE, "the rest run on their own");
        end.send(()).expect("the connection waits");
        for tx in go.drain(..QUEUE / 2) {
            tx.send(()).expect("the stream waits");
        }
        assert!(
            Pin::new(&mut with).poll(&mut cx).is_pending(),
            "streams in slots still run"
        );
        assert_eq!(with.busy.count_ones() as usize, QUEUE / 2);
        for tx in go {
            tx.send(()).expect("the stream waits");
        }
        assert_eq!(Pin::new(&mut with).poll(&mut cx), Poll::Ready("ended"));
        tracker.close();
        tracker.wait().await;
        assert_eq!(done.load(Ordering::SeqCst), 100);
    }

    /// A slot freed by one stream is the next one's, with the same waker.
    #[tokio::test]
    async fn a_freed_slot_is_taken_by_the_next_stream() {
        let exec = StreamExec::new(TaskTracker::new());
        let (_end, ended) = oneshot::channel();
        let conn = FakeConn {
            exec: exec.clone(),
            streams: Vec::new(),
            end: ended,
        };
        let mut with = WithStreams::new(conn, &exec, |_| {});
        let mut cx = Context::from_waker(Waker::noop());
        let first = with.place(Box::pin(std::future::pending()));
        let second = with.place(Box::pin(std::future::ready(())));
        assert_eq!((first, second), (1 << 1, 1 << 2));
        with.poll_streams(second);
        assert_eq!(with.busy, first, "the ended stream left its slot");
        assert_eq!(with.place(Box::pin(std::future::pending())), second);
        assert_eq!(with.slots.len(), 2);
        assert!(Pin::new(&mut with).poll(&mut cx).is_pending());
    }
}
