//! The config file watcher. Watches the parent directory of the config file
//! and of every file the running topology names (`Topology::watched_files`),
//! so that an editor's save-by-rename, `git checkout`, a deleted-then-restored
//! file and a Kubernetes ConfigMap's `..data` symlink swap are all seen.
//! Events are debounced (`DEBOUNCE`); then the files are read, and when
//! their content differs from the last attempt, a reload is asked for.
//! Invariant: the watcher never loads or swaps itself; it sends
//! `Command::Reload(ReloadCause::File)` and waits for the outcome. The
//! watched set follows each new snapshot, and `[global] watch = false`
//! empties it.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ReloadCause, Runtime, Snapshot};

/// Quiet time after the last event before the files are read: editors and
/// `git checkout` write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the config file's directory (and those of the files it names)
/// and asks the writer to reload when their content changes.
pub struct FileWatcher {
    runtime: Arc<Runtime>,
    config_file: PathBuf,
}

impl FileWatcher {
    /// A watcher for the runtime's config file; `None` when it has none.
    pub fn new(runtime: Arc<Runtime>) -> Option<FileWatcher> {
        let config_file = runtime.config_file()?.to_path_buf();
        Some(FileWatcher {
            runtime,
            config_file,
        })
    }

    /// Watches until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let handler = move |event: notify::Result<notify::Event>| {
            let _closed = events_tx.send(event.map(|_| ()));
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(
                    "cannot watch the config file: {e}; SIGHUP and the API still reload"
                );
                return;
            }
        };
        let mut snapshots = self.runtime.subscribe();
        let mut watched = Watched::default();
        let mut files = self.files(&snapshots.borrow_and_update());
        watched.follow(&mut watcher, &files);
        let mut last = fingerprint(&files);
        let mut due: Option<Instant> = None;
        loop {
            let wait = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => break,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snapshot = Arc::clone(&snapshots.borrow_and_update());
                    files = self.files(&snapshot);
                    watched.follow(&mut watcher, &files);
                }
                event = events.recv() => match event {
                    None => break,
                    Some(Ok(())) => due = Some(Instant::now() + DEBOUNCE),
                    Some(Err(e)) => tracing::warn!("config file watch: {e}"),
                },
                () = wait => {
                    due = None;
                    if files.is_empty() {
                        continue;
                    }
                    if !self.config_file.exists() {
                        tracing::info!(file = %self.config_file.display(), "config file is gone; waiting for it to come back");
                        continue;
                    }
                    let now = fingerprint(&files);
                    if now == last {
                        continue;
                    }
                    last = now;
                    // The outcome is logged and recorded by the writer.
                    let _outcome = self.runtime.reload(ReloadCause::File).await;
                }
            }
        }
    }

    /// The files to watch for `snapshot`: none when it turns watching off.
    fn files(&self, snapshot: &Snapshot) -> Vec<PathBuf> {
        if !snapshot.topology.global.watch {
            return Vec::new();
        }
        let mut files = vec![self.config_file.clone()];
        files.extend(snapshot.topology.watched_files());
        files
    }
}

/// The directories being watched.
#[derive(Default)]
struct Watched {
    dirs: BTreeSet<PathBuf>,
}

impl Watched {
    /// Watches the parent directories of `files` and no other.
    fn follow(&mut self, watcher: &mut RecommendedWatcher, files: &[PathBuf]) {
        let wanted: BTreeSet<PathBuf> = files.iter().map(|f| parent(f)).collect();
        for gone in self.dirs.difference(&wanted) {
            if let Err(e) = watcher.unwatch(gone) {
                tracing::debug!(dir = %gone.display(), "unwatch: {e}");
            }
        }
        for new in wanted.difference(&self.dirs) {
            match watcher.watch(new, RecursiveMode::NonRecursive) {
                Ok(()) => tracing::debug!(dir = %new.display(), "watching"),
                Err(e) => tracing::warn!(dir = %new.display(), "cannot watch: {e}"),
            }
        }
        self.dirs = wanted;
    }
}

/// The directory holding `file` (`.` for a bare file name).
fn parent(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A hash of the files' contents (following symlinks); a missing file
/// counts as its own value.
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        std::fs::read(file).ok().hash(&mut hasher);
    }
    hasher.finish()
}
