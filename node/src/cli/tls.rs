//! `herd node`'s TLS flags, and loading what they name before the node
//! starts (so `--check-config` checks the files too).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use herd_actors::tls::{ClusterTls, api_server_config};
use herd_config::{ConfigError, ConfigErrors, NodeConfig, TlsOverrides};

/// TLS flags of `herd node`. Like every node flag each also has an
/// environment variable and a config-file key (`[tls]`).
#[derive(Args, Debug, Default)]
pub struct TlsArgs {
    /// Serve the HTTP API over HTTPS with this PEM certificate (chain); needs --tls-key. [env: HERD_TLS_CERT] [file: tls.cert]
    #[arg(long = "tls-cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert. [env: HERD_TLS_KEY] [file: tls.key]
    #[arg(long = "tls-key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Run the cluster port over mutual TLS with this node certificate (PEM, serverAuth and clientAuth, naming the advertise host); needs the key and CA too. [env: HERD_CLUSTER_TLS_CERT] [file: tls.cluster_cert]
    #[arg(long = "cluster-tls-cert", value_name = "FILE")]
    pub cluster_cert: Option<PathBuf>,
    /// The private key (PEM) of --cluster-tls-cert. [env: HERD_CLUSTER_TLS_KEY] [file: tls.cluster_key]
    #[arg(long = "cluster-tls-key", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// The cluster CA (PEM): peers must present a certificate it signed. [env: HERD_CLUSTER_TLS_CA] [file: tls.cluster_ca]
    #[arg(long = "cluster-tls-ca", value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The flags as configuration overrides.
    pub fn into_overrides(self) -> TlsOverrides {
        TlsOverrides {
            cert: self.cert,
            key: self.key,
            cluster_cert: self.cluster_cert,
            cluster_key: self.cluster_key,
            cluster_ca: self.cluster_ca,
        }
    }
}

/// Loads and checks every TLS file `config` names; returns the API's
/// server configuration (if HTTPS is on). Every problem is reported.
pub fn load(config: &NodeConfig) -> Result<Option<Arc<rustls::ServerConfig>>, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let api = match &config.tls.api {
        Some(files) => match api_server_config(files) {
            Ok(server) => Some(server),
            Err(error) => {
                errors.push(error.into());
                None
            }
        },
        None => None,
    };
    if let Some(files) = &config.tls.cluster
        && let Err(error) = ClusterTls::load(files, &config.advertise_host)
    {
        errors.push(error.into());
    }
    if errors.is_empty() {
        Ok(api)
    } else {
        Err(ConfigErrors(errors))
    }
}
