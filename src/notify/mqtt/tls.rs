//! MQTT over TLS: the rustls client config (ring provider) from the `tls`
//! block, its checks at config time, and plain words for a failed handshake.
//!
//! The key file's contents never reach an error message or the log: a key that
//! does not parse is reported without the parser's detail.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::MqttTlsConfig;
use crate::plugin::{PluginContext, Validator};

/// One problem with the `tls` block: the key it is about and what is wrong.
type Problem = (&'static str, String);

/// `server_name` as rustls needs it.
pub(super) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.trim().to_owned()).map_err(|_| format!("`{name}` is not a valid DNS name or IP address"))
}

/// Reads the block's files at config-check time; every problem is reported on its key.
pub(super) fn check_files(cfg: &MqttTlsConfig, ctx: &PluginContext, v: &mut Validator<'_>) {
    if !cfg.enabled {
        return;
    }
    // The shape check reports a certificate without a key (and the reverse) and
    // an invalid server name already.
    if let Err(problems) = build(cfg, ctx, false) {
        for (key, msg) in problems {
            v.error(key, msg);
        }
    }
}

/// The rustls client config of the `tls` block (which must be enabled).
pub(super) fn client_config(cfg: &MqttTlsConfig, ctx: &PluginContext) -> Result<Arc<ClientConfig>, Vec<Problem>> {
    build(cfg, ctx, true)
}

/// `shape`: also report what [`MqttTlsConfig`]'s shape check does.
fn build(cfg: &MqttTlsConfig, ctx: &PluginContext, shape: bool) -> Result<Arc<ClientConfig>, Vec<Problem>> {
    let mut problems = Vec::new();
    let roots = match &cfg.ca_file {
        Some(p) => ca_roots(&ctx.resolve(p)).map_err(|e| problems.push(("ca_file", e))).ok(),
        None => Some(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
    };
    let name = match &cfg.server_name {
        Some(n) => match server_name(n) {
            Ok(name) => Some(name),
            Err(e) => {
                // (the shape check reports it too)
                if shape {
                    problems.push(("server_name", e));
                }
                return Err(problems);
            }
        },
        None => None,
    };
    let client = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(c), Some(k)) => {
            let certs = client_certs(&ctx.resolve(c)).map_err(|e| problems.push(("client_cert_file", e))).ok();
            let key = private_key(&ctx.resolve(k)).map_err(|e| problems.push(("client_key_file", e))).ok();
            certs.zip(key)
        }
        (None, None) => None,
        (cert, _) => {
            // A certificate without its key or the reverse (the shape check reports it too).
            if shape {
                problems.push(match cert {
                    Some(_) => ("client_key_file", "is required when client_cert_file is set".into()),
                    None => ("client_cert_file", "is required when client_key_file is set".into()),
                });
            }
            return Err(problems);
        }
    };
    let Some(roots) = roots else { return Err(problems) };
    if !problems.is_empty() {
        return Err(problems);
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![("enabled", format!("cannot set up TLS: {e}"))])?;
    let builder = match name {
        None => builder.with_root_certificates(roots),
        Some(name) => {
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| vec![("ca_file", format!("cannot set up certificate verification: {e}"))])?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(FixedName { inner, name }))
        }
    };
    let config = match client {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| vec![("client_key_file", format!("does not fit client_cert_file: {e}"))])?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate (no `-----BEGIN CERTIFICATE-----` block)", path.display()));
    }
    Ok(certs)
}

fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| format!("{} holds a certificate that is not a valid CA: {e}", path.display()))?;
    }
    Ok(roots)
}

fn client_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    certificates(path)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    let shown = path.display();
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(format!(
            "{shown} holds no private key (no `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
        )),
        // The parser's detail may quote the file: say only that it does not parse.
        Err(_) => Err(format!("{shown} is not a valid PEM private key file")),
    }
}

/// Checks the broker's certificate against `server_name` instead of the host
/// the connection was opened to (e.g. an IP address).
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The TLS reason behind a connection error, in plain words, when there is one.
pub(super) fn failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(explain(r));
        }
        // `io::Error::source` skips the error it wraps: look inside explicitly.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(explain(r));
        }
        cur = err.source();
    }
    None
}

fn explain(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error};
    let what = match e {
        Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the broker's certificate is not signed by a trusted CA (check tls.ca_file)",
            C::Expired | C::ExpiredContext { .. } => "the broker's certificate has expired",
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the box's clock)"
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the broker's certificate is not valid for this name (check host or tls.server_name)"
            }
            C::Revoked => "the broker's certificate is revoked",
            _ => "the broker's certificate is rejected",
        },
        Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::HandshakeFailure,
        ) => "the broker refused the handshake (it may require a client certificate it trusts: tls.client_cert_file)",
        _ => "the TLS handshake failed",
    };
    format!("TLS: {what} ({e})")
}
