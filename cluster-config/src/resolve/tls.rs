//! `[tls]` and its flags and variables: five paths, each resolved flag >
//! environment > file, then checked for completeness. A certificate without
//! its key (or cluster TLS without its CA) is an error rather than a
//! silent fall-back to plain text.

use std::path::PathBuf;

use crate::environment::Environment;
use crate::error::ConfigError;
use crate::file::{LoadedFile, TlsSection};
use crate::origin::Origin;
use crate::tls::{ClusterTlsFiles, TlsFile, TlsIdentityFiles, TlsOverrides, TlsSettings};

/// One TLS path setting in each layer.
struct TlsKey {
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    from_flag: fn(&TlsOverrides) -> Option<PathBuf>,
    from_file: fn(&TlsSection) -> Option<String>,
}

const CERT: TlsKey = TlsKey {
    key: "tls.cert",
    flag: "--tls-cert",
    env: "HERD_TLS_CERT",
    from_flag: |flags| flags.cert.clone(),
    from_file: |section| section.cert.clone(),
};
const KEY: TlsKey = TlsKey {
    key: "tls.key",
    flag: "--tls-key",
    env: "HERD_TLS_KEY",
    from_flag: |flags| flags.key.clone(),
    from_file: |section| section.key.clone(),
};
const CLUSTER_CERT: TlsKey = TlsKey {
    key: "tls.cluster_cert",
    flag: "--cluster-tls-cert",
    env: "HERD_CLUSTER_TLS_CERT",
    from_flag: |flags| flags.cluster_cert.clone(),
    from_file: |section| section.cluster_cert.clone(),
};
const CLUSTER_KEY: TlsKey = TlsKey {
    key: "tls.cluster_key",
    flag: "--cluster-tls-key",
    env: "HERD_CLUSTER_TLS_KEY",
    from_flag: |flags| flags.cluster_key.clone(),
    from_file: |section| section.cluster_key.clone(),
};
const CLUSTER_CA: TlsKey = TlsKey {
    key: "tls.cluster_ca",
    flag: "--cluster-tls-ca",
    env: "HERD_CLUSTER_TLS_CA",
    from_flag: |flags| flags.cluster_ca.clone(),
    from_file: |section| section.cluster_ca.clone(),
};

impl TlsKey {
    /// The path from the highest layer that sets it (blank values count as
    /// unset, as for every `HERD_*` variable).
    fn pick(
        &self,
        flags: &TlsOverrides,
        env: &Environment,
        file: Option<&LoadedFile>,
    ) -> Option<TlsFile> {
        let (path, origin) = (self.from_flag)(flags)
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| (path, Origin::Flag(self.flag)))
            .or_else(|| {
                let text = env.get_non_empty(self.env)?;
                Some((PathBuf::from(text), Origin::Env(self.env)))
            })
            .or_else(|| {
                let file = file?;
                let text = (self.from_file)(&file.config.tls)?;
                (!text.trim().is_empty()).then(|| (PathBuf::from(text), file.origin_of(self.key)))
            })?;
        Some(TlsFile {
            path,
            key: self.key,
            origin,
        })
    }

    /// How to set this key, for error messages.
    fn how_to_set(&self) -> String {
        format!("{}, {} or {}", self.flag, self.env, self.key)
    }
}

/// Resolves the TLS paths, pushing an error for each incomplete pair or
/// triple.
pub(super) fn resolve_tls(
    flags: &TlsOverrides,
    env: &Environment,
    file: Option<&LoadedFile>,
    errors: &mut Vec<ConfigError>,
) -> TlsSettings {
    let api = identity(
        (&CERT, CERT.pick(flags, env, file)),
        (&KEY, KEY.pick(flags, env, file)),
        "the HTTP API",
        errors,
    );
    let cluster_cert = CLUSTER_CERT.pick(flags, env, file);
    let cluster_key = CLUSTER_KEY.pick(flags, env, file);
    let cluster_ca = CLUSTER_CA.pick(flags, env, file);
    let cluster = if cluster_cert.is_none() && cluster_key.is_none() && cluster_ca.is_none() {
        None
    } else {
        let given = [&cluster_cert, &cluster_key, &cluster_ca]
            .into_iter()
            .flatten()
            .next()
            .map(|file| (file.key, file.origin.clone()));
        let (given_key, given_origin) = given.expect("one of the three is set");
        for (setting, value) in [
            (&CLUSTER_CERT, &cluster_cert),
            (&CLUSTER_KEY, &cluster_key),
            (&CLUSTER_CA, &cluster_ca),
        ] {
            if value.is_none() {
                errors.push(ConfigError::new(
                    given_origin.clone(),
                    setting.key,
                    format!(
                        "is required because {given_key} is set: cluster TLS needs this node's certificate, its key and the cluster CA; set {}, or unset all three to run the cluster port in plain text",
                        setting.how_to_set()
                    ),
                ));
            }
        }
        match (cluster_cert, cluster_key, cluster_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(ClusterTlsFiles {
                identity: TlsIdentityFiles { cert, key },
                ca,
            }),
            _ => None,
        }
    };
    TlsSettings { api, cluster }
}

/// A certificate and key that must be given together.
fn identity(
    (cert_setting, cert): (&TlsKey, Option<TlsFile>),
    (key_setting, key): (&TlsKey, Option<TlsFile>),
    serves: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<TlsIdentityFiles> {
    match (cert, key) {
        (Some(cert), Some(key)) => Some(TlsIdentityFiles { cert, key }),
        (None, None) => None,
        (Some(given), None) | (None, Some(given)) => {
            let (missing, present) = if given.key == cert_setting.key {
                (key_setting, cert_setting)
            } else {
                (cert_setting, key_setting)
            };
            errors.push(ConfigError::new(
                given.origin,
                missing.key,
                format!(
                    "is required because {} is set: TLS for {serves} needs both a certificate and its private key; set {}, or unset {}",
                    present.key,
                    missing.how_to_set(),
                    present.how_to_set()
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(flags: TlsOverrides, env: &[(&str, &str)]) -> (TlsSettings, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let settings = resolve_tls(
            &flags,
            &Environment::from_pairs(env.iter().copied()),
            None,
            &mut errors,
        );
        (settings, errors)
    }

    #[test]
    fn nothing_set_means_no_tls() {
        let (settings, errors) = resolve(TlsOverrides::default(), &[]);
        assert_eq!(settings, TlsSettings::default());
        assert!(errors.is_empty());
    }

    #[test]
    fn a_flag_beats_the_environment_and_records_its_origin() {
        let flags = TlsOverrides {
            cert: Some("flag.pem".into()),
            ..TlsOverrides::default()
        };
        let (settings, errors) = resolve(
            flags,
            &[("HERD_TLS_CERT", "env.pem"), ("HERD_TLS_KEY", "env.key")],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let api = settings.api.expect("api tls");
        assert_eq!(api.cert.path, PathBuf::from("flag.pem"));
        assert_eq!(api.cert.origin, Origin::Flag("--tls-cert"));
        assert_eq!(api.key.origin, Origin::Env("HERD_TLS_KEY"));
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_naming_the_missing_key() {
        let (settings, errors) = resolve(TlsOverrides::default(), &[("HERD_TLS_CERT", "a.pem")]);
        assert!(settings.api.is_none());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "tls.key");
        assert_eq!(errors[0].origin, Origin::Env("HERD_TLS_CERT"));
        assert!(errors[0].message.contains("--tls-key"), "{}", errors[0]);
    }

    #[test]
    fn half_configured_cluster_tls_names_every_missing_file() {
        let flags = TlsOverrides {
            cluster_cert: Some("n1.pem".into()),
            ..TlsOverrides::default()
        };
        let (settings, errors) = resolve(flags, &[]);
        assert!(settings.cluster.is_none());
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tls.cluster_key", "tls.cluster_ca"]);
        assert!(
            errors[1].message.contains("--cluster-tls-ca"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn complete_cluster_tls_resolves() {
        let (settings, errors) = resolve(
            TlsOverrides::default(),
            &[
                ("HERD_CLUSTER_TLS_CERT", "n1.pem"),
                ("HERD_CLUSTER_TLS_KEY", "n1.key"),
                ("HERD_CLUSTER_TLS_CA", "ca.pem"),
            ],
        );
        assert!(errors.is_empty(), "{errors:?}");
        let cluster = settings.cluster.expect("cluster tls");
        assert_eq!(cluster.ca.key, "tls.cluster_ca");
        assert_eq!(cluster.identity.key.path, PathBuf::from("n1.key"));
    }
}
