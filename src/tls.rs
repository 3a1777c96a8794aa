//! TLS pieces shared by the links that leave the box (MQTT broker, Postgres):
//! PEM files read into rustls types with errors that name the file, the
//! certificate verifiers the configs choose from, and plain words for a
//! failed handshake.
//!
//! A private key file's contents never reach an error message: a key that does
//! not parse is reported without the parser's detail.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The one crypto provider (ring: no cmake / aws-lc in the build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The Mozilla roots the HTTPS clients use too.
pub fn system_roots() -> RootCertStore {
    RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Every certificate of a PEM file; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate (no `-----BEGIN CERTIFICATE-----` block)", path.display()));
    }
    Ok(certs)
}

/// The CA certificates of a PEM file as trust roots.
pub fn ca_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| format!("{} holds a certificate that is not a valid CA: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
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

/// A client config (TLS 1.2 and 1.3) with `verifier` and, for mutual TLS, a
/// client certificate chain and its key; the error says the key does not fit.
pub fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match client {
        Some((certs, key)) => {
            builder.with_client_auth_cert(certs, key).map_err(|e| format!("does not fit the client certificate: {e}"))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// How much of the peer's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Chain to a trusted root and the name connected to (or a fixed name).
    Full,
    /// Chain to a trusted root; any name (Postgres `verify-ca`).
    ChainOnly,
    /// Nothing but the handshake signature: encryption without authentication
    /// (Postgres `prefer` / `require` without a root certificate, as libpq).
    Nothing,
}

/// A certificate verifier: `check`, against `roots` (which must not be empty,
/// even for [`Check::Nothing`]), the name `name` instead of the host connected
/// to when given.
pub fn verifier(
    roots: RootCertStore,
    check: Check,
    name: Option<ServerName<'static>>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
    Ok(Arc::new(Verifier { inner, check, name }))
}

#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    check: Check,
    name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            // The handshake signature is still checked (below): the peer holds the key.
            return Ok(ServerCertVerified::assertion());
        }
        let host = self.name.as_ref().unwrap_or(host);
        match self.inner.verify_server_cert(end_entity, intermediates, host, ocsp_response, now) {
            // The name is checked after the chain: this error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) if self.check == Check::ChainOnly => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

/// The other end of a link, and the settings a user fixes a TLS failure with.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// "the broker", "Postgres".
    pub name: &'static str,
    /// Where the trusted CA is set.
    pub ca: &'static str,
    /// Where the name the certificate must carry comes from.
    pub server_name: &'static str,
    /// Where the client certificate is set.
    pub client_cert: &'static str,
}

/// The TLS reason behind a connection error, in plain words, when there is one.
pub fn failure(e: &(dyn std::error::Error + 'static), peer: &Peer) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(explain(r, peer));
        }
        // `io::Error::source` skips the error it wraps: look inside explicitly.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(explain(r, peer));
        }
        cur = err.source();
    }
    None
}

fn explain(e: &rustls::Error, peer: &Peer) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error};
    let cert = format!("{}'s certificate", peer.name);
    let what = match e {
        Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!("{cert} is not signed by a trusted CA (check {})", peer.ca),
            C::Expired | C::ExpiredContext { .. } => format!("{cert} has expired"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("{cert} is not valid yet (check the box's clock)")
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("{cert} is not valid for this name (check {})", peer.server_name)
            }
            C::Revoked => format!("{cert} is revoked"),
            _ => format!("{cert} is rejected"),
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
        ) => format!(
            "{} refused the handshake (it may require a client certificate it trusts: {})",
            peer.name, peer.client_cert
        ),
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("TLS: {what} ({e})")
}
