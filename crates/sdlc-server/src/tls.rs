//! HTTPS for the daemon's one listener (`--tls-cert`, `--tls-key`), and the CLI's side of it.
//!
//! The server loads a PEM certificate chain and key into a rustls configuration. The CLI does
//! not check the certificate against public roots or a host name: it connects to the
//! loopback address the daemon published, and accepts exactly the certificate whose SHA-256
//! the daemon published beside it (pinning), so a certificate made for `hooks.example.com`
//! serves both the internet and the local commands. What it does not do: terminate TLS for
//! anything but the daemon's own listener, or ask clients for certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The daemon's TLS: what accepts connections, and the fingerprint it publishes for the CLI.
#[derive(Clone)]
pub struct ServerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Hex SHA-256 of the leaf certificate's DER bytes.
    pub fingerprint: String,
}

/// What is wrong with the certificate or key given to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {detail}: pass --tls-cert a PEM file")]
    Certificate { path: String, detail: String },
    #[error(
        "the TLS certificate file {path} holds no certificate: it must be PEM (-----BEGIN CERTIFICATE-----)"
    )]
    NoCertificate { path: String },
    #[error(
        "cannot read the TLS key {path}: {detail}: pass --tls-key a PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted"
    )]
    Key { path: String, detail: String },
    #[error("the TLS certificate {cert} and key {key} cannot be used together: {detail}")]
    Mismatch {
        cert: String,
        key: String,
        detail: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads `cert` (a PEM chain, leaf first) and `key` (PEM) for the listener.
pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let cert_shown = cert.display().to_string();
    let key_shown = key.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|err| TlsError::Certificate {
            path: cert_shown.clone(),
            detail: err.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { path: cert_shown });
    };
    let fingerprint = hex::encode(Sha256::digest(leaf.as_ref()));
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|err| TlsError::Key {
        path: key_shown.clone(),
        detail: err.to_string(),
    })?;
    let mismatch = |detail: String| TlsError::Mismatch {
        cert: cert_shown.clone(),
        key: key_shown.clone(),
        detail,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| mismatch(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|err| mismatch(err.to_string()))?;
    // The listener speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        fingerprint,
    })
}

/// A client configuration that accepts exactly the certificate with this SHA-256 (hex).
pub fn pinned_client_config(fingerprint: &str) -> Result<rustls::ClientConfig, String> {
    let digest = hex::decode(fingerprint)
        .ok()
        .filter(|d| d.len() == 32)
        .ok_or_else(|| format!("'{fingerprint}' is not a SHA-256 fingerprint"))?;
    let provider = provider();
    let verifier = PinnedCertificate {
        sha256: digest,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Trusts one certificate by its digest; handshake signatures are still checked, so only the
/// holder of its key can answer.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the daemon's certificate is not the one its daemon file names".into(),
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
