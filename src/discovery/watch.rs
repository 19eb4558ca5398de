//! The config file watcher. Watches the parent directory of the config file
//! and of every file the running topology names (`Topology::watched_files`),
//! so that an editor's save-by-rename, `git checkout`, a deleted-then-restored
//! file and a Kubernetes ConfigMap's `..data` symlink swap are all seen.
//! Events that can change a file (not opens and reads: `may_change`) are
//! debounced (`DEBOUNCE`); then the files are read, and when their content
//! differs from the last attempt, a reload is asked for.
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

use crate::model::Topology;
use crate::runtime::{ReloadCause, Runtime, Snapshot};

/// Quiet time after the last event before the files are read: editors and
/// `git checkout` write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the config file's directory (and those of the files it names)
/// and asks the writer to reload when their content changes.
pub struct FileWatcher {
    runtime: Arc<Runtime>,
    config_file: PathBuf,
    watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    snapshots: tokio::sync::watch::Receiver<Arc<Snapshot>>,
    watched: Watched,
    files: Vec<PathBuf>,
    /// The content last loaded or asked for.
    last: u64,
}

impl FileWatcher {
    /// Starts watching the runtime's config file now (so no change after
    /// this call is missed); `None` when there is no file or no watcher.
    pub fn start(runtime: Arc<Runtime>) -> Option<FileWatcher> {
        let config_file = runtime.config_file()?.to_path_buf();
        let (events_tx, events) = mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(forward_changes(events_tx)) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(
                    "cannot watch the config file: {e}; SIGHUP and the API still reload"
                );
                return None;
            }
        };
        let mut snapshots = runtime.subscribe();
        let files = files_to_watch(&config_file, &snapshots.borrow_and_update().topology);
        let mut watched = Watched::default();
        watched.follow(&mut watcher, &files);
        // What was loaded, so a change between the load and now is seen.
        let last = match runtime.config_source() {
            Some(source) => fingerprint_with(&files, Some(source.as_bytes())),
            None => fingerprint(&files),
        };
        Some(FileWatcher {
            runtime,
            config_file,
            watcher,
            events,
            snapshots,
            watched,
            files,
            last,
        })
    }

    /// Watches until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let FileWatcher {
            runtime,
            config_file,
            mut watcher,
            mut events,
            mut snapshots,
            mut watched,
            mut files,
            mut last,
        } = self;
        // Anything that happened before this task ran is looked at once.
        let mut due: Option<Instant> = Some(Instant::now());
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
                    files = files_to_watch(&config_file, &snapshot.topology);
                    watched.follow(&mut watcher, &files);
                }
                event = events.recv() => match event {
                    None => break,
                    Some(Ok(_)) => due = Some(Instant::now() + DEBOUNCE),
                    Some(Err(e)) => tracing::warn!("config file watch: {e}"),
                },
                () = wait => {
                    due = None;
                    if files.is_empty() {
                        continue;
                    }
                    if !config_file.exists() {
                        tracing::info!(file = %config_file.display(), "config file is gone; waiting for it to come back");
                        continue;
                    }
                    let now = fingerprint(&files);
                    if now == last {
                        continue;
                    }
                    last = now;
                    // The outcome is logged and recorded by the writer.
                    let _outcome = runtime.reload(ReloadCause::File).await;
                }
            }
        }
    }
}

/// The watcher's event handler: passes on the events that `may_change` a
/// file, and every error.
fn forward_changes(
    events: mpsc::UnboundedSender<notify::Result<notify::Event>>,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    move |event| {
        if event.as_ref().is_ok_and(|e| !may_change(e)) {
            return;
        }
        let _closed = events.send(event);
    }
}

/// Whether an event can mean that a file in a watched directory changed.
/// Opens and reads cannot, and Linux's backend reports every one of them
/// in the directory, this watcher's own included: passed on, the reads of
/// `fingerprint` would each arm the next one, five times a second for as
/// long as the process runs. A close after writing does count.
fn may_change(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The config file and the files its topology names; none when the
/// topology turns watching off.
fn files_to_watch(config_file: &Path, topology: &Topology) -> Vec<PathBuf> {
    if !topology.global.watch {
        return Vec::new();
    }
    let mut files = vec![config_file.to_path_buf()];
    files.extend(topology.watched_files());
    files
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

/// The same, with the first file's content given.
fn fingerprint_with(files: &[PathBuf], first: Option<&[u8]>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (i, file) in files.iter().enumerate() {
        if i == 0 {
            first.map(<[u8]>::to_vec).hash(&mut hasher);
        } else {
            std::fs::read(file).ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extra: &str, expected: &[&str]) {
        let text =
            format!("[global]\n{extra}\n[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n");
        let topology = crate::config::parse(&text, Path::new("t.toml")).expect("valid");
        let files = files_to_watch(Path::new("conf/switchyard.toml"), &topology);
        let dirs: BTreeSet<PathBuf> = files.iter().map(|f| parent(f)).collect();
        let expected_dirs: BTreeSet<PathBuf> = expected.iter().map(PathBuf::from).collect();
        assert_eq!(dirs, expected_dirs, "{extra}");
    }

    #[test]
    fn the_config_files_directory_is_watched_unless_turned_off() {
        check("", &["conf"]);
        check("watch = true", &["conf"]);
        check("watch = false", &[]);
        assert_eq!(parent(Path::new("switchyard.toml")), PathBuf::from("."));
    }

    /// The next event's file name, waiting at most 10 s (a failsafe: each
    /// event is already queued or on its way when this is called).
    async fn next_name(
        events: &mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    ) -> String {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("watcher alive")
            .expect("no watch error");
        let path = event.paths.first().expect("a path");
        path.file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned()
    }

    #[tokio::test]
    async fn reading_a_watched_file_is_not_a_change_and_writing_one_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("switchyard.toml");
        std::fs::write(&config, "[global]\n").expect("write");
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(forward_changes(tx)).expect("watcher");
        watcher
            .watch(dir.path(), RecursiveMode::NonRecursive)
            .expect("watch");

        // Reads (what `fingerprint` does), then a write to another file: the
        // backend reports them in order, so the first event passed on is
        // the write's.
        let files = [config.clone()];
        let before = fingerprint(&files);
        std::fs::write(dir.path().join("marker"), "1").expect("write marker");
        assert_eq!(next_name(&mut events).await, "marker");

        // A write to the config file itself is passed on (after the rest of
        // the marker's events).
        std::fs::write(&config, "[global]\nwatch = true\n").expect("write");
        assert_ne!(fingerprint(&files), before);
        let mut name = next_name(&mut events).await;
        while name == "marker" {
            name = next_name(&mut events).await;
        }
        assert_eq!(name, "switchyard.toml");
    }
}
