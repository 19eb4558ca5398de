//! What the reload writer reports about itself: `ReloadCause` (who asked),
//! `ReloadError` (why a request changed nothing) and `ReloadStatus` (the
//! generation, counts and the last attempt), read by the admin server.
//! Invariant: only the writer records into the status; a failed attempt
//! stays the last one until another attempt follows.

use std::collections::BTreeMap;
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
    /// Per frontend name: reloads that failed on that frontend's
    /// certificates or keys (a bad replacement on disk among them), which
    /// kept the old ones serving.
    pub certificate_failures: BTreeMap<Box<str>, u64>,
}

impl ReloadStatus {
    /// The last attempt's error, if it failed: shown until a good one follows.
    pub fn last_error(&self) -> Option<&ReloadError> {
        self.last.as_ref().and_then(|a| a.outcome.as_ref().err())
    }

    /// The errors of the last attempt that concern `frontend`'s
    /// certificates, one per line; `None` when it did not fail on them.
    pub fn certificate_error(&self, frontend: &str) -> Option<String> {
        let Some(ReloadError::Invalid(errors)) = self.last_error() else {
            return None;
        };
        let lines: Vec<String> = errors
            .errors
            .iter()
            .filter(|e| certificate_frontend(&e.field) == Some(frontend))
            .map(|e| format!("{}:{e}", errors.file.display()))
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    pub(super) fn record(&mut self, attempt: ReloadAttempt) {
        match &attempt.outcome {
            Ok(_) => {
                self.ok += 1;
                self.last_success = Some(attempt.at);
            }
            Err(error) => {
                self.failed += 1;
                if let ReloadError::Invalid(errors) = error {
                    let mut frontends: Vec<&str> = errors
                        .errors
                        .iter()
                        .filter_map(|e| certificate_frontend(&e.field))
                        .collect();
                    frontends.sort_unstable();
                    frontends.dedup();
                    for f in frontends {
                        *self.certificate_failures.entry(f.into()).or_default() += 1;
                    }
                }
            }
        }
        self.last = Some(attempt);
    }
}

/// The frontend named by a config error's field when the error is about
/// one of its certificates: `frontend[web].tls.certs[0].key` -> `web`.
fn certificate_frontend(field: &str) -> Option<&str> {
    let rest = field.strip_prefix("frontend[")?;
    let (name, tail) = rest.split_once(']')?;
    tail.starts_with(".tls.certs").then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    fn invalid(fields: &[&str]) -> ReloadAttempt {
        let errors = fields
            .iter()
            .map(|f| ConfigError {
                line: 3,
                column: 8,
                field: (*f).to_owned(),
                message: "expected a PEM certificate".to_owned(),
            })
            .collect();
        ReloadAttempt {
            at: SystemTime::UNIX_EPOCH,
            cause: ReloadCause::File,
            outcome: Err(ReloadError::Invalid(ConfigErrors {
                file: "site.toml".into(),
                errors,
            })),
        }
    }

    #[test]
    fn certificate_failures_are_counted_per_frontend_once_per_reload() {
        let mut status = ReloadStatus::default();
        status.record(invalid(&[
            "frontend[tls].tls.certs[0].cert",
            "frontend[tls].tls.certs[1].key",
            "backend[app].server[a].weight",
        ]));
        status.record(invalid(&["frontend[web].timeouts.idle"]));
        status.record(invalid(&[
            "frontend[tls].tls.certs",
            "frontend[edge].tls.certs[2].key",
        ]));
        let counted: Vec<(&str, u64)> = status
            .certificate_failures
            .iter()
            .map(|(f, n)| (&**f, *n))
            .collect();
        assert_eq!(counted, [("edge", 1), ("tls", 2)]);
        assert_eq!(
            status.certificate_error("edge").as_deref(),
            Some("site.toml:3:8: frontend[edge].tls.certs[2].key: expected a PEM certificate")
        );
        assert_eq!(status.certificate_error("web"), None);
        assert_eq!(status.failed, 3);
    }

    #[test]
    fn certificate_frontend_reads_the_field_path() {
        let check = |field: &str, expected: Option<&str>| {
            assert_eq!(certificate_frontend(field), expected, "{field}");
        };
        check("frontend[tls].tls.certs[0].cert", Some("tls"));
        check("frontend[tls].tls.certs", Some("tls"));
        check("frontend[tls].hsts", None);
        check("backend[app].tls.ca", None);
        check("frontend[tls", None);
    }
}
