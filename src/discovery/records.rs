//! `discover`: looks up each backend's name every `every` and sends the
//! addresses found to the writer (`Command::Discovered`), which turns them
//! into slot servers. Follows the running snapshot for the names to look up
//! and the name servers to ask.
//! Invariant: only a successful, non-empty answer is sent; a failed or empty
//! lookup keeps the last good set (logged once when it starts and when it
//! ends), so DNS trouble never empties a backend. The task never builds or
//! swaps a snapshot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lookup::{LookupError, lookup};
use crate::model::{BackendName, Discover, ServerAddress, Topology};
use crate::runtime::{Command, ReloadError, Runtime, Snapshot};

/// After a failed or empty lookup, the next one comes at most this late,
/// however long `every` is.
const RETRY: Duration = Duration::from_secs(5);

/// The first lookup of every `discover` name of `topology`, all at once, for
/// the first snapshot (`Reloader::discover_first`); failed and empty ones
/// are left out (and logged).
pub async fn first_lookups(
    topology: &Topology,
) -> Vec<(BackendName, ServerAddress, Vec<SocketAddr>)> {
    let mut set = tokio::task::JoinSet::new();
    for job in jobs(topology) {
        let resolvers = topology.global.resolvers.clone();
        set.spawn(async move {
            let result = lookup(&job.discover.dns, &resolvers).await;
            (job, result)
        });
    }
    let mut found = Vec::new();
    while let Some(joined) = set.join_next().await {
        let Ok((job, result)) = joined else { continue };
        match usable(result) {
            Ok(records) => found.push((job.backend, job.discover.dns, records)),
            Err(why) => {
                tracing::warn!(backend = %job.backend, dns = %job.discover.dns, "discover: {why}; the backend starts without discovered servers and the name is looked up again");
            }
        }
    }
    found
}

/// Looks up every `discover` name of the running topology on its schedule.
pub struct Discoverer {
    runtime: Arc<Runtime>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

/// One backend's name to look up, as the running file has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Job {
    backend: BackendName,
    discover: Discover,
}

/// A job and where it stands.
struct Scheduled {
    job: Job,
    due: Instant,
    /// Why the last lookup gave nothing, while it does.
    trouble: Option<String>,
}

impl Discoverer {
    pub fn new(runtime: Arc<Runtime>) -> Discoverer {
        let snapshots = runtime.subscribe();
        Discoverer { runtime, snapshots }
    }

    /// Looks names up until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut topology = Arc::clone(&self.snapshots.borrow_and_update().topology);
        let mut scheduled = reschedule(Vec::new(), jobs(&topology), Instant::now());
        loop {
            let next = scheduled.iter().map(|s| s.due).min();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    topology = Arc::clone(&self.snapshots.borrow_and_update().topology);
                    scheduled = reschedule(scheduled, jobs(&topology), Instant::now());
                }
                () = wait => {
                    let now = Instant::now();
                    for s in scheduled.iter_mut().filter(|s| s.due <= now) {
                        let is_ok = self.look_up(s, &topology.global.resolvers).await;
                        let every = s.job.discover.every;
                        s.due = Instant::now() + if is_ok { every } else { every.min(RETRY) };
                    }
                }
            }
        }
    }

    /// One lookup of `s`'s name, sent to the writer when usable; whether it was.
    async fn look_up(&self, s: &mut Scheduled, resolvers: &[SocketAddr]) -> bool {
        let Job { backend, discover } = &s.job;
        match usable(lookup(&discover.dns, resolvers).await) {
            Ok(records) => {
                if s.trouble.take().is_some() {
                    tracing::info!(backend = %backend, dns = %discover.dns, "discover: the name answers again");
                }
                let command = Command::Discovered {
                    backend: backend.clone(),
                    dns: discover.dns.clone(),
                    records,
                };
                match self.runtime.ask(command).await {
                    // A name the file dropped meanwhile, or shutting down.
                    Ok(_) | Err(ReloadError::NotFound(_) | ReloadError::Stopped) => {}
                    Err(e) => {
                        tracing::error!(backend = %backend, dns = %discover.dns, "discover: applying the servers found failed: {e}");
                    }
                }
                true
            }
            Err(why) => {
                if s.trouble.as_deref() != Some(why.as_str()) {
                    tracing::warn!(backend = %backend, dns = %discover.dns, "discover: {why}; keeping the last good servers");
                    s.trouble = Some(why);
                }
                false
            }
        }
    }
}

/// The addresses of a lookup that can replace the set, or why it cannot.
fn usable(result: Result<Vec<SocketAddr>, LookupError>) -> Result<Vec<SocketAddr>, String> {
    match result {
        Ok(records) if records.is_empty() => Err("the name has no address".to_owned()),
        Ok(records) => Ok(records),
        Err(e) => Err(format!("lookup failed: {e}")),
    }
}

/// Every backend with `discover` in `topology`.
fn jobs(topology: &Topology) -> Vec<Job> {
    topology
        .backends
        .iter()
        .filter_map(|b| {
            b.discover.as_ref().map(|d| Job {
                backend: b.name.clone(),
                discover: d.clone(),
            })
        })
        .collect()
}

/// The schedule for `jobs`: a job that was already scheduled keeps its
/// time and trouble, a new or changed one is due `now`.
fn reschedule(before: Vec<Scheduled>, jobs: Vec<Job>, now: Instant) -> Vec<Scheduled> {
    let mut before = before;
    jobs.into_iter()
        .map(|job| match before.iter().position(|s| s.job == job) {
            Some(i) => before.swap_remove(i),
            None => Scheduled {
                job,
                due: now,
                trouble: None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_successful_answer_with_addresses_replaces_the_set() {
        let addr: SocketAddr = SocketAddr::from(([10, 0, 0, 1], 80));
        let cases = [
            (Ok(vec![addr]), Ok(vec![addr])),
            (Ok(vec![]), Err("the name has no address")),
            (
                Err(LookupError::NoSuchName),
                Err("lookup failed: the name does not exist (NXDOMAIN)"),
            ),
            (
                Err(LookupError::ServerFailed(2)),
                Err("lookup failed: the name server failed (rcode 2)"),
            ),
            (Err(LookupError::TimedOut), Err("lookup failed: timed out")),
        ];
        for (result, expected) in cases {
            let shown = format!("{result:?}");
            assert_eq!(usable(result), expected.map_err(str::to_owned), "{shown}");
        }
    }

    #[test]
    fn a_changed_name_is_due_at_once_and_an_unchanged_one_keeps_its_time() {
        let text = |dns: &str| {
            format!(
                "[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                 [[backend]]\nname = \"a\"\ndiscover = {{ dns = \"a:80\" }}\n\
                 [[backend]]\nname = \"b\"\ndiscover = {{ dns = \"{dns}\" }}\n"
            )
        };
        let parse =
            |t: &str| crate::config::parse(t, std::path::Path::new("t.toml")).expect("valid");
        let t0 = Instant::now();
        let first = reschedule(Vec::new(), jobs(&parse(&text("b:80"))), t0);
        assert!(first.iter().all(|s| s.due == t0));
        let later = t0 + Duration::from_secs(3);
        let mut first = first;
        for s in &mut first {
            s.due = later;
        }
        let t1 = t0 + Duration::from_secs(1);
        let next = reschedule(first, jobs(&parse(&text("b2:80"))), t1);
        let dues: Vec<(String, Instant)> = next
            .iter()
            .map(|s| (s.job.discover.dns.to_string(), s.due))
            .collect();
        assert_eq!(dues, [("a:80".to_owned(), later), ("b2:80".to_owned(), t1)]);
    }
}
