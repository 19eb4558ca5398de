//! The state file: admin states and weights set by operators survive a
//! restart. Each entry also records the config's own value at the time, so
//! a config that changed that server's line since wins, as on reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::model::AdminState;
use crate::runtime::Runtime;

/// How often the state file is brought up to date (only written on change).
const SAVE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    servers: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    backend: String,
    server: String,
    state: String,
    config_state: String,
    weight: u32,
    config_weight: u32,
}

/// Applies a saved state file to the servers of the running config; returns
/// how many servers took a saved value. A missing file is no error.
pub async fn restore(path: &Path, runtime: &Runtime) -> anyhow::Result<usize> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => anyhow::bail!("cannot read state file {}: {e}", path.display()),
    };
    let file: StateFile = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("state file {} is not valid: {e}", path.display()))?;
    let mut restored = 0;
    let mut weights_changed = false;
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
            weights_changed = true;
            restored += 1;
        }
    }
    if weights_changed {
        let _generation = runtime.rebuild().await;
    }
    Ok(restored)
}

/// Writes the state file whenever an admin state or weight changed, and once
/// more when `shutdown` is cancelled.
pub async fn keep_saved(path: PathBuf, runtime: Arc<Runtime>, shutdown: CancellationToken) {
    let mut last: Option<StateFile> = None;
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(SAVE_EVERY) => false,
        };
        let current = collect(&runtime);
        if last.as_ref() != Some(&current) {
            match write(&path, &current).await {
                Ok(()) => last = Some(current),
                Err(e) => tracing::error!(file = %path.display(), "cannot save server states: {e}"),
            }
        }
        if stop {
            return;
        }
    }
}

fn collect(runtime: &Runtime) -> StateFile {
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
    StateFile {
        version: 1,
        servers,
    }
}

/// Replaces the file atomically: write a temporary file, then rename it.
async fn write(path: &Path, file: &StateFile) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, path).await
}
