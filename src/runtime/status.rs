//! What the reload writer reports about itself: `ReloadCause` (who asked),
//! `ReloadError` (why a request changed nothing) and `ReloadStatus` (the
//! generation, counts and the last attempt), read by the admin server.
//! Invariant: only the writer records into the status; a failed attempt
//! stays the last one until another attempt follows.

use std::time::SystemTime;

use crate::config::ConfigErrors;

/// Who asked for a reload of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadCause {
    /// The file watcher saw the file (or a file it names) change.
    File,
    /// SIGHUP.
    Signal,
    /// `POST /api/reload`.
    Api,
}

impl ReloadCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadCause::File => "file",
            ReloadCause::Signal => "signal",
            ReloadCause::Api => "api",
        }
    }
}

/// Why a request to the writer changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The file failed to load or validate: every error, with file, line,
    /// column and key.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// The runtime has no config file to reload from.
    #[error("no config file to reload")]
    NoFile,
    /// A new listener could not be bound; nothing changed.
    #[error("{0}")]
    Bind(String),
    /// An operator edit names something the running config does not have.
    #[error("{0}")]
    NotFound(String),
    /// An operator edit is not possible as asked.
    #[error("{0}")]
    Rejected(String),
    #[error("reloader stopped")]
    Stopped,
}

/// One reload of the config file and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAttempt {
    pub at: SystemTime,
    pub cause: ReloadCause,
    /// The new generation, or why nothing changed.
    pub outcome: Result<u64, ReloadError>,
}

/// The reload writer's record, for the admin API, stats page and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads of the file that applied.
    pub ok: u64,
    /// Reloads of the file that changed nothing.
    pub failed: u64,
    pub last: Option<ReloadAttempt>,
    /// When a reload (or the start) last applied the file.
    pub last_success: Option<SystemTime>,
}

impl ReloadStatus {
    /// The last attempt's error, if it failed: shown until a good one follows.
    pub fn last_error(&self) -> Option<&ReloadError> {
        self.last.as_ref().and_then(|a| a.outcome.as_ref().err())
    }

    pub(super) fn record(&mut self, attempt: ReloadAttempt) {
        match &attempt.outcome {
            Ok(_) => {
                self.ok += 1;
                self.last_success = Some(attempt.at);
            }
            Err(_) => self.failed += 1,
        }
        self.last = Some(attempt);
    }
}
