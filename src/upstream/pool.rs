//! Idle keep-alive connections to servers.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
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
///
/// A lane is first-in first-out, so under load every idle connection in it
/// is taken in turn and none waits long enough to time out. What the lane
/// does not need is found by counting instead: the fewest connections it
/// held idle over the last idle timeout are the ones a most-recent-first
/// pool would have left untouched that long, and the sweep closes that
/// many. A lane filled by a burst shrinks back to what its load uses
/// within two sweeps (HAProxy purges its idle server connections on a
/// timer too, `pool-purge-delay`).
#[derive(Debug)]
pub struct ServerPool {
    pub addr: SocketAddr,
    lanes: Box<[Lane]>,
    /// Connections idle longer than this are closed, not reused: it must stay
    /// below the servers' own keep-alive timeout.
    idle_timeout: Duration,
}

#[derive(Debug)]
struct Lane {
    idle: ArrayQueue<(UpstreamConn, Instant)>,
    /// The fewest connections `idle` held since the last sweep. Lowered by
    /// the lane's own thread at each checkout, reset by the sweep; the two
    /// may race, which only shifts one estimate by a connection or two.
    fewest: AtomicUsize,
    /// The fewest held in the sweep interval before that one, less the
    /// connections the last sweep closed. Written by the sweep only.
    fewest_before: AtomicUsize,
}

impl Lane {
    fn new(capacity: usize) -> Self {
        Lane {
            idle: ArrayQueue::new(capacity),
            fewest: AtomicUsize::new(0),
            fewest_before: AtomicUsize::new(0),
        }
    }

    /// Notes that the lane holds `held` idle connections now.
    fn holds(&self, held: usize) {
        if held < self.fewest.load(Ordering::Relaxed) {
            self.fewest.store(held, Ordering::Relaxed);
        }
    }
}

impl ServerPool {
    pub fn new(addr: SocketAddr, idle_timeout: Duration, lanes: usize) -> Self {
        let lanes = lanes.max(1);
        let per_lane = IDLE_PER_SERVER.div_ceil(lanes);
        ServerPool {
            addr,
            lanes: (0..lanes).map(|_| Lane::new(per_lane)).collect(),
            idle_timeout,
        }
    }

    /// This thread's lane.
    fn lane(&self) -> &Lane {
        &self.lanes[LANE.with(Cell::get) % self.lanes.len()]
    }

    /// An idle connection of this thread's lane that is still open and
    /// was idle less than the idle timeout at `now`, if any.
    pub fn checkout(&self, now: Instant) -> Option<UpstreamConn> {
        let lane = self.lane();
        while let Some((mut conn, since)) = lane.idle.pop() {
            if now.saturating_duration_since(since) < self.idle_timeout && conn.is_idle_open() {
                lane.holds(lane.idle.len());
                return Some(conn);
            }
        }
        lane.holds(0);
        None
    }

    /// Returns a connection whose last response ended cleanly at `ended`.
    /// A full pool drops it, which closes it.
    pub fn checkin(&self, mut conn: UpstreamConn, ended: Instant) {
        conn.shrink_idle();
        let _rejected = self.lane().idle.push((conn, ended));
    }

    pub fn idle_count(&self) -> usize {
        self.lanes.iter().map(|lane| lane.idle.len()).sum()
    }

    /// Idle connections still open, in every lane. Takes each connection
    /// out and puts it back (closed ones are dropped): for tests and
    /// inspection, never for the request path. Unlike the sweep, it closes
    /// no connection that is open and within its idle timeout.
    pub fn open_idle(&self) -> usize {
        self.lanes.iter().map(|lane| self.prune(lane, 0)).sum()
    }

    /// Closes the idle connections that the server closed, that waited past
    /// the idle timeout, or that the lane did not need over the last two
    /// sweep intervals, in every lane; how many are left. No task watches
    /// an idle connection, so this is what frees their sockets when no
    /// request comes to take them. Run every `POOL_SWEEP`, half the idle
    /// timeout, so two intervals span one timeout.
    fn sweep(&self) -> usize {
        let mut open = 0;
        for lane in &self.lanes {
            let fewest = lane.fewest.load(Ordering::Relaxed);
            let unused = fewest.min(lane.fewest_before.load(Ordering::Relaxed));
            let left = self.prune(lane, unused);
            lane.fewest_before
                .store(fewest.saturating_sub(unused).min(left), Ordering::Relaxed);
            lane.fewest.store(left, Ordering::Relaxed);
            open += left;
        }
        open
    }

    /// Takes every connection of `lane` out once: closes the first `surplus`
    /// and those closed or expired, puts the others back; how many it put
    /// back.
    fn prune(&self, lane: &Lane, surplus: usize) -> usize {
        let mut kept = 0;
        for taken in 0..lane.idle.len() {
            let Some((mut conn, since)) = lane.idle.pop() else {
                break;
            };
            if taken >= surplus && since.elapsed() < self.idle_timeout && conn.is_idle_open() {
                kept += 1;
                let _full = lane.idle.push((conn, since));
            }
        }
        kept
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::conn::connected;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A pool of one lane holding `n` open idle connections, and the
    /// servers' sides of them, kept open.
    async fn filled(n: usize) -> (ServerPool, Vec<tokio::net::TcpStream>) {
        let pool = ServerPool::new("127.0.0.1:1".parse().expect("addr"), HOUR, 1);
        let mut servers = Vec::new();
        for _ in 0..n {
            let (conn, server) = connected().await;
            pool.checkin(conn, Instant::now());
            servers.push(server);
        }
        (pool, servers)
    }

    /// `n` requests at once: `n` connections out of the pool, then back.
    fn load(pool: &ServerPool, n: usize) {
        let out: Vec<UpstreamConn> = (0..n)
            .map(|_| pool.checkout(Instant::now()).expect("an idle connection"))
            .collect();
        for conn in out {
            pool.checkin(conn, Instant::now());
        }
    }

    #[tokio::test]
    async fn a_lane_filled_by_a_burst_shrinks_to_what_its_load_uses_in_two_sweeps() {
        let (pool, _servers) = filled(10).await;
        // The interval in which the burst filled the lane: all used.
        assert_eq!(pool.sweep(), 10);
        // Two intervals of a load of two requests at a time.
        load(&pool, 2);
        assert_eq!(pool.sweep(), 10, "one interval is not enough to judge");
        load(&pool, 2);
        assert_eq!(pool.sweep(), 2);
        for _ in 0..3 {
            load(&pool, 2);
            assert_eq!(pool.sweep(), 2, "what the load uses is kept");
        }
        // No request for two intervals: none is needed.
        assert_eq!(pool.sweep(), 2);
        assert_eq!(pool.sweep(), 0);
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_used_in_one_of_every_two_intervals_is_kept() {
        let (pool, _servers) = filled(1).await;
        for _ in 0..4 {
            load(&pool, 1);
            assert_eq!(pool.sweep(), 1);
            assert_eq!(pool.sweep(), 1);
        }
        assert_eq!(pool.open_idle(), 1);
    }
}
