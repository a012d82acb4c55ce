//! The monitoring files in `deploy/` are valid for the real tools:
//! `promtool check config` and `promtool check rules` pass, and every panel
//! of the Grafana dashboard queries a herd metric that `/metrics` serves.
//!
//! These tests need `promtool` (Debian's `prometheus` package); they fail,
//! rather than skip, when it is missing. `.ci/run` installs it.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Runs promtool; returns whether it succeeded and its stdout and stderr.
fn promtool(args: &[&str]) -> (bool, String) {
    let output = match Command::new("promtool").args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => panic!(
            "promtool is not on PATH: install Debian's prometheus package \
             (apt-get install -y prometheus) or run .ci/run, which installs it"
        ),
        Err(error) => panic!("promtool could not run: {error}"),
    };
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn promtool_check_config_passes() {
    // `check config` also checks the rule files the config loads.
    let config = deploy("prometheus/prometheus.yml");
    let (ok, output) = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(ok, "promtool check config failed:\n{output}");
    assert!(output.contains("1 rule files found"), "{output}");
}

#[test]
fn promtool_check_rules_passes() {
    let rules = deploy("prometheus/rules/herd.yml");
    let (ok, output) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "promtool check rules failed:\n{output}");

    // promtool accepts alerts without `for`, severity or annotations; the
    // operator needs them, so check each alert's block of the file.
    let text = std::fs::read_to_string(rules).unwrap();
    for alert in [
        "HerdNodeDown",
        "HerdQueueBacklogGrowing",
        "HerdCircuitOpen",
        "HerdDeadLettersRising",
        "HerdWorkerRestartStorm",
    ] {
        let start = text
            .find(&format!("- alert: {alert}\n"))
            .unwrap_or_else(|| panic!("no {alert} rule"));
        let rest = &text[start + 2..];
        let block = &rest[..rest.find("\n      - ").unwrap_or(rest.len())];
        for field in ["for:", "severity:", "summary:", "description:"] {
            assert!(block.contains(field), "{alert} has no {field}\n{block}");
        }
    }
    for record in ["herd:task_run_seconds:p95", "herd:tasks_finished:rate1m"] {
        assert!(
            text.contains(&format!("- record: {record}\n")),
            "no {record} rule"
        );
    }
}

#[test]
fn every_dashboard_panel_queries_a_metric_herd_serves() {
    let text = std::fs::read_to_string(deploy("grafana/herd-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "herd-overview");
    // The metric names herd describes (actors/src/metrics_catalog.rs).
    let catalog = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../actors/src/metrics_catalog.rs"),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let metrics: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("herd_"))
                .collect();
            assert!(
                !metrics.is_empty(),
                "panel {title} queries no herd metric: {expr}"
            );
            for metric in metrics {
                let base = metric
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum");
                assert!(
                    catalog.contains(&format!("\"{base}\"")),
                    "panel {title} queries {metric}, which herd does not describe"
                );
            }
        }
    }
}

/// The lines of one Compose service's block (`  name:` up to the next line
/// indented two spaces or less).
fn compose_service(name: &str) -> String {
    let text = std::fs::read_to_string(deploy("compose.yaml")).unwrap();
    let start = text
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("compose.yaml has no service {name}"));
    text[start + 1..]
        .lines()
        .enumerate()
        .take_while(|(index, line)| {
            *index == 0 || line.is_empty() || line.starts_with("   ") || line.starts_with("  #")
        })
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_monitoring_profile_listens_on_loopback_and_grafana_requires_a_login() {
    for (service, port) in [("prometheus", 9090), ("grafana", 3000)] {
        let block = compose_service(service);
        let ports: Vec<&str> = block
            .lines()
            .skip_while(|line| line.trim() != "ports:")
            .skip(1)
            .take_while(|line| line.trim_start().starts_with("- "))
            .collect();
        assert_eq!(
            ports,
            [format!("      - \"127.0.0.1:{port}:{port}\"")],
            "{service} must publish only on the host's loopback:\n{block}"
        );
    }

    let grafana = compose_service("grafana");
    assert!(
        grafana.contains("GF_AUTH_ANONYMOUS_ENABLED: \"false\""),
        "{grafana}"
    );
    assert!(!grafana.contains("GF_AUTH_ANONYMOUS_ORG_ROLE"), "{grafana}");
    // The password comes from the environment, with no default to fall back on.
    assert!(
        grafana.contains("GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD:-}"),
        "{grafana}"
    );
    assert!(
        grafana.contains("[ -n \"$$GF_SECURITY_ADMIN_PASSWORD\" ] || {"),
        "Grafana must refuse to start without a password:\n{grafana}"
    );
    // Provisioning must not turn anonymous access back on.
    for dir in ["dashboards", "datasources"] {
        for entry in std::fs::read_dir(deploy(&format!("grafana/provisioning/{dir}"))).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.to_lowercase().contains("anonymous"), "{text}");
        }
    }
}
