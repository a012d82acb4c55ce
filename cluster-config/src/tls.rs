//! The TLS settings: which certificate and key files the HTTP API and the
//! cluster transport use, and where each path was set.
//!
//! Resolution only checks that the settings are complete (a certificate has
//! its key; cluster TLS has all three files). Reading and parsing the files
//! is the runtime's job (`herd_actors::tls`), at startup, so that a bad file
//! stops the node before it listens; its errors name the key and origin kept
//! here.

use std::path::PathBuf;

use crate::origin::Origin;

/// A file named by a TLS setting, with the setting's key and origin (for
/// errors about the file's content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    /// The path as given (relative paths are relative to the working
    /// directory, like every other path setting).
    pub path: PathBuf,
    /// The dotted config key, e.g. `tls.cluster_ca`.
    pub key: &'static str,
    /// Where the path was set.
    pub origin: Origin,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsIdentityFiles {
    /// The certificate, followed by any intermediates.
    pub cert: TlsFile,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: TlsFile,
}

/// Mutual TLS on the cluster port: this node's identity, and the CA that
/// every peer's certificate must chain to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// This node's certificate and key, presented both when it accepts and
    /// when it dials.
    pub identity: TlsIdentityFiles,
    /// The cluster CA certificate(s), PEM.
    pub ca: TlsFile,
}

/// `[tls]`: TLS for the HTTP API and for the cluster transport; each is off
/// unless configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The API serves HTTPS with this identity.
    pub api: Option<TlsIdentityFiles>,
    /// The cluster port and every dial use mutual TLS.
    pub cluster: Option<ClusterTlsFiles>,
}

/// The TLS paths given on the command line (or by an embedding program);
/// part of [`crate::Overrides`].
#[derive(Clone, Debug, Default)]
pub struct TlsOverrides {
    /// `--tls-cert`.
    pub cert: Option<PathBuf>,
    /// `--tls-key`.
    pub key: Option<PathBuf>,
    /// `--cluster-tls-cert`.
    pub cluster_cert: Option<PathBuf>,
    /// `--cluster-tls-key`.
    pub cluster_key: Option<PathBuf>,
    /// `--cluster-tls-ca`.
    pub cluster_ca: Option<PathBuf>,
}
