//! TLS material, loaded and checked at startup: the HTTP API's server
//! configuration and the cluster transport's mutual-TLS acceptor and
//! connector.
//!
//! Everything uses rustls with the aws-lc-rs provider (the one reqwest
//! already brings), so a node compiles one crypto backend. Loading fails
//! with a [`TlsFileError`] that names the setting and where it was set, so
//! a bad path, an unreadable file, a key that does not belong to its
//! certificate or a certificate the cluster CA did not sign stops the node
//! at startup (exit 2) instead of failing every connection later.

use std::sync::Arc;

use herd_config::{ClusterTlsFiles, ConfigError, ConfigErrors, TlsFile, TlsIdentityFiles};
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The crypto provider every TLS configuration of herd uses.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process-wide default rustls provider, for libraries
/// that take the default rather than being handed one (the OTLP exporter's
/// HTTP client). Idempotent; a provider installed earlier is kept.
pub fn install_default_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A TLS file that cannot be used, and why; converts into a
/// [`ConfigError`] that names the setting and its origin.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}: {}: {problem}", file.origin, file.key)]
pub struct TlsFileError {
    /// The setting whose file is at fault.
    pub file: TlsFile,
    /// What is wrong and how to fix it.
    pub problem: String,
}

impl TlsFileError {
    fn new(file: &TlsFile, problem: impl Into<String>) -> Self {
        TlsFileError {
            file: file.clone(),
            problem: problem.into(),
        }
    }
}

impl From<TlsFileError> for ConfigError {
    fn from(error: TlsFileError) -> Self {
        ConfigError::new(error.file.origin, error.file.key, error.problem)
    }
}

impl From<TlsFileError> for ConfigErrors {
    fn from(error: TlsFileError) -> Self {
        ConfigErrors(vec![error.into()])
    }
}

/// Reads a file named by a TLS setting.
fn read(file: &TlsFile) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(&file.path).map_err(|error| {
        TlsFileError::new(
            file,
            format!(
                "cannot read {}: {error}; check the path and that this user may read it",
                file.path.display()
            ),
        )
    })
}

/// The PEM certificates in a file, in order (leaf first for a chain).
fn read_certificates(file: &TlsFile) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(file)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            TlsFileError::new(
                file,
                format!("{} is not valid PEM: {error}", file.path.display()),
            )
        })?;
    if certificates.is_empty() {
        return Err(TlsFileError::new(
            file,
            format!(
                "{} holds no certificate (a PEM block -----BEGIN CERTIFICATE-----); give the certificate file, not the key",
                file.path.display()
            ),
        ));
    }
    Ok(certificates)
}

/// The PEM private key in a file.
fn read_private_key(file: &TlsFile) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes = read(file)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| {
        let why = match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (a PEM block -----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY); give the key file, not the certificate".to_string()
            }
            other => format!("is not a valid PEM private key: {other}"),
        };
        TlsFileError::new(file, format!("{} {why}", file.path.display()))
    })
}

/// The certificate and key of `files`, checked to belong together (the
/// key's public half is the certificate's).
fn read_identity(
    files: &TlsIdentityFiles,
    provider: &CryptoProvider,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsFileError> {
    let chain = read_certificates(&files.cert)?;
    let key = read_private_key(&files.key)?;
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), provider) {
        Ok(_) => Ok((chain, key)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsFileError::new(
            &files.key,
            format!(
                "the private key in {} does not belong to the certificate in {}; give the key that certificate was issued for",
                files.key.path.display(),
                files.cert.path.display()
            ),
        )),
        Err(error) => Err(TlsFileError::new(
            &files.key,
            format!(
                "cannot use the private key in {} with the certificate in {}: {error}",
                files.key.path.display(),
                files.cert.path.display()
            ),
        )),
    }
}

/// The HTTP API's TLS configuration (TLS 1.2 and 1.3, `http/1.1`), from a
/// certificate chain and key that are checked to match.
pub fn api_server_config(files: &TlsIdentityFiles) -> Result<Arc<ServerConfig>, TlsFileError> {
    let provider = crypto_provider();
    let (chain, key) = read_identity(files, &provider)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsFileError::new(&files.cert, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| TlsFileError::new(&files.cert, error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Mutual TLS for the cluster transport: both ends present a certificate
/// signed by the cluster CA, and both check the other's.
///
/// - Accepting, a peer without a client certificate that chains to the CA
///   (or without the `clientAuth` usage) fails the handshake.
/// - Dialing, the peer's certificate must chain to the CA and name the host
///   dialed (the host part of the seed or advertised address, as a DNS or
///   IP subject alternative name).
///
/// Only TLS 1.3 is offered: both ends are herd nodes.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls")
    }
}

impl ClusterTls {
    /// Loads and checks the node's certificate, key and cluster CA: the key
    /// must belong to the certificate, the certificate must chain to the CA
    /// as a client, and it must name `advertise_host` (what peers dial).
    pub fn load(files: &ClusterTlsFiles, advertise_host: &str) -> Result<Self, TlsFileError> {
        let provider = crypto_provider();
        let (chain, key) = read_identity(&files.identity, &provider)?;
        let roots = Arc::new(read_roots(&files.ca)?);
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|error| TlsFileError::new(&files.ca, error.to_string()))?;
        check_own_certificate(files, &chain, &roots, &provider, advertise_host)?;
        let tls13 = [&rustls::version::TLS13];
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&tls13)
            .map_err(|error| TlsFileError::new(&files.identity.cert, error.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|error| TlsFileError::new(&files.identity.cert, error.to_string()))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&tls13)
            .map_err(|error| TlsFileError::new(&files.identity.cert, error.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|error| TlsFileError::new(&files.identity.cert, error.to_string()))?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// Accepts inbound cluster connections (requires a client certificate).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Opens outbound cluster connections (presents this node's certificate).
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

/// The name a dialed peer's certificate must carry: the host part of
/// `address` (`host:port`, `[v6]:port`).
pub fn server_name_of(address: &str) -> Result<ServerName<'static>, String> {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|error| format!("{host:?} cannot be checked against a certificate: {error}"))
}

/// The CA certificates in a file, as trust anchors.
fn read_roots(file: &TlsFile) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(file)? {
        roots.add(certificate).map_err(|error| {
            TlsFileError::new(
                file,
                format!(
                    "{} holds a certificate that cannot be a trust anchor: {error}",
                    file.path.display()
                ),
            )
        })?;
    }
    Ok(roots)
}

/// Checks this node's certificate the way its peers will: as a client
/// (chains to the CA, allows client authentication) and as a server for the
/// host they dial (chains to the CA, names `advertise_host`).
fn check_own_certificate(
    files: &ClusterTlsFiles,
    chain: &[CertificateDer<'static>],
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    advertise_host: &str,
) -> Result<(), TlsFileError> {
    let cert = &files.identity.cert;
    let now = UnixTime::now();
    let (leaf, intermediates) = chain.split_first().expect("read_certificates is non-empty");
    let as_client = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|error| TlsFileError::new(&files.ca, error.to_string()))?;
    as_client
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|error| {
            TlsFileError::new(
                cert,
                format!(
                    "{} is not accepted by the cluster CA in {}: {error}; peers would refuse this node. Issue it from that CA (herd certs) with the clientAuth extended key usage",
                    cert.path.display(),
                    files.ca.path.display()
                ),
            )
        })?;
    let as_server = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|error| TlsFileError::new(&files.ca, error.to_string()))?;
    let name = server_name_of(advertise_host)
        .map_err(|error| TlsFileError::new(cert, error.to_string()))?;
    as_server
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .map_err(|error| {
            TlsFileError::new(
                cert,
                format!(
                    "{} cannot serve the cluster port as {advertise_host:?}: {error}; peers dial this node at its advertise host and check that the certificate names it. Issue it with a subject alternative name for {advertise_host} and the serverAuth extended key usage (herd certs --node NAME --host {advertise_host})",
                    cert.path.display()
                ),
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_host_part_of_the_address() {
        assert_eq!(
            server_name_of("node-1.herd:7100").unwrap(),
            ServerName::try_from("node-1.herd").unwrap()
        );
        assert_eq!(
            server_name_of("127.0.0.1:7100").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name_of("[::1]:7100").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name_of("localhost").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
    }
}
