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

use tokio::runtime::Handle;
use tokio::sync::oneshot;

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
                    let _ = runtime.block_on(stopped);
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
