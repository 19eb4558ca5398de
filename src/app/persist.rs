//! The state file: admin states, weights and split weights set by operators
//! survive reloads (the writer keeps them) and restarts (this file). Each
//! entry also records the config's own value at the time, so a config that
//! changed that line since wins, as on reload. It also holds the stamped
//! registers of those changes (`admin::peers`), so that a restarted replica
//! still orders its own changes against its peers'.
//! Invariant: the file is replaced atomically (temporary file, fsync,
//! rename, fsync of the directory): after a crash at any point it holds
//! either the old or the new content, never a mix.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::admin::Replication;
use crate::admin::peers::ledger::Register;
use crate::model::{AdminState, BackendName, FrontendName};
use crate::runtime::{Runtime, SplitOverride};

/// How often the state file is compared with the live values anyway, for
/// the changes that no operator made: a reload that changed the config's
/// values, a draining server that went to MAINT by itself. An operator's
/// change (API, stats page, peer) is saved as soon as it is made.
const SAVE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFile {
    version: u32,
    servers: Vec<Entry>,
    #[serde(default)]
    splits: Vec<SplitEntry>,
    /// Each operator change with its (time, replica) stamp.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    registers: Vec<Register>,
}

impl StateFile {
    /// The stamped registers saved with the values.
    pub(crate) fn registers(&self) -> Vec<Register> {
        self.registers.clone()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    backend: String,
    server: String,
    state: String,
    config_state: String,
    weight: u32,
    config_weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitEntry {
    frontend: String,
    route: usize,
    config: BTreeMap<String, u32>,
    weights: BTreeMap<String, u32>,
}

/// Reads a saved state file; a missing file is an empty one.
pub(crate) fn read(path: &Path) -> anyhow::Result<Option<StateFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("cannot read state file {}: {e}", path.display()),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("state file {} is not valid: {e}", path.display()))
}

/// Applies the saved admin states and weights to the servers of the running
/// config (where the config did not change that line since); returns how
/// many servers took a saved value and the saved split weights, which the
/// writer applies where the config's split is still the one they were set
/// against.
pub(crate) fn apply_servers(file: StateFile, runtime: &Runtime) -> (usize, Vec<SplitOverride>) {
    let mut restored = 0;
    for entry in file.servers {
        let Some(state) = runtime.registry().get(&entry.backend, &entry.server) else {
            continue;
        };
        let saved_config = AdminState::parse(&entry.config_state);
        if let (Some(admin), true) = (
            AdminState::parse(&entry.state),
            saved_config == Some(state.config_admin_state()),
        ) {
            if state.set_admin_state(admin) != admin {
                restored += 1;
            }
        }
        if entry.config_weight == state.config_weight()
            && state.set_weight(entry.weight) != entry.weight
        {
            restored += 1;
        }
    }
    let named = |m: BTreeMap<String, u32>| -> Vec<(BackendName, u32)> {
        m.into_iter()
            .map(|(n, w)| (BackendName::new(&n), w))
            .collect()
    };
    let splits: Vec<SplitOverride> = file
        .splits
        .into_iter()
        .map(|s| SplitOverride {
            frontend: FrontendName::new(&s.frontend),
            route: s.route,
            config: named(s.config),
            weights: named(s.weights),
        })
        .collect();
    restored += splits.len();
    (restored, splits)
}

/// Writes the state file whenever an operator value changed: at once after
/// an operator's change, within `SAVE_EVERY` after any other, and once more
/// when `shutdown` is cancelled. Idle, it wakes once per `SAVE_EVERY`.
pub async fn keep_saved(
    path: PathBuf,
    runtime: Arc<Runtime>,
    replication: Arc<Replication>,
    shutdown: CancellationToken,
) {
    let mut last: Option<StateFile> = None;
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = replication.unsaved() => false,
            () = tokio::time::sleep(SAVE_EVERY) => false,
        };
        let current = collect(&runtime, &replication);
        if last.as_ref() != Some(&current) {
            let (p, file) = (path.clone(), current.clone());
            let written = tokio::task::spawn_blocking(move || write(&p, &file))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            match written {
                Ok(()) => last = Some(current),
                Err(e) => {
                    tracing::error!(file = %path.display(), "cannot save operator state: {e}")
                }
            }
        }
        if stop {
            return;
        }
    }
}

fn collect(runtime: &Runtime, replication: &Replication) -> StateFile {
    let mut servers: Vec<Entry> = runtime
        .registry()
        .servers()
        .iter()
        .map(|s| Entry {
            backend: s.backend.to_string(),
            server: s.server.to_string(),
            state: s.admin_state().as_str().to_owned(),
            config_state: s.config_admin_state().as_str().to_owned(),
            weight: s.weight(),
            config_weight: s.config_weight(),
        })
        .collect();
    servers.sort_by(|a, b| (&a.backend, &a.server).cmp(&(&b.backend, &b.server)));
    let by_name = |w: &[(BackendName, u32)]| -> BTreeMap<String, u32> {
        w.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    };
    let mut splits: Vec<SplitEntry> = runtime
        .split_overrides()
        .iter()
        .map(|o| SplitEntry {
            frontend: o.frontend.to_string(),
            route: o.route,
            config: by_name(&o.config),
            weights: by_name(&o.weights),
        })
        .collect();
    splits.sort_by(|a, b| (&a.frontend, a.route).cmp(&(&b.frontend, b.route)));
    StateFile {
        version: 2,
        servers,
        splits,
        registers: replication.registers(),
    }
}

/// Replaces the file atomically.
fn write(path: &Path, file: &StateFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    write_atomically(path, &text)
}

/// Replaces `path` with `bytes` so that a crash at any point leaves the old
/// or the new content: write a temporary file beside it, fsync it, rename it
/// over `path`, fsync the directory (which makes the rename durable).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut out = std::fs::File::create(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(&dir)?.sync_all()
}

/// Rewrites a state file at `path` forever, each version different and
/// larger or smaller than the last: lets a test kill the process at random
/// points of a write and check that the file always parses.
#[doc(hidden)]
pub fn write_forever(path: &Path) -> std::io::Result<()> {
    for round in 0u32.. {
        let servers = (0..(round % 50) + 1)
            .map(|i| Entry {
                backend: format!("backend-{i}"),
                server: format!("server-{round}-{i}"),
                state: "maint".to_owned(),
                config_state: "ready".to_owned(),
                weight: round % 257,
                config_weight: 1,
            })
            .collect();
        let file = StateFile {
            version: 2,
            servers,
            splits: Vec::new(),
            registers: Vec::new(),
        };
        write(path, &file)?;
    }
    Ok(())
}

/// Whether `path` holds a state file this version reads.
#[doc(hidden)]
pub fn is_valid(path: &Path) -> bool {
    matches!(read(path), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::peers::local;
    use tokio::time::Instant;

    const CONFIG: &str = r#"
[[frontend]]
name = "web"
listen = "127.0.0.1:0"
default_backend = "app"
[[backend]]
name = "app"
  [[backend.server]]
  name = "a"
  address = "127.0.0.1:1"
"#;

    /// Waits (in the test's paused time) until the file says `needle`;
    /// returns how long that took.
    async fn written(path: &Path, needle: &str) -> Duration {
        let start = Instant::now();
        while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            assert!(start.elapsed() < 10 * SAVE_EVERY, "never wrote {needle}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_operators_change_is_saved_at_once_and_any_other_within_save_every() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        let topology = crate::config::parse(CONFIG, Path::new("t.toml")).expect("valid");
        let (runtime, _reloader) = Runtime::start(topology, None, 1).await;
        let replication = Arc::new(Replication::new("r1".to_owned(), Vec::new(), false));
        let stop = CancellationToken::new();
        let saver = tokio::spawn(keep_saved(
            path.clone(),
            Arc::clone(&runtime),
            Arc::clone(&replication),
            stop.clone(),
        ));
        let server = runtime.registry().get("app", "a").expect("server a");

        // As the admin API makes a change: applied, then recorded in a turn.
        // Saved without waiting for the next periodic comparison.
        {
            let turn = replication.turn().await;
            server.set_admin_state(AdminState::Maint);
            replication.record(&turn, vec![local::state(&server, AdminState::Maint)]);
        }
        assert!(written(&path, "\"maint\"").await < SAVE_EVERY);

        // A change no operator made (as a reload's): saved by the next
        // periodic comparison.
        server.set_weight(7);
        let took = written(&path, "\"weight\": 7").await;
        assert!(took <= SAVE_EVERY, "{took:?}");

        stop.cancel();
        saver.await.expect("saver ends");
    }
}
