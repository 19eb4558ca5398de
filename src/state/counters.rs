//! Per-server traffic counters: the one source for the stats page, the JSON
//! API, the CSV export and Prometheus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::now_millis;

/// How many recent samples the moving averages cover, like HAProxy's stats.
const AVERAGE_SAMPLES: u64 = 1024;

/// Upper bounds, in seconds, of the total-time histogram's buckets; a last
/// bucket takes everything slower.
pub const TIME_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Response status class, for `hrsp_1xx`..`hrsp_5xx` and "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    Other,
}

impl StatusClass {
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Other,
    ];

    pub fn of(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    /// `1xx`..`5xx`, or `other`.
    pub fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
        }
    }

    fn index(self) -> usize {
        match self {
            StatusClass::Informational => 0,
            StatusClass::Success => 1,
            StatusClass::Redirection => 2,
            StatusClass::ClientError => 3,
            StatusClass::ServerError => 4,
            StatusClass::Other => 5,
        }
    }
}

/// Counters of one server (or of one backend or frontend total).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    active: AtomicU64,
    max_active: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    responses: [AtomicU64; 6],
    connection_errors: AtomicU64,
    response_errors: AtomicU64,
    retries: AtomicU64,
    redispatches: AtomicU64,
    last_request: AtomicU64,
    tunnels: AtomicU64,
    panics: AtomicU64,
    avg_connect_us: AtomicU64,
    avg_response_us: AtomicU64,
    avg_total_us: AtomicU64,
    timed_samples: AtomicU64,
    /// Requests by total time, one per `TIME_BUCKETS` bound plus one slower.
    time_buckets: [AtomicU64; 13],
    time_sum_us: AtomicU64,
}

/// A point-in-time copy of `Counters`, for rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub requests: u64,
    pub active: u64,
    pub max_active: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// 1xx, 2xx, 3xx, 4xx, 5xx, other.
    pub responses: [u64; 6],
    pub connection_errors: u64,
    pub response_errors: u64,
    pub retries: u64,
    pub redispatches: u64,
    /// Unix ms of the last request, 0 if none.
    pub last_request: u64,
    pub tunnels: u64,
    /// Requests whose handling panicked (answered 500).
    pub panics: u64,
    pub avg_connect_us: u64,
    pub avg_response_us: u64,
    pub avg_total_us: u64,
    /// Requests by total time, not cumulative: one per `TIME_BUCKETS` bound,
    /// then the slower ones.
    pub time_buckets: [u64; 13],
    /// Sum of the total times, in microseconds.
    pub time_sum_us: u64,
}

impl Counters {
    /// Counts a new request and returns the guard that keeps it active.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now_active = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_active.fetch_max(now_active, Ordering::Relaxed);
        self.last_request.store(now_millis(), Ordering::Relaxed);
        InFlight {
            counters: Arc::clone(self),
        }
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn count_response(&self, status: u16) {
        self.responses[StatusClass::of(status).index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_connection_error(&self) {
        self.connection_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_response_error(&self) {
        self.response_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_redispatch(&self) {
        self.redispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// A request's handling panicked (it was answered 500).
    pub fn count_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
    }

    pub fn tunnel_closed(&self) {
        self.tunnels.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds one request's timings to the moving averages.
    pub fn record_timings(&self, connect: Duration, response: Duration, total: Duration) {
        let n = (self.timed_samples.fetch_add(1, Ordering::Relaxed) + 1).min(AVERAGE_SAMPLES);
        update_average(&self.avg_connect_us, connect, n);
        update_average(&self.avg_response_us, response, n);
        update_average(&self.avg_total_us, total, n);
        let secs = total.as_secs_f64();
        let bucket = TIME_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(TIME_BUCKETS.len());
        self.time_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.time_sum_us.fetch_add(
            u64::try_from(total.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            requests: r(&self.requests),
            active: r(&self.active),
            max_active: r(&self.max_active),
            bytes_in: r(&self.bytes_in),
            bytes_out: r(&self.bytes_out),
            responses: [
                r(&self.responses[0]),
                r(&self.responses[1]),
                r(&self.responses[2]),
                r(&self.responses[3]),
                r(&self.responses[4]),
                r(&self.responses[5]),
            ],
            connection_errors: r(&self.connection_errors),
            response_errors: r(&self.response_errors),
            retries: r(&self.retries),
            redispatches: r(&self.redispatches),
            last_request: r(&self.last_request),
            tunnels: r(&self.tunnels),
            panics: r(&self.panics),
            avg_connect_us: r(&self.avg_connect_us),
            avg_response_us: r(&self.avg_response_us),
            avg_total_us: r(&self.avg_total_us),
            time_buckets: std::array::from_fn(|i| r(&self.time_buckets[i])),
            time_sum_us: r(&self.time_sum_us),
        }
    }
}

/// A sliding average over the last `n` samples (HAProxy's `swrate_add`).
fn update_average(avg: &AtomicU64, sample: Duration, n: u64) {
    let sample = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX);
    // Racing writers may lose a sample; an average tolerates that.
    let old = avg.load(Ordering::Relaxed);
    let new = if sample >= old {
        old + (sample - old) / n
    } else {
        old - (old - sample) / n
    };
    avg.store(new, Ordering::Relaxed);
}

/// One active request; dropping it ends the request, whatever path it took.
#[derive(Debug)]
pub struct InFlight {
    counters: Arc<Counters>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_guard_ends_the_request_on_drop() {
        let c = Arc::new(Counters::default());
        let a = c.begin();
        let b = c.begin();
        assert_eq!(c.active(), 2);
        drop(a);
        assert_eq!(c.active(), 1);
        drop(b);
        let s = c.snapshot();
        assert_eq!((s.requests, s.active, s.max_active), (2, 0, 2));
    }

    #[test]
    fn averages_follow_samples() {
        let c = Counters::default();
        c.record_timings(
            Duration::from_micros(100),
            Duration::from_micros(200),
            Duration::from_micros(300),
        );
        c.record_timings(
            Duration::from_micros(300),
            Duration::from_micros(200),
            Duration::from_micros(300),
        );
        let s = c.snapshot();
        assert_eq!(
            (s.avg_connect_us, s.avg_response_us, s.avg_total_us),
            (200, 200, 300)
        );
        assert_eq!(
            s.time_buckets[0], 2,
            "both took 300 us: the first bucket, up to 1 ms"
        );
        assert_eq!(s.time_sum_us, 600);
        c.record_timings(Duration::ZERO, Duration::ZERO, Duration::from_secs(30));
        assert_eq!(c.snapshot().time_buckets[12], 1, "slower than every bound");
    }

    #[test]
    fn status_classes() {
        for (status, label) in [
            (101, "1xx"),
            (204, "2xx"),
            (302, "3xx"),
            (404, "4xx"),
            (503, "5xx"),
            (99, "other"),
        ] {
            assert_eq!(StatusClass::of(status).label(), label, "{status}");
        }
    }
}
