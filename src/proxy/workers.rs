//! Where client connections are served. `run` gives the proxy worker
//! threads of its own, each a single-threaded tokio runtime with its own
//! accept loop per frontend (an `SO_REUSEPORT` socket each, so the kernel
//! spreads new connections over them) and its own lane of every upstream
//! pool. A connection and everything it starts (upstream connections,
//! tunnels, timers) stay on the worker that accepted it, so a request never
//! crosses threads. The control plane (reloads, health checks, the admin
//! server, the access log writer) runs on the caller's runtime.
//! Embedded starts (tests, `demo`) serve on the caller's runtime instead.

use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How far ahead each worker always has a timer due (`anchor_timers`).
pub(super) const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// The runtimes that serve client connections.
#[derive(Debug)]
pub struct Workers {
    handles: Box<[Handle]>,
    /// Each worker thread's stop signal and handle; empty for the caller's
    /// runtime.
    threads: Mutex<Vec<Worker>>,
}

#[derive(Debug)]
struct Worker {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Workers {
    /// Serves on the runtime of the caller: one worker, no thread.
    pub fn caller() -> Self {
        Workers {
            handles: Box::new([Handle::current()]),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Starts `count` worker threads (`switchyard-w0`, ...), each running a
    /// single-threaded runtime until `stop`.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let (running, started) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-w{index}"))
                .spawn(move || {
                    crate::upstream::set_lane(index);
                    let _ = running.send(());
                    runtime.block_on(async {
                        tokio::select! {
                            _ = stopped => {}
                            never = anchor_timers() => match never {},
                        }
                    });
                    // Dropping the runtime cuts what is still running on it.
                    drop(runtime);
                })?;
            // Returns with every worker running (and named), not just spawned.
            let _ = started.recv();
            threads.push(Worker { stop, thread });
        }
        Ok(Workers {
            handles: handles.into(),
            threads: Mutex::new(threads),
        })
    }

    /// One handle per worker; index = lane.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Ends the worker threads, cutting whatever still runs on them, and
    /// waits for them to exit. Nothing for the caller's runtime.
    pub async fn stop(&self) {
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for worker in threads {
                let _ = worker.stop.send(());
                if worker.thread.join().is_err() {
                    tracing::error!("a worker thread panicked");
                }
            }
        });
        let _ = joined.await;
    }
}

/// Keeps a timer due within `TIMER_ANCHOR` on the worker's runtime, for
/// good. tokio's time driver wakes its own thread (an eventfd write, then
/// an extra `epoll_wait`) whenever a timer is set to fire before every
/// timer it had when it last went to sleep, and into an empty wheel every
/// timer does. A worker whose connections each carry one request often
/// has no timer at all, and then set two per connection (the client's read
/// deadline and the server's response timeout), each waking the thread:
/// about two syscalls per connection. With the anchor, only timers shorter
/// than a second can do that (every default is longer), for the price of
/// one wake a second.
async fn anchor_timers() -> std::convert::Infallible {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Poll;
    use std::time::Duration;

    use super::Workers;

    /// Write system calls made by the calling thread so far.
    fn thread_writes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines()
            .find_map(|line| line.strip_prefix("syscw: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("a syscw line")
    }

    /// A connection's deadline, as the worker sets it: a timer polled once
    /// (so it enters the wheel), then dropped when the connection ends.
    async fn set_and_drop_a_timer() {
        let sleep = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(sleep);
        std::future::poll_fn(|cx| {
            assert!(sleep.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }

    /// Without the worker's anchor timer, a timer set after the worker
    /// slept with no timer at all goes into an empty wheel, and tokio's time
    /// driver wakes the worker's own thread with an eventfd write: one per
    /// connection deadline when each connection carries one request. Here
    /// the worker sleeps on a socket between timers, as between connections.
    #[test]
    fn setting_timers_on_a_worker_does_not_wake_its_own_thread() {
        use std::io::Write;
        use tokio::io::AsyncReadExt;

        let workers = Workers::start(1).expect("a worker");
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        theirs.set_nonblocking(true).expect("nonblocking");
        let (asked, asks) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        workers.handles()[0].spawn(async move {
            let mut theirs = tokio::net::UnixStream::from_std(theirs).expect("registered");
            let mut byte = [0u8; 1];
            let before = thread_writes();
            for _ in 0..100 {
                let _ = asked.send(());
                theirs.read_exact(&mut byte).await.expect("a byte");
                set_and_drop_a_timer().await;
            }
            let _ = tx.send(thread_writes() - before);
        });
        for _ in 0..100 {
            asks.recv().expect("the worker asks");
            ours.write_all(b"x").expect("write");
        }
        let writes = rx.recv().expect("the worker reports");
        assert!(writes < 5, "{writes} writes for 100 timers");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(workers.stop());
    }
}
