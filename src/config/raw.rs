//! The file format as serde sees it: one struct per TOML table, every key
//! optional so that validation can report a missing key together with every
//! other error. Owns nothing but the shape of the file.
//! Invariant: every struct denies unknown keys, and every value a validation
//! error may point at is `Spanned`, so it carries its byte range in the file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string value with its place in the file.
pub type Text = Spanned<String>;
/// An integer value with its place in the file; ranges are checked later, so
/// `-1` or `300` become validation errors rather than type errors.
pub type Int = Spanned<i64>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub global: Option<RawGlobal>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub frontend: Vec<Spanned<RawFrontend>>,
    #[serde(default)]
    pub backend: Vec<Spanned<RawBackend>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub grace: Option<Text>,
    pub access_log: Option<Text>,
    pub state_file: Option<Spanned<PathOrOff>>,
    pub max_connections: Option<Int>,
    pub watch: Option<bool>,
}

/// A path, or `false` to turn the feature off (`true` means the default).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PathOrOff {
    Path(String),
    Flag(bool),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<Text>,
    pub token_file: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrontend {
    pub name: Option<Text>,
    pub listen: Option<Text>,
    pub default_backend: Option<Text>,
    pub forward_headers: Option<bool>,
    pub timeouts: Option<RawFrontendTimeouts>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrontendTimeouts {
    pub client_header: Option<Text>,
    pub idle: Option<Text>,
    pub body_idle: Option<Text>,
    pub write_idle: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub host: Option<Text>,
    pub path_prefix: Option<Text>,
    pub backend: Option<Text>,
    /// Backend name -> relative weight. Keys come sorted by name, so the
    /// model's split order is deterministic.
    pub split: Option<Spanned<BTreeMap<Text, Int>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: Option<Text>,
    pub balance: Option<Text>,
    pub host: Option<Text>,
    pub retries: Option<Int>,
    pub timeouts: Option<RawBackendTimeouts>,
    pub passive_fall: Option<Int>,
    pub drain_to_maint: Option<bool>,
    pub cookie: Option<Spanned<RawCookie>>,
    pub check: Option<Spanned<RawCheck>>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTimeouts {
    pub connect: Option<Text>,
    pub response: Option<Text>,
    pub tunnel: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCookie {
    pub name: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub kind: Option<Text>,
    pub method: Option<Text>,
    pub path: Option<Text>,
    pub host: Option<Text>,
    pub expect: Option<Text>,
    pub interval: Option<Text>,
    pub timeout: Option<Text>,
    pub rise: Option<Int>,
    pub fall: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub name: Option<Text>,
    pub address: Option<Text>,
    pub weight: Option<Int>,
    pub state: Option<Text>,
    pub backup: Option<bool>,
}
