//! TLS values of the topology: a frontend's certificates (DER chain, key,
//! the names from their SANs, expiry and fingerprint) and a backend's TLS
//! settings. Read from PEM files by `config`; nothing here does IO.
//! Invariant: every `Certificate` was checked at load: its key matches it,
//! it has at least one SAN name and had not expired.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS frontend: its certificates (the first is the default) and HSTS.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendTls {
    /// Non-empty; chosen by SNI, the first for clients without SNI or with
    /// a name no certificate carries.
    pub certs: Vec<Certificate>,
    /// The `Strict-Transport-Security` value, when set.
    pub hsts: Option<Box<str>>,
}

/// One certificate chain with its key, as loaded from its files.
#[derive(Debug, Clone, PartialEq)]
pub struct Certificate {
    pub cert_file: PathBuf,
    /// Same as `cert_file` when that file holds the key too.
    pub key_file: PathBuf,
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKey,
    /// DNS names of the leaf's SANs, lowercase; `*.example.com` for wildcards.
    pub names: Vec<Box<str>>,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
    /// SHA-256 of the leaf's DER, lowercase hex with colons.
    pub fingerprint: Box<str>,
}

/// A private key. Shared, never printed; equal when the DER bytes are.
#[derive(Clone)]
pub struct PrivateKey(pub Arc<PrivateKeyDer<'static>>);

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.secret_der() == other.0.secret_der()
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// TLS towards a backend's servers.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTls {
    /// Trust anchors from `ca`; `None` trusts the built-in web roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// `false` accepts any certificate (logged loudly at every load).
    pub verify: bool,
}

impl super::Topology {
    /// Every file the config names besides itself, whose change must reload
    /// it: the TLS certificate and key files. A plain list: the file watcher
    /// watches their parent directories.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .frontends
            .iter()
            .filter_map(|f| f.tls.as_ref())
            .flat_map(|t| t.certs.iter())
            .flat_map(|c| [c.cert_file.clone(), c.key_file.clone()])
            .collect();
        files.sort();
        files.dedup();
        files
    }
}
