//! TLS keys of the file: a frontend's `tls = { certs = [...] }`, `hsts` and
//! `redirect_https`, and a backend's `tls`. Reads the PEM files named there
//! (relative to the config file's directory) and checks each certificate:
//! readable, PEM, key matching, not expired, at least one SAN name.
//! Invariant: every problem is reported at the `cert` or `key` value that
//! names the file, with the file's path in the message; a certificate with
//! any problem is left out of the model (and the load fails).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::error::Collector;
use super::raw::{RawBackendTls, RawCert, RawFrontendTls, Text};
use crate::model::{BackendTls, Certificate, FrontendTls, PrivateKey};

/// Validates a frontend's `tls` table and `hsts`.
pub(super) fn frontend_tls(
    c: &mut Collector<'_>,
    path: &str,
    spanned: &Spanned<RawFrontendTls>,
    hsts: Option<&Text>,
) -> Option<FrontendTls> {
    let field = format!("{path}.tls.certs");
    let raw = spanned.get_ref();
    if raw.certs.is_empty() {
        let message = r#"expected at least one certificate, like certs = [ { cert = "site.pem", key = "site.key" } ]"#;
        c.at(spanned.span(), field.clone(), message);
    }
    let mut certs = Vec::with_capacity(raw.certs.len());
    for (i, cert) in raw.certs.iter().enumerate() {
        if let Some(cert) = certificate(c, &format!("{field}[{i}]"), cert) {
            certs.push(cert);
        }
    }
    let hsts = hsts.and_then(|text| match parse_hsts(text.get_ref()) {
        Ok(value) => Some(value),
        Err(message) => {
            c.at(text.span(), format!("{path}.hsts"), message);
            None
        }
    });
    Some(FrontendTls { certs, hsts })
}

fn parse_hsts(s: &str) -> Result<Box<str>, String> {
    let is_max_age = s
        .split(';')
        .any(|d| d.trim().to_ascii_lowercase().starts_with("max-age="));
    let is_valid = http::HeaderValue::from_str(s).is_ok();
    match is_max_age && is_valid {
        true => Ok(s.into()),
        false => Err(format!(
            r#"expected a Strict-Transport-Security value like "max-age=31536000", got {s:?}"#
        )),
    }
}

/// Loads and checks one `{ cert, key }` entry.
fn certificate(
    c: &mut Collector<'_>,
    path: &str,
    spanned: &Spanned<RawCert>,
) -> Option<Certificate> {
    let raw = spanned.get_ref();
    let Some(cert_text) = &raw.cert else {
        c.at(
            spanned.span(),
            format!("{path}.cert"),
            "required key is missing",
        );
        return None;
    };
    let cert_field = format!("{path}.cert");
    let cert_file = resolve(c.base_dir(), cert_text.get_ref());
    let cert_bytes = read(c, cert_text, &cert_field, &cert_file)?;
    let chain = match CertificateDer::pem_slice_iter(&cert_bytes).collect::<Result<Vec<_>, _>>() {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => {
            let message = format!(
                "{}: no CERTIFICATE block; expected a PEM certificate chain",
                cert_file.display()
            );
            c.at(cert_text.span(), cert_field, message);
            return None;
        }
        Err(e) => {
            let message = format!(
                "{}: not PEM ({}); expected a PEM certificate chain",
                cert_file.display(),
                pem_error(&e)
            );
            c.at(cert_text.span(), cert_field, message);
            return None;
        }
    };
    let (key_text, key_field, key_file, key_bytes) = match &raw.key {
        Some(text) => {
            let field = format!("{path}.key");
            let file = resolve(c.base_dir(), text.get_ref());
            let bytes = read(c, text, &field, &file)?;
            (text, field, file, bytes)
        }
        None => (cert_text, cert_field.clone(), cert_file.clone(), cert_bytes),
    };
    warn_if_key_readable_by_others(&key_file);
    let key = match PrivateKeyDer::from_pem_slice(&key_bytes) {
        Ok(key) => key,
        Err(e) => {
            let problem = match e {
                pem::Error::NoItemsFound => "no PRIVATE KEY block".to_owned(),
                e => format!("not PEM ({})", pem_error(&e)),
            };
            let message = format!(
                "{}: {problem}; expected a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC)",
                key_file.display()
            );
            c.at(key_text.span(), key_field, message);
            return None;
        }
    };
    let mut ok = true;
    match rustls::crypto::ring::sign::any_supported_type(&key) {
        Ok(signing_key) => {
            let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
            if certified.keys_match().is_err() {
                let message = format!(
                    "{}: the key does not match the certificate in {}",
                    key_file.display(),
                    cert_file.display()
                );
                c.at(key_text.span(), key_field.clone(), message);
                ok = false;
            }
        }
        Err(e) => {
            let message = format!("{}: unusable private key: {e}", key_file.display());
            c.at(key_text.span(), key_field.clone(), message);
            ok = false;
        }
    }
    let leaf = match x509_parser::parse_x509_certificate(&chain[0]) {
        Ok((_, leaf)) => leaf,
        Err(e) => {
            let message = format!("{}: unreadable certificate: {e}", cert_file.display());
            c.at(cert_text.span(), format!("{path}.cert"), message);
            return None;
        }
    };
    let not_after = leaf.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if not_after < now {
        let message = format!(
            "{}: the certificate expired on {}; expected a valid one",
            cert_file.display(),
            leaf.validity().not_after
        );
        c.at(cert_text.span(), format!("{path}.cert"), message);
        ok = false;
    }
    let names = san_names(&leaf);
    if names.is_empty() {
        let message = format!(
            "{}: the certificate has no DNS name in its subjectAltName; expected at least one (SNI names come from there)",
            cert_file.display()
        );
        c.at(cert_text.span(), format!("{path}.cert"), message);
        ok = false;
    }
    let fingerprint = fingerprint(&chain[0]);
    ok.then(|| Certificate {
        cert_file,
        key_file,
        chain,
        key: PrivateKey(Arc::new(key)),
        names,
        not_after,
        fingerprint,
    })
}

/// Validates a backend's `tls`; `tls = false` is no TLS.
pub(super) fn backend_tls(
    c: &mut Collector<'_>,
    path: &str,
    spanned: &Spanned<RawBackendTls>,
) -> Option<BackendTls> {
    match spanned.get_ref() {
        RawBackendTls::Enabled(false) => None,
        RawBackendTls::Enabled(true) => Some(BackendTls {
            ca: None,
            verify: true,
        }),
        RawBackendTls::Table(table) => {
            let verify = table.verify.unwrap_or(true);
            if !verify {
                tracing::warn!(
                    "{path}.tls: verify = false: the servers' certificates are NOT checked; anyone on the path can impersonate them"
                );
            }
            let ca = table.ca.as_ref().and_then(|text| {
                let field = format!("{path}.tls.ca");
                let file = resolve(c.base_dir(), text.get_ref());
                let bytes = read(c, text, &field, &file)?;
                match CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>() {
                    Ok(roots) if !roots.is_empty() => Some(roots),
                    Ok(_) => {
                        let message = format!(
                            "{}: no CERTIFICATE block; expected PEM CA certificates",
                            file.display()
                        );
                        c.at(text.span(), field, message);
                        None
                    }
                    Err(e) => {
                        let message = format!(
                            "{}: not PEM ({}); expected PEM CA certificates",
                            file.display(),
                            pem_error(&e)
                        );
                        c.at(text.span(), field, message);
                        None
                    }
                }
            });
            Some(BackendTls { ca, verify })
        }
    }
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    base.join(file)
}

fn read(c: &mut Collector<'_>, text: &Text, field: &str, file: &Path) -> Option<Vec<u8>> {
    if text.get_ref().is_empty() {
        c.at(
            text.span(),
            field.to_owned(),
            "expected a file path, got an empty string",
        );
        return None;
    }
    match std::fs::read(file) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            c.at(
                text.span(),
                field.to_owned(),
                format!("cannot read {}: {e}", file.display()),
            );
            None
        }
    }
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(e) => format!("bad base64: {e}"),
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "nothing found".to_owned(),
        pem::Error::SectionTooLarge => "a section is too large".to_owned(),
        _ => "unreadable".to_owned(),
    }
}

/// The leaf's DNS SANs, lowercase.
fn san_names(leaf: &x509_parser::certificate::X509Certificate<'_>) -> Vec<Box<str>> {
    let Ok(Some(san)) = leaf.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => {
                Some(dns.to_ascii_lowercase().into_boxed_str())
            }
            _ => None,
        })
        .collect()
}

/// SHA-256 of `der`, as `AB:CD:...` (the form `openssl x509 -fingerprint` prints).
pub fn fingerprint(der: &[u8]) -> Box<str> {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(32 * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out.into()
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "private key file is readable by group or others; expected mode 0600 or 0400"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_file: &Path) {}
