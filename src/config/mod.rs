//! The config file: TOML in HAProxy's words (`[[frontend]]`, `[[backend]]`,
//! `[[backend.server]]`), read into `model::Topology`. The only module that
//! knows TOML; see `docs/configuration.md` for every key.
//!
//! Two stages: serde reads the text into the `raw` structs and stops at the
//! first syntax or type error or unknown key; validation then turns them into
//! the model and collects *every* semantic error, each with the line and
//! column of the offending value, so an operator fixes the file in one go.
//! Invariant: a returned `Topology` is fully valid; nothing else derives
//! `Deserialize` for configuration.

mod answers;
mod backend;
mod duration;
mod error;
mod frontend;
mod raw;
mod rules;
mod tls;
mod validate;
mod values;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};

use crate::model;

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<model::Topology, ConfigErrors> {
    let source = std::fs::read_to_string(path).map_err(|e| ConfigErrors::unreadable(path, &e))?;
    parse(&source, path)
}

/// Validates config text; `file` is only used in messages.
pub fn parse(source: &str, file: &Path) -> Result<model::Topology, ConfigErrors> {
    let raw: raw::RawConfig =
        toml::from_str(source).map_err(|e| ConfigErrors::from_toml(source, file, &e))?;
    validate::validate(raw, source, file)
}
