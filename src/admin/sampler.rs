//! Request-rate history for the page's charts and the rate columns: every
//! `INTERVAL` the sampler reads each server's and frontend's request and
//! error counters and keeps the rates of the last `SAMPLES` intervals.
//! Invariant: it only reads counters (one source); its mutex is taken by the
//! sampler task and by renders, never on the request path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{BackendName, FrontendName, ServerName};
use crate::runtime::{Runtime, Snapshot};
use crate::state::CountersSnapshot;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept per series: five minutes.
pub const SAMPLES: usize = 60;

/// Whose counters a series follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Frontend(FrontendName),
    Server(BackendName, ServerName),
}

/// Rates over one interval, per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    pub requests: f64,
    pub errors: f64,
}

/// What the renders show of one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Requests per second, over the time since the last sample when that is
    /// at least a second, else over the last interval.
    pub current: f64,
    pub max: f64,
    /// Oldest first.
    pub history: Vec<Sample>,
}

#[derive(Debug)]
struct Series {
    requests: u64,
    errors: u64,
    at: Instant,
    samples: VecDeque<Sample>,
    max: f64,
}

/// The history of every series. Shared as `Arc<Sampler>`.
#[derive(Debug, Default)]
pub struct Sampler {
    series: Mutex<HashMap<Key, Series>>,
}

/// Requests and errors (5xx answers, connection and response errors).
fn totals(c: &CountersSnapshot) -> (u64, u64) {
    (
        c.requests,
        c.responses[4] + c.connection_errors + c.response_errors,
    )
}

impl Sampler {
    /// Samples every `INTERVAL` until `shutdown`.
    pub async fn run(self: Arc<Self>, runtime: Arc<Runtime>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => self.record(&runtime.snapshot(), Instant::now()),
            }
        }
    }

    /// Takes one sample of every series in `snapshot`; drops series that
    /// left it.
    pub fn record(&self, snapshot: &Snapshot, now: Instant) {
        let mut current: Vec<(Key, CountersSnapshot)> = Vec::new();
        for f in snapshot.frontends.iter() {
            current.push((Key::Frontend(f.name.clone()), f.counters.snapshot()));
        }
        for b in snapshot.backends.iter() {
            for s in b.servers.iter() {
                let key = Key::Server(b.name.clone(), s.state.server.clone());
                current.push((key, s.state.counters.snapshot()));
            }
        }
        self.observe(current, now);
    }

    /// Adds one sample per series from `current`; drops the others.
    fn observe(&self, current: Vec<(Key, CountersSnapshot)>, now: Instant) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.retain(|key, _| current.iter().any(|(k, _)| k == key));
        for (key, counters) in current {
            let (requests, errors) = totals(&counters);
            match series.get_mut(&key) {
                None => {
                    let fresh = Series {
                        requests,
                        errors,
                        at: now,
                        samples: VecDeque::with_capacity(SAMPLES),
                        max: 0.0,
                    };
                    series.insert(key, fresh);
                }
                Some(s) => {
                    let seconds = now.duration_since(s.at).as_secs_f64().max(0.001);
                    let sample = Sample {
                        requests: requests.saturating_sub(s.requests) as f64 / seconds,
                        errors: errors.saturating_sub(s.errors) as f64 / seconds,
                    };
                    if s.samples.len() == SAMPLES {
                        s.samples.pop_front();
                    }
                    s.samples.push_back(sample);
                    s.max = s.max.max(sample.requests);
                    (s.requests, s.errors, s.at) = (requests, errors, now);
                }
            }
        }
    }

    /// The rates of one series given its counters now.
    pub fn rates(&self, key: &Key, counters: &CountersSnapshot, now: Instant) -> Rates {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = series.get(key) else {
            return Rates::default();
        };
        let elapsed = now.duration_since(s.at).as_secs_f64();
        let last = s.samples.back().map_or(0.0, |x| x.requests);
        let current = if elapsed >= 1.0 {
            totals(counters).0.saturating_sub(s.requests) as f64 / elapsed
        } else {
            last
        };
        Rates {
            current,
            max: s.max.max(current),
            history: s.samples.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: u64, errors: u64) -> CountersSnapshot {
        let mut c = CountersSnapshot {
            requests,
            ..CountersSnapshot::default()
        };
        c.responses[4] = errors;
        c
    }

    #[test]
    fn rates_from_counter_deltas() {
        let sampler = Sampler::default();
        let key = Key::Frontend(FrontendName::new("web"));
        let gone = Key::Frontend(FrontendName::new("gone"));
        let start = Instant::now();
        sampler.observe(
            vec![
                (key.clone(), counters(0, 0)),
                (gone.clone(), counters(0, 0)),
            ],
            start,
        );
        // 50 requests, 5 of them errors, over 5 s: 10/s and 1/s.
        sampler.observe(vec![(key.clone(), counters(50, 5))], start + INTERVAL);
        let at_sample = sampler.rates(&key, &counters(50, 5), start + INTERVAL);
        assert_eq!(at_sample.current, 10.0);
        let expected = Sample {
            requests: 10.0,
            errors: 1.0,
        };
        assert_eq!(at_sample.history, vec![expected]);
        let later = sampler.rates(&key, &counters(70, 5), start + INTERVAL * 2);
        assert_eq!((later.current, later.max), (4.0, 10.0));
        assert_eq!(
            sampler.rates(&gone, &counters(1, 0), start),
            Rates::default()
        );
    }

    #[test]
    fn keeps_the_last_samples() {
        let sampler = Sampler::default();
        let key = Key::Frontend(FrontendName::new("web"));
        let start = Instant::now();
        for i in 0..=(SAMPLES as u64 + 3) {
            sampler.observe(
                vec![(key.clone(), counters(i * 5, 0))],
                start + INTERVAL * i as u32,
            );
        }
        let rates = sampler.rates(&key, &counters(0, 0), start);
        assert_eq!(rates.history.len(), SAMPLES);
        assert!(rates.history.iter().all(|s| s.requests == 1.0));
    }
}
