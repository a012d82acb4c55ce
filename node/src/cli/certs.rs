//! `herd certs`: a development CA and node certificates, for trying TLS
//! (`--tls-*`, `--cluster-tls-*`) without a PKI. Production uses its own CA
//! (see the README's TLS section).
//!
//! Writes into one directory: `ca.pem` (give it to every node and client),
//! `ca.key` (keep it off the nodes), and per node `NAME.pem` / `NAME.key`.
//! A node certificate serves both the API and the cluster port: it names
//! `localhost`, `127.0.0.1`, `::1`, the node's name and every `--host`, and
//! allows both server and client authentication. Keys are written mode
//! 0600. An existing `ca.key` is reused (so nodes can be added later) and
//! only replaced with `--new-ca`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};

/// Flags of `herd certs`.
#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write into (created if missing).
    #[arg(long, value_name = "DIR", default_value = "herd-certs")]
    out: PathBuf,
    /// A node to issue a certificate for (NAME.pem and NAME.key); repeat for several.
    #[arg(long = "node", value_name = "NAME")]
    nodes: Vec<String>,
    /// Another host name or IP every node certificate names, besides localhost, 127.0.0.1, ::1 and the node's name (e.g. the advertise host); repeat for several.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Days the node certificates stay valid.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    days: u32,
    /// Replace an existing CA (ca.pem, ca.key): certificates it issued stop being trusted.
    #[arg(long)]
    new_ca: bool,
}

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
enum CertsError {
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The development CA's parameters. Its subject is derived from its key
/// alone, so that a CA reloaded from `ca.key` issues certificates that chain
/// to the `ca.pem` written with it, and two development CAs have different
/// names (a certificate from the other one is then an unknown issuer, not a
/// bad signature).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let fingerprint: String = params
        .key_identifier(key)
        .iter()
        .take(4)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "herd");
    name.push(
        DnType::CommonName,
        format!("herd development CA {fingerprint}"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    params
}

/// A node certificate's parameters: every name it answers to, both TLS
/// usages.
fn node_params(name: &str, hosts: &[String], days: u32) -> Result<CertificateParams, CertsError> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        name.to_string(),
    ];
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let mut params = CertificateParams::new(names).map_err(|error| {
        CertsError::Invalid(format!(
            "a --host is neither an IP address nor a DNS name: {error}"
        ))
    })?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::OrganizationName, "herd");
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days.into());
    Ok(params)
}

/// `herd certs`: exit 0 with the files written, 2 when the arguments or the
/// directory are unusable.
pub fn run(args: CertsArgs) -> ExitCode {
    match make(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herd certs: {error}");
            ExitCode::from(2)
        }
    }
}

fn make(args: &CertsArgs) -> Result<(), CertsError> {
    for name in &args.nodes {
        herd_protocol::NodeName::parse(name).map_err(|error| {
            CertsError::Invalid(format!(
                "--node {name:?} is not a node name: {error}; use the node's --name"
            ))
        })?;
    }
    fs::create_dir_all(&args.out).map_err(|error| CertsError::Io {
        action: "create the directory",
        path: args.out.clone(),
        error,
    })?;
    let ca_pem_path = args.out.join("ca.pem");
    let ca_key_path = args.out.join("ca.key");
    let (ca_key, reused) = if ca_key_path.exists() && !args.new_ca {
        let text = read_text(&ca_key_path)?;
        let key = KeyPair::from_pem(&text).map_err(|error| {
            CertsError::Invalid(format!(
                "{} is not a private key ({error}); move it away or pass --new-ca to replace the CA",
                ca_key_path.display()
            ))
        })?;
        (key, true)
    } else {
        let key = KeyPair::generate()?;
        let certificate = ca_params(&key).self_signed(&key)?;
        write_file(&ca_key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&ca_pem_path, certificate.pem().as_bytes(), false)?;
        (key, false)
    };
    let issuer = Issuer::new(ca_params(&ca_key), &ca_key);
    let roots = read_roots(&ca_pem_path)?;
    if reused {
        println!(
            "using the existing CA in {} (pass --new-ca to replace it)",
            args.out.display()
        );
    } else {
        println!(
            "wrote {}  the cluster CA: every node's --cluster-tls-ca, and clients' --ca-cert",
            ca_pem_path.display()
        );
        println!(
            "wrote {}  the CA's private key (mode 0600): keep it off the nodes",
            ca_key_path.display()
        );
    }
    for name in &args.nodes {
        let key = KeyPair::generate()?;
        let certificate = node_params(name, &args.hosts, args.days)?.signed_by(&key, &issuer)?;
        // A CA reloaded from ca.key chains only if ca.pem is its own
        // certificate: prove it before writing anything a node would use.
        verify_against(&roots, certificate.der(), &ca_pem_path)?;
        let cert_path = args.out.join(format!("{name}.pem"));
        let key_path = args.out.join(format!("{name}.key"));
        write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
        write_file(&cert_path, certificate.pem().as_bytes(), false)?;
        let mut names = vec!["localhost", "127.0.0.1", "::1", name.as_str()];
        names.extend(args.hosts.iter().map(String::as_str));
        println!(
            "wrote {} and {}  node {name}, valid {} days for {}",
            cert_path.display(),
            key_path.display(),
            args.days,
            names.join(", ")
        );
    }
    print_usage(&args.out, args.nodes.first().map(String::as_str));
    Ok(())
}

fn print_usage(dir: &Path, node: Option<&str>) {
    let dir = dir.display();
    let Some(node) = node else {
        println!("\nissue node certificates with: herd certs --out {dir} --node NAME");
        return;
    };
    println!(
        "\nstart {node} with HTTPS and cluster TLS:\n  herd node --name {node} \\\n    --tls-cert {dir}/{node}.pem --tls-key {dir}/{node}.key \\\n    --cluster-tls-cert {dir}/{node}.pem --cluster-tls-key {dir}/{node}.key --cluster-tls-ca {dir}/ca.pem"
    );
    println!(
        "and call its API with:\n  herd status --api https://127.0.0.1:8100 --ca-cert {dir}/ca.pem"
    );
    println!(
        "\nfor development only: in production, issue certificates from your own CA (README, TLS)"
    );
}

fn read_text(path: &Path) -> Result<String, CertsError> {
    fs::read_to_string(path).map_err(|error| CertsError::Io {
        action: "read",
        path: path.to_path_buf(),
        error,
    })
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, CertsError> {
    let text = read_text(path)?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
        let certificate = certificate.map_err(|error| {
            CertsError::Invalid(format!("{} is not PEM: {error}", path.display()))
        })?;
        roots.add(certificate).map_err(|error| {
            CertsError::Invalid(format!(
                "{} is not a usable CA certificate: {error}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(CertsError::Invalid(format!(
            "{} holds no certificate; pass --new-ca to make a new CA",
            path.display()
        )));
    }
    Ok(Arc::new(roots))
}

/// Checks a freshly issued certificate as peers will: as a server named
/// `localhost` and as a client, against the CA file on disk.
fn verify_against(
    roots: &Arc<RootCertStore>,
    certificate: &CertificateDer<'static>,
    ca_path: &Path,
) -> Result<(), CertsError> {
    let provider = herd_actors::tls::crypto_provider();
    let mismatch = |error: rustls::Error| {
        CertsError::Invalid(format!(
            "the certificate issued with ca.key does not verify against {} ({error}): the two do not belong together; pass --new-ca to make a new CA",
            ca_path.display()
        ))
    };
    let now = UnixTime::now();
    rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|error| CertsError::Invalid(error.to_string()))?
        .verify_server_cert(
            certificate,
            &[],
            &ServerName::try_from("localhost").expect("a valid name"),
            &[],
            now,
        )
        .map_err(mismatch)?;
    rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
        .build()
        .map_err(|error| CertsError::Invalid(error.to_string()))?
        .verify_client_cert(certificate, &[], now)
        .map_err(mismatch)?;
    Ok(())
}

/// Writes `contents` to `path` via a temporary file in the same directory
/// (a reader never sees half a key); `secret` files get mode 0600 from the
/// start.
fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertsError> {
    let io = |action: &'static str| {
        move |error| CertsError::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    };
    let temporary = PathBuf::from(format!("{}.tmp", path.display()));
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(io("write"))?;
    // An existing temporary file keeps its mode: set it.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("set the permissions of"))?;
    file.write_all(contents).map_err(io("write"))?;
    file.sync_all().map_err(io("write"))?;
    fs::rename(&temporary, path).map_err(io("write"))?;
    Ok(())
}
