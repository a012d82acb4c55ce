//! `herd certs` and the TLS settings of `herd node`: certificates come out
//! usable (keys 0600, a CA reused rather than overwritten), and every bad
//! TLS file stops the node with exit code 2 and a message saying what to
//! fix.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use herd_node::local_cluster::temp_dir;

mod common;
use common::{herd, stderr, stdout};

const COOKIE: (&str, &str) = ("HERD_COOKIE", "tls-cli-test-cookie-0123456789");

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// `herd certs --out DIR --node …`, which must succeed.
fn certs(dir: &Path, nodes: &[&str]) -> Output {
    let out = dir.display().to_string();
    let mut args = vec!["certs", "--out", out.as_str()];
    for node in nodes {
        args.extend(["--node", node]);
    }
    let output = herd(&args, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    output
}

/// `herd node --check-config` for n1 with `tls_args`.
fn check(tls_args: &[&str]) -> Output {
    let mut args = vec!["node", "--name", "n1", "--check-config"];
    args.extend_from_slice(tls_args);
    herd(&args, &[COOKIE])
}

#[test]
fn certs_writes_a_ca_and_node_certificates_with_private_keys_only_for_the_owner() {
    let dir = temp_dir("certs").unwrap();
    let output = certs(dir.path(), &["n1", "n2"]);
    let text = stdout(&output);
    for file in ["ca.pem", "ca.key", "n1.pem", "n1.key", "n2.pem", "n2.key"] {
        let meta = std::fs::metadata(dir.path().join(file)).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if file.ends_with(".key") {
            assert_eq!(mode, 0o600, "{file} is readable by others: {mode:o}");
        } else {
            assert_eq!(mode, 0o644, "{file}: {mode:o}");
        }
    }
    assert!(
        text.contains("--cluster-tls-ca"),
        "prints the flags: {text}"
    );
    assert!(text.contains("--ca-cert"), "prints the client flag: {text}");

    // A second run reuses the CA: the first nodes' certificates stay valid
    // alongside the new one.
    let ca_key = std::fs::read(dir.path().join("ca.key")).unwrap();
    let again = certs(dir.path(), &["n3"]);
    assert!(
        stdout(&again).contains("using the existing CA"),
        "{}",
        stdout(&again)
    );
    assert_eq!(std::fs::read(dir.path().join("ca.key")).unwrap(), ca_key);
    for node in ["n1", "n3"] {
        let output = check(&[
            "--cluster-tls-cert",
            &path(dir.path(), &format!("{node}.pem")),
            "--cluster-tls-key",
            &path(dir.path(), &format!("{node}.key")),
            "--cluster-tls-ca",
            &path(dir.path(), "ca.pem"),
        ]);
        assert_eq!(output.status.code(), Some(0), "{node}: {}", stderr(&output));
        assert!(
            stdout(&output).contains("cluster mutual TLS"),
            "{}",
            stdout(&output)
        );
    }

    // --new-ca replaces it; the old certificates no longer chain to it.
    let replaced = herd(
        &[
            "certs",
            "--out",
            &dir.path().display().to_string(),
            "--new-ca",
        ],
        &[],
    );
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
    assert_ne!(std::fs::read(dir.path().join("ca.key")).unwrap(), ca_key);
    let stale = check(&[
        "--cluster-tls-cert",
        &path(dir.path(), "n1.pem"),
        "--cluster-tls-key",
        &path(dir.path(), "n1.key"),
        "--cluster-tls-ca",
        &path(dir.path(), "ca.pem"),
    ]);
    assert_eq!(stale.status.code(), Some(2));
    assert!(
        stderr(&stale).contains("is not accepted by the cluster CA"),
        "{}",
        stderr(&stale)
    );
}

#[test]
fn certs_refuses_a_name_that_is_not_a_node_name() {
    let dir = temp_dir("certs-bad").unwrap();
    let output = herd(
        &[
            "certs",
            "--out",
            &dir.path().display().to_string(),
            "--node",
            "../etc",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not a node name"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_certificate_file_exits_2_naming_the_flag_and_the_path() {
    let dir = temp_dir("tls-missing").unwrap();
    certs(dir.path(), &["n1"]);
    let missing = path(dir.path(), "nope.pem");
    let output = check(&[
        "--tls-cert",
        &missing,
        "--tls-key",
        &path(dir.path(), "n1.key"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("flag --tls-cert: tls.cert: cannot read") && message.contains(&missing),
        "{message}"
    );
}

#[test]
fn a_key_that_does_not_match_its_certificate_exits_2() {
    let dir = temp_dir("tls-mismatch").unwrap();
    certs(dir.path(), &["n1", "n2"]);
    let output = check(&[
        "--tls-cert",
        &path(dir.path(), "n1.pem"),
        "--tls-key",
        &path(dir.path(), "n2.key"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("tls.key: the private key in") && message.contains("does not belong"),
        "{message}"
    );
}

#[test]
fn files_swapped_or_of_the_wrong_kind_exit_2_saying_which() {
    let dir = temp_dir("tls-swapped").unwrap();
    certs(dir.path(), &["n1"]);
    let output = check(&[
        "--tls-cert",
        &path(dir.path(), "n1.key"),
        "--tls-key",
        &path(dir.path(), "n1.pem"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("holds no certificate"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn half_configured_cluster_tls_exits_2_listing_what_is_missing() {
    let dir = temp_dir("tls-half").unwrap();
    certs(dir.path(), &["n1"]);
    let output = herd(
        &["node", "--name", "n1", "--check-config"],
        &[
            COOKIE,
            ("HERD_CLUSTER_TLS_CERT", &path(dir.path(), "n1.pem")),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("tls.cluster_key: is required because tls.cluster_cert is set")
            && message.contains("tls.cluster_ca: is required"),
        "{message}"
    );
}

#[test]
fn a_cluster_certificate_that_does_not_name_the_advertise_host_exits_2() {
    let dir = temp_dir("tls-san").unwrap();
    certs(dir.path(), &["n1"]);
    let output = check(&[
        "--listen",
        "0.0.0.0:7100",
        "--advertise",
        "n1.example.org",
        "--cluster-tls-cert",
        &path(dir.path(), "n1.pem"),
        "--cluster-tls-key",
        &path(dir.path(), "n1.key"),
        "--cluster-tls-ca",
        &path(dir.path(), "ca.pem"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("cannot serve the cluster port as \"n1.example.org\"")
            && message.contains("--host n1.example.org"),
        "{message}"
    );
}

#[test]
fn tls_paths_can_come_from_the_config_file() {
    let dir = temp_dir("tls-file").unwrap();
    certs(dir.path(), &["n1"]);
    let config = dir.path().join("n1.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nname = \"n1\"\n\n[tls]\ncert = \"{0}/n1.pem\"\nkey = \"{0}/n1.key\"\ncluster_cert = \"{0}/n1.pem\"\ncluster_key = \"{0}/missing.key\"\ncluster_ca = \"{0}/ca.pem\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let output = herd(
        &[
            "node",
            "--config",
            &config.display().to_string(),
            "--check-config",
        ],
        &[COOKIE],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    // The error points at the line that set the bad path.
    assert!(
        message.contains(&format!(
            "{}:8: tls.cluster_key: cannot read",
            config.display()
        )),
        "{message}"
    );
}
