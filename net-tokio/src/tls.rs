//! TLS for the client port and the peer links, on rustls with the ring provider.
//!
//! [`TlsState`] owns what the PEM files of a node's `tls` section give: the acceptor of the TLS
//! client port, and for peer links an acceptor (verifying dialling peers against the peer CA
//! under mutual TLS) and a connector (verifying the peer it dials against the same CA and
//! presenting the node's certificate). Connections take the current material when they start,
//! so [`TlsState::reload`] changes what new connections use and leaves open ones alone. A reload
//! reads every file again and swaps all of them or none: a file that cannot be used is refused
//! with a message naming its field and path, and the material in use stays.
//!
//! The provider is always given explicitly (`builder_with_provider`), so the process-wide
//! default never decides; [`install_crypto_provider`] also makes ring the default for code that
//! asks for it (the redis client behind `ringkv admin --tls-ca`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsFileConfig;

/// A file of the `tls` section that could not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("field `tls.{field}`: {path}: {reason}")]
pub struct TlsError {
    /// The field naming the file (`cert_pem`, `key_pem`, `client_ca_pem`, `peer_ca_pem`).
    pub field: &'static str,
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Makes ring the process's default rustls provider, unless one is installed already.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = ring_provider().install_default();
}

/// rustls's ring provider. rustls 0.23.48 deprecates it because ring has no post-quantum key
/// exchange (X25519MLKEM768 needs aws-lc-rs); we keep it on purpose, since aws-lc-rs's C and
/// cmake build would not fit CI's time on 2 cores (ARCHITECTURE.md, "TLS and users").
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The TLS material of a node, reloadable while it runs.
pub struct TlsState {
    files: TlsFileConfig,
    current: RwLock<Arc<TlsMaterial>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsState")
            .field("files", &self.files)
            .field("fingerprint", &self.material().fingerprint)
            .finish()
    }
}

/// One load of the PEM files.
struct TlsMaterial {
    client: Option<TlsAcceptor>,
    peer_acceptor: Option<TlsAcceptor>,
    peer_connector: Option<TlsConnector>,
    /// SHA-256 of the leaf certificate, in hex: which certificate is served.
    fingerprint: String,
}

impl TlsState {
    /// Reads the files of `files` and builds the configurations; the error names the field and
    /// the file that cannot be used.
    pub fn load(files: TlsFileConfig) -> Result<TlsState, TlsError> {
        let material = TlsMaterial::load(&files)?;
        Ok(TlsState { files, current: RwLock::new(Arc::new(material)) })
    }

    /// Reads the files again. On success new connections use them and the new leaf
    /// certificate's SHA-256 fingerprint is returned; on failure nothing changes.
    pub fn reload(&self) -> Result<String, TlsError> {
        let material = TlsMaterial::load(&self.files)?;
        let fingerprint = material.fingerprint.clone();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(material);
        Ok(fingerprint)
    }

    /// The SHA-256 fingerprint (hex) of the leaf certificate served now.
    pub fn fingerprint(&self) -> String {
        self.material().fingerprint.clone()
    }

    /// The acceptor of the TLS client port, if the node has one.
    pub fn client_acceptor(&self) -> Option<TlsAcceptor> {
        self.material().client.clone()
    }

    /// The acceptor of the peer port, if peer links are TLS.
    pub fn peer_acceptor(&self) -> Option<TlsAcceptor> {
        self.material().peer_acceptor.clone()
    }

    /// The connector for dialling peers, if peer links are TLS.
    pub fn peer_connector(&self) -> Option<TlsConnector> {
        self.material().peer_connector.clone()
    }

    /// The name a dialled peer's certificate must carry: `peer_server_name`, or its IP.
    pub fn peer_server_name(&self, address: SocketAddr) -> ServerName<'static> {
        self.files
            .peer_server_name
            .as_deref()
            .and_then(|name| ServerName::try_from(name.to_string()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()))
    }

    /// How long a handshake may take.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.files.handshake_timeout_ms)
    }

    /// The TLS client port's configured address.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        self.files.client_addr
    }

    fn material(&self) -> Arc<TlsMaterial> {
        // A writer only swaps an Arc, so a poisoned lock still holds a complete value.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl TlsMaterial {
    fn load(files: &TlsFileConfig) -> Result<TlsMaterial, TlsError> {
        let provider = Arc::new(ring_provider());
        let certs = read_certificates("cert_pem", &files.cert_pem)?;
        let key = read_key(&files.key_pem)?;
        let fingerprint = hex(&Sha256::digest(certs[0].as_ref()));
        let client_roots = match &files.client_ca_pem {
            Some(path) => {
                Some((read_roots("client_ca_pem", path)?, "client_ca_pem", path.as_path()))
            }
            None => None,
        };
        let peer_roots = match &files.peer_ca_pem {
            Some(path) => Some(read_roots("peer_ca_pem", path)?),
            None => None,
        };
        let client = match files.client_addr {
            Some(_) => {
                let verify =
                    client_roots.as_ref().map(|(roots, field, path)| (roots, *field, *path));
                let config = server_config(&provider, files, &certs, &key, verify)?;
                Some(TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let (peer_acceptor, peer_connector) = match (&peer_roots, &files.peer_ca_pem) {
            (Some(roots), Some(path)) => {
                let verified_by =
                    files.peer_mutual_tls.then_some((roots, "peer_ca_pem", path.as_path()));
                let acceptor = server_config(&provider, files, &certs, &key, verified_by)?;
                let connector = client_config(&provider, roots, &certs, &key)
                    .map_err(|reason| tls_error("peer_ca_pem", path, reason))?;
                (
                    Some(TlsAcceptor::from(Arc::new(acceptor))),
                    Some(TlsConnector::from(Arc::new(connector))),
                )
            }
            _ => (None, None),
        };
        Ok(TlsMaterial { client, peer_acceptor, peer_connector, fingerprint })
    }
}

/// A server configuration with the node's certificate, verifying client certificates against
/// `verify_clients` (the CAs, and the field and file they came from) when given.
fn server_config(
    provider: &Arc<CryptoProvider>,
    files: &TlsFileConfig,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    verify_clients: Option<(&RootCertStore, &'static str, &Path)>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error("cert_pem", &files.cert_pem, error.to_string()))?;
    let builder = match verify_clients {
        Some((roots, field, path)) => {
            let roots = Arc::new(roots.clone());
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|error| tls_error(field, path, error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs.to_vec(), key.clone_key()).map_err(|error| {
        tls_error("key_pem", &files.key_pem, format!("does not fit the certificate: {error}"))
    })
}

/// The peer connector's configuration: trusts `roots`, presents the node's certificate.
fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: &RootCertStore,
    certs: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
) -> Result<ClientConfig, String> {
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(certs.to_vec(), key.clone_key())
        .map_err(|error| error.to_string())
}

fn tls_error(field: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError { field, path: path.display().to_string(), reason: reason.into() }
}

/// The certificates of a PEM file, at least one.
fn read_certificates(
    field: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|error| tls_error(field, path, error.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(field, path, format!("not a PEM certificate: {error}")))?;
    if certs.is_empty() {
        return Err(tls_error(field, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|error| tls_error("key_pem", path, error.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|error| tls_error("key_pem", path, format!("no PEM private key: {error}")))
}

/// The CA certificates of a PEM file as trust anchors.
fn read_roots(field: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(field, path)? {
        roots
            .add(cert)
            .map_err(|error| tls_error(field, path, format!("not a usable CA: {error}")))?;
    }
    Ok(roots)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(directory: &Path) -> TlsFileConfig {
        TlsFileConfig {
            cert_pem: directory.join("cert.pem"),
            key_pem: directory.join("key.pem"),
            client_addr: Some("127.0.0.1:0".parse().unwrap()),
            client_ca_pem: None,
            peer_ca_pem: None,
            peer_mutual_tls: true,
            peer_server_name: None,
            handshake_timeout_ms: 3_000,
        }
    }

    #[test]
    fn unusable_files_are_refused_naming_the_field_and_the_file() {
        let directory = tempfile::tempdir().unwrap();
        let missing = TlsState::load(files(directory.path())).unwrap_err();
        assert_eq!(missing.field, "cert_pem");
        assert!(missing.to_string().contains("cert.pem"), "{missing}");
        std::fs::write(directory.path().join("cert.pem"), "not a certificate").unwrap();
        let garbage = TlsState::load(files(directory.path())).unwrap_err();
        assert_eq!(garbage.field, "cert_pem");
        assert!(garbage.reason.contains("no PEM certificate"), "{garbage}");
    }
}
