//! Idle keep-alive connections to servers.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::UpstreamConn;
use crate::model::{BackendName, ServerName};

/// How many idle connections one server keeps at most.
const IDLE_PER_SERVER: usize = 1024;

thread_local! {
    /// The pool lane of this thread: its worker index, 0 on any other thread.
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// Makes the calling thread use lane `lane` of every pool: a worker thread
/// sets its index once, so a connection is reused on the thread whose
/// runtime drives it.
pub fn set_lane(lane: usize) {
    LANE.with(|l| l.set(lane));
}

/// Idle connections to one server address, in one lane per worker thread.
/// Checking out and returning are lock-free; a clone of the `Arc` costs one
/// atomic increment.
#[derive(Debug)]
pub struct ServerPool {
    pub addr: SocketAddr,
    lanes: Box<[ArrayQueue<(UpstreamConn, Instant)>]>,
    /// Connections idle longer than this are closed, not reused: it must stay
    /// below the servers' own keep-alive timeout.
    idle_timeout: Duration,
}

impl ServerPool {
    pub fn new(addr: SocketAddr, idle_timeout: Duration, lanes: usize) -> Self {
        let lanes = lanes.max(1);
        let per_lane = IDLE_PER_SERVER.div_ceil(lanes);
        ServerPool {
            addr,
            lanes: (0..lanes).map(|_| ArrayQueue::new(per_lane)).collect(),
            idle_timeout,
        }
    }

    /// This thread's lane.
    fn lane(&self) -> &ArrayQueue<(UpstreamConn, Instant)> {
        &self.lanes[LANE.with(Cell::get) % self.lanes.len()]
    }

    /// An idle connection of this thread's lane that is still open and
    /// was idle less than the idle timeout at `now`, if any.
    pub fn checkout(&self, now: Instant) -> Option<UpstreamConn> {
        let idle = self.lane();
        while let Some((mut conn, since)) = idle.pop() {
            if now.saturating_duration_since(since) < self.idle_timeout && conn.is_idle_open() {
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose last response ended cleanly at `ended`.
    /// A full pool drops it, which closes it.
    pub fn checkin(&self, mut conn: UpstreamConn, ended: Instant) {
        conn.shrink_idle();
        let _rejected = self.lane().push((conn, ended));
    }

    pub fn idle_count(&self) -> usize {
        self.lanes.iter().map(ArrayQueue::len).sum()
    }

    /// Idle connections still open, in every lane. Takes each connection
    /// out and puts it back (closed ones are dropped): for tests and
    /// inspection, never for the request path.
    pub fn open_idle(&self) -> usize {
        self.sweep()
    }

    /// Closes the idle connections that the server closed or that waited
    /// past the idle timeout, in every lane; how many are left. No task
    /// watches an idle connection, so this is what frees their sockets
    /// when no request comes to take them.
    fn sweep(&self) -> usize {
        let mut open = 0;
        for lane in &self.lanes {
            for _ in 0..lane.len() {
                let Some((mut conn, since)) = lane.pop() else {
                    break;
                };
                if since.elapsed() < self.idle_timeout && conn.is_idle_open() {
                    open += 1;
                    let _full = lane.push((conn, since));
                }
            }
        }
        open
    }
}

/// Every server's pool, kept across reloads by (backend, server, address): a
/// server whose address changes starts with an empty pool.
#[derive(Debug, Clone)]
pub struct PoolRegistry {
    pools: Arc<Mutex<PoolMap>>,
    /// Lanes per pool: one per worker thread.
    lanes: usize,
}

type PoolMap = HashMap<(BackendName, ServerName, SocketAddr), Arc<ServerPool>>;

impl PoolRegistry {
    pub fn new(lanes: usize) -> Self {
        PoolRegistry {
            pools: Arc::default(),
            lanes,
        }
    }

    /// Taken when a snapshot is built, never per request.
    pub fn pool(
        &self,
        backend: &BackendName,
        server: &ServerName,
        addr: SocketAddr,
        idle_timeout: Duration,
    ) -> Arc<ServerPool> {
        let mut map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let key = (backend.clone(), server.clone(), addr);
        Arc::clone(
            map.entry(key)
                .or_insert_with(|| Arc::new(ServerPool::new(addr, idle_timeout, self.lanes))),
        )
    }

    /// Closes every pool's idle connections that are closed or expired
    /// (`ServerPool::sweep`). Run every few seconds off the request path.
    pub fn sweep(&self) {
        let pools: Vec<Arc<ServerPool>> = {
            let map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            map.values().cloned().collect()
        };
        for pool in pools {
            pool.sweep();
        }
    }

    /// Drops the pools no snapshot refers to any more, closing their
    /// connections once the last request using them ends.
    pub fn retain(&self, keep: impl Fn(&BackendName, &ServerName, SocketAddr) -> bool) {
        let mut map = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(b, s, a), _| keep(b, s, *a));
    }
}
