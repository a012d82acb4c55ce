//! `.ci/run`'s install of Debian's prometheus package stops the service that
//! install started — through the service manager, only when the package is
//! new — and never kills other Prometheus processes on the machine by name.
//!
//! The install script runs against stand-ins for `apt-get`, `dpkg-query`,
//! `invoke-rc.d`, `sudo`, `pkill` and `killall` that record how they were
//! called, so nothing is installed, started or stopped for real.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use herd_tests::temp_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `.ci/install-prometheus` with stand-in commands first on `PATH`;
/// `installed_before` is what the stand-in `dpkg-query` reports. Returns the
/// commands called, one line each.
fn install(installed_before: bool) -> Vec<String> {
    let dir = temp_dir("ci-install").unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("calls");
    let record = format!("echo \"$(basename \"$0\") $*\" >> '{}'\n", log.display());
    let status = if installed_before {
        "install ok installed"
    } else {
        "unknown ok not-installed"
    };
    let stand_ins = [
        ("apt-get", record.clone()),
        ("invoke-rc.d", record.clone()),
        ("pkill", record.clone()),
        ("killall", record.clone()),
        ("systemctl", record.clone()),
        ("sudo", format!("{record}exec \"$@\"\n")),
        ("dpkg-query", format!("{record}printf '{status}'\n")),
    ];
    for (name, body) in stand_ins {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = Command::new(repo().join(".ci/install-prometheus"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with("sudo ") && !line.starts_with("dpkg-query "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_fresh_install_stops_only_the_service_it_started() {
    let calls = install(false);
    assert_eq!(
        calls,
        [
            "apt-get update -qq",
            "apt-get install -y -qq --no-install-recommends prometheus",
            "invoke-rc.d prometheus stop",
        ]
    );
}

#[test]
fn a_package_installed_before_is_left_running() {
    let calls = install(true);
    assert!(
        !calls.iter().any(|call| call.starts_with("invoke-rc.d")),
        "{calls:?}"
    );
}

#[test]
fn the_ci_script_kills_nothing_by_name() {
    for script in [".ci/run", ".ci/install-prometheus"] {
        let text = std::fs::read_to_string(repo().join(script)).unwrap();
        for command in ["pkill", "killall"] {
            assert!(
                !text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                    .any(|line| line.contains(command)),
                "{script} runs {command}"
            );
        }
    }
}
