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
    /// Status (`"503"`) -> file of the page served instead.
    pub errors: Option<BTreeMap<Text, Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub grace: Option<Text>,
    pub access_log: Option<Text>,
    pub state_file: Option<Spanned<PathOrOff>>,
    pub max_connections: Option<Int>,
    pub threads: Option<Int>,
    pub watch: Option<bool>,
    pub request_id: Option<Spanned<RawRequestId>>,
    pub trusted_proxies: Option<Spanned<Vec<Text>>>,
    /// Name servers (`"10.0.0.2:53"`) asked for `discover` records.
    pub resolvers: Option<Spanned<Vec<Text>>>,
}

/// `request_id = false` or `request_id = { header = "X-Request-Id" }`.
/// Deserialized by hand: an untagged enum would lose the spans inside.
#[derive(Debug)]
pub enum RawRequestId {
    Enabled(bool),
    Header(RawRequestIdHeader),
}

impl<'de> Deserialize<'de> for RawRequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawRequestId;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"true, false or a table like { header = "X-Request-Id" }"#)
            }

            fn visit_bool<E>(self, enabled: bool) -> Result<RawRequestId, E> {
                Ok(RawRequestId::Enabled(enabled))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawRequestId, A::Error> {
                RawRequestIdHeader::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawRequestId::Header)
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequestIdHeader {
    pub header: Option<Text>,
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
    pub peers: Option<Spanned<RawPeers>>,
    pub replica: Option<Text>,
}

/// `peers = ["10.0.0.3:8001", ...]` or `peers = "switchyard-peers:8001"`.
/// Deserialized by hand: an untagged enum would lose the value's span.
#[derive(Debug)]
pub enum RawPeers {
    One(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for RawPeers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawPeers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"an address like "10.0.0.3:8001" or a list of them"#)
            }

            fn visit_str<E>(self, s: &str) -> Result<RawPeers, E> {
                Ok(RawPeers::One(s.to_owned()))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawPeers, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    list.push(item);
                }
                Ok(RawPeers::List(list))
            }
        }
        d.deserialize_any(Either)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrontend {
    pub name: Option<Text>,
    pub listen: Option<Text>,
    pub default_backend: Option<Text>,
    pub forward_headers: Option<bool>,
    pub timeouts: Option<RawFrontendTimeouts>,
    pub tls: Option<Spanned<RawFrontendTls>>,
    pub hsts: Option<Text>,
    pub redirect_https: Option<Spanned<bool>>,
    pub limits: Option<RawLimits>,
    #[serde(default)]
    pub route: Vec<Spanned<RawRoute>>,
}

/// `tls = { certs = [ { cert = "site.pem", key = "site.key" } ] }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrontendTls {
    #[serde(default)]
    pub certs: Vec<Spanned<RawCert>>,
}

/// One certificate chain and its key; without `key` the cert file holds both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: Option<Text>,
    pub key: Option<Text>,
}

/// `tls = true` or `tls = { ca = "ca.pem", verify = false }` on a backend.
/// Deserialized by hand: serde's untagged enums buffer the value and lose
/// the spans of the table's values.
#[derive(Debug)]
pub enum RawBackendTls {
    Enabled(bool),
    Table(RawBackendTlsTable),
}

impl<'de> Deserialize<'de> for RawBackendTls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawBackendTls;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(r#"true, false or a table like { ca = "ca.pem", verify = true }"#)
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawBackendTls::Enabled(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                RawBackendTlsTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawBackendTls::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTlsTable {
    pub ca: Option<Text>,
    pub verify: Option<bool>,
}

/// `[frontend.limits]`: sizes and counts of a request head.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_uri: Option<Int>,
    pub max_head: Option<Int>,
    pub max_headers: Option<Int>,
    pub max_header_line: Option<Int>,
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
    pub path: Option<Text>,
    pub path_regex: Option<Text>,
    pub methods: Option<Spanned<Vec<Text>>>,
    pub headers: Option<Spanned<BTreeMap<Text, Text>>>,
    pub cookies: Option<Spanned<BTreeMap<Text, Text>>>,
    pub query: Option<Spanned<BTreeMap<Text, Text>>>,
    pub redirect: Option<Spanned<RawRedirect>>,
    pub respond: Option<Spanned<RawRespond>>,
    pub deny: Option<Spanned<bool>>,
    pub rewrite: Option<Spanned<RawRewrite>>,
    pub request_headers: Option<Spanned<RawHeaderRules>>,
    pub response_headers: Option<Spanned<RawHeaderRules>>,
    pub timeouts: Option<RawRouteTimeouts>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub to: Option<Text>,
    pub code: Option<Int>,
    pub keep_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Option<Int>,
    pub body: Option<Text>,
    pub body_file: Option<Text>,
    pub content_type: Option<Text>,
}

/// Exactly one of `strip_prefix`, `replace_prefix` or `regex` (with `to`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub strip_prefix: Option<Text>,
    pub replace_prefix: Option<Spanned<RawReplacePrefix>>,
    pub regex: Option<Text>,
    pub to: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplacePrefix {
    pub from: Option<Text>,
    pub to: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRules {
    pub set: Option<BTreeMap<Text, Text>>,
    pub add: Option<BTreeMap<Text, Text>>,
    pub remove: Option<Vec<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTimeouts {
    pub response: Option<Text>,
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
    pub tls: Option<Spanned<RawBackendTls>>,
    /// A size: `"100MiB"` or an integer of bytes.
    pub max_body: Option<Spanned<toml::Value>>,
    pub cookie: Option<Spanned<RawCookie>>,
    pub check: Option<Spanned<RawCheck>>,
    pub request_headers: Option<Spanned<RawHeaderRules>>,
    pub response_headers: Option<Spanned<RawHeaderRules>>,
    pub discover: Option<Spanned<RawDiscover>>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
}

/// `discover = { dns = "users:8080", every = "5s", max = 32 }`: servers from
/// the A/AAAA records of a name (HAProxy's `server-template`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscover {
    pub dns: Option<Text>,
    pub every: Option<Text>,
    pub max: Option<Int>,
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
