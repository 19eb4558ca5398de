//! TLS configs built with a snapshot: a TLS frontend's `rustls::ServerConfig`
//! (SNI resolver over its certificates' SAN names, ALPN `h2` and `http/1.1`,
//! TLS 1.2 and 1.3 only, no 0-RTT) and a TLS backend's client config.
//! Invariant: built once per snapshot from already-validated model values;
//! a handshake only reads them.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::model::{BackendTls, FrontendTls};
use crate::upstream::UpstreamTls;

/// The one crypto provider: ring (see the README for why).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The server config of a TLS frontend; `None` when no certificate could be
/// used (cannot happen with a validated model; logged).
pub fn server_config(tls: &FrontendTls) -> Option<Arc<rustls::ServerConfig>> {
    let resolver = SniResolver::new(tls)?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS);
    let mut config = match builder {
        Ok(b) => b
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver)),
        Err(e) => {
            tracing::error!("tls: cannot build the server config: {e}");
            return None;
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // The server's suite order (strongest first) wins over the client's.
    config.ignore_client_order = true;
    // rustls' default; stated because 0-RTT data can be replayed.
    config.max_early_data_size = 0;
    Some(Arc::new(config))
}

/// Picks a certificate by SNI: an exact SAN name, else a wildcard SAN
/// covering the name's first label, else the first certificate.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// Keyed by the part after `*.`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(tls: &FrontendTls) -> Option<SniResolver> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for cert in &tls.certs {
            let key = match rustls::crypto::ring::sign::any_supported_type(&cert.key.0) {
                Ok(key) => key,
                Err(e) => {
                    tracing::error!(file = %cert.key_file.display(), "tls: unusable key: {e}");
                    continue;
                }
            };
            let certified = Arc::new(CertifiedKey::new(cert.chain.clone(), key));
            default.get_or_insert_with(|| Arc::clone(&certified));
            // The first certificate to name a host keeps it.
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard
                        .entry(suffix.into())
                        .or_insert_with(|| Arc::clone(&certified)),
                    None => exact
                        .entry(name.clone())
                        .or_insert_with(|| Arc::clone(&certified)),
                };
            }
        }
        Some(SniResolver {
            exact,
            wildcard,
            default: default?,
        })
    }

    fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = sni else {
            return &self.default;
        };
        // rustls hands SNI over lowercased already.
        if let Some(found) = self.exact.get(name) {
            return found;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(self.pick(hello.server_name())))
    }
}

/// A TLS backend's client config: the given CA or the built-in web roots,
/// ALPN `http/1.1`; or one that accepts any certificate when `verify` is off.
pub fn client_config(tls: &BackendTls) -> Option<Arc<rustls::ClientConfig>> {
    let builder = match rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("tls: cannot build the client config: {e}");
            return None;
        }
    };
    let mut config = if tls.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca {
            Some(ca) => {
                let (added, ignored) = roots.add_parsable_certificates(ca.iter().cloned());
                if ignored > 0 || added == 0 {
                    tracing::warn!(added, ignored, "tls: some CA certificates are unusable");
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(Arc::new(config))
}

/// The TLS settings of one server: SNI and verified name from the backend's
/// `host` override when set, else from the server address's host.
pub fn upstream_tls(
    config: &Arc<rustls::ClientConfig>,
    host_override: Option<&str>,
    address_host: &str,
) -> Option<UpstreamTls> {
    let host = host_override.unwrap_or(address_host);
    // `host` may carry a port (`api.example.com:8443`) or brackets.
    let host = match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Some(UpstreamTls {
            config: Arc::clone(config),
            name,
        }),
        Err(e) => {
            tracing::error!(host, "tls: not a usable server name: {e}");
            None
        }
    }
}

/// `verify = false`: checks signatures (the handshake stays sound) but not
/// who signed the certificate or which names it carries.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
