//! `herd` command-line behaviour: configuration errors exit with code 2 and
//! say what to fix; precedence is flag > environment > file > default.
//! (Also makes `cargo test` build the `herd` binary the multi-process tests
//! in `herd-tests` start.)

use std::io::Write;
use std::process::Command;

use herd_node::local_cluster::temp_dir;

mod common;
use common::{herd, stderr, stdout};

#[test]
fn a_node_without_a_cookie_refuses_to_start_and_says_how_to_set_one() {
    let output = herd(&["node", "--name", "n1", "--check-config"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("node.cookie: is required and has no default"),
        "{message}"
    );
    assert!(
        message.contains("--cookie, HERD_COOKIE or node.cookie"),
        "{message}"
    );
}

#[test]
fn a_node_with_a_short_cookie_refuses_to_start_with_exit_2() {
    let output = herd(
        &["node", "--name", "n1", "--check-config"],
        &[("HERD_COOKIE", "short-cookie")],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("node.cookie"), "{message}");
    assert!(message.contains("openssl rand -hex 32"), "{message}");
}

#[test]
fn the_cookie_flag_help_says_to_prefer_the_environment_variable() {
    for help_flag in ["-h", "--help"] {
        let output = herd(&["node", help_flag], &[]);
        assert_eq!(output.status.code(), Some(0));
        let help = stdout(&output);
        let cookie = help
            .lines()
            .skip_while(|line| !line.contains("--cookie"))
            .take(4)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            cookie.contains("Prefer HERD_COOKIE"),
            "{help_flag}: {cookie}"
        );
        assert!(cookie.contains("`ps`"), "{help_flag}: {cookie}");
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    let output = herd(&["node", "--wokers", "3"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unexpected argument '--wokers'"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_problem_is_reported_with_its_source() {
    let output = herd(
        &[
            "node",
            "--name",
            "N1",
            "--listen",
            "nowhere",
            "--seed",
            "10.0.0.2",
            "--check-config",
        ],
        &[
            ("HERD_COOKIE", "x-cookie-for-this-test"),
            ("HERD_WORKERS", "-3"),
            ("HERD_ROLES", "worker,chief"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    for expected in [
        "invalid configuration (5 problems)",
        "flag --name: node.name: \"N1\" may contain only lowercase letters, digits and hyphens",
        "flag --listen: node.listen: \"nowhere\" is not an IP:PORT address; write e.g. 0.0.0.0:7100",
        "flag --seed: node.seeds: seed \"10.0.0.2\" has no port; write each seed as HOST:PORT",
        "environment variable HERD_WORKERS: node.workers: is -3, outside 1..=4096",
        "environment variable HERD_ROLES: node.roles: unknown role \"chief\"; expected orchestrator, worker or monitor",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn config_file_errors_name_the_file_and_line() {
    let dir = temp_dir("cli").unwrap();
    let path = dir.path().join("node.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(
        file,
        "[node]\nname = \"n1\"\ncookie = \"${{CLUSTER_COOKIE}}\"\n"
    )
    .unwrap();
    drop(file);
    let output = herd(
        &["node", "--config", path.to_str().unwrap(), "--check-config"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{}:3", path.display())),
        "{message}"
    );
    assert!(
        message.contains("environment variable CLUSTER_COOKIE is not set"),
        "{message}"
    );

    std::fs::write(
        &path,
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n[limits]\nmax_payload_bytes = 99999999\n",
    )
    .unwrap();
    let output = herd(
        &["node", "--config", path.to_str().unwrap(), "--check-config"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "{}:5: limits.max_payload_bytes: is 99999999, outside 1..=7340032",
            path.display()
        )),
        "{message}"
    );
    assert!(message.contains("16 MiB drops the whole link"), "{message}");
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let dir = temp_dir("cli").unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[node]\nname = \"file-name\"\ncookie = \"c-cookie-for-this-test\"\nworkers = 3\nhttp = \"127.0.0.1:9003\"\nlisten = \"127.0.0.1:9004\"\n").unwrap();
    let output = herd(
        &["node", "--workers", "7", "--check-config"],
        &[
            ("HERD_CONFIG", path.to_str().unwrap()),
            ("HERD_WORKERS", "5"),
            ("HERD_HTTP", "127.0.0.1:9005"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let printed = stdout(&output);
    for expected in [
        "name       = file-name",
        "workers    = 7",
        "http       = 127.0.0.1:9005",
        "listen     = 127.0.0.1:9004",
        "cookie     = ***",
        "node.workers    from flag --workers",
        "node.http       from environment variable HERD_HTTP",
        &format!("node.listen     from {}:6", path.display()),
        "roles      = orchestrator,worker,monitor",
    ] {
        assert!(
            printed.contains(expected),
            "missing {expected:?} in:\n{printed}"
        );
    }
    assert!(!printed.contains("\"c\""), "the cookie must not be printed");
}

#[test]
fn bad_logging_variables_are_configuration_errors() {
    let output = herd(
        &["node", "--name", "n1", "--cookie", "c-cookie-for-this-test"],
        &[("LOG_FORMAT", "yaml")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("LOG_FORMAT=\"yaml\" is not supported; use json or text"));
}

#[test]
fn the_http_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap().to_string();
    let cluster = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let output = herd(
        &[
            "node",
            "--name",
            "n1",
            "--cookie",
            "c-cookie-for-this-test",
            "--http",
            &http,
            "--listen",
            &cluster,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("cannot listen for HTTP on {http}")),
        "{}",
        stderr(&output)
    );
}

/// Runs `herd node` as an orchestrator on `data_dir` (to its refusal).
fn single_orchestrator_on(data_dir: &std::path::Path) -> std::process::Output {
    // The journal (`orchestrator.redb`) is single replication's.
    orchestrator_on(data_dir, &["--replication", "single"])
}

/// Runs `herd node` with the orchestrator role on `data_dir`, plus `extra`.
fn orchestrator_on(data_dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "node",
        "--name",
        "n1",
        "--roles",
        "orchestrator,worker",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    herd(&args, &[("HERD_COOKIE", "a-cookie-for-this-test-only")])
}

#[test]
fn a_data_directory_written_in_another_journal_format_is_refused_with_both_versions() {
    let data = tempfile::tempdir().unwrap();
    // A journal as a future release would leave it: its file-level format
    // marker says version 9.
    {
        let database = redb::Database::create(data.path().join("orchestrator.redb")).unwrap();
        let transaction = database.begin_write().unwrap();
        transaction
            .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap()
            .insert("format", 9u16.to_be_bytes().as_slice())
            .unwrap();
        transaction.commit().unwrap();
    }
    let output = single_orchestrator_on(data.path());
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("orchestrator.redb"), "{message}");
    assert!(message.contains("format version 9"), "{message}");
    assert!(
        message.contains("reads format versions 1 to 3"),
        "{message}"
    );
    assert!(!message.contains("delete"), "{message}");
}

#[test]
fn a_zero_length_journal_is_refused_naming_the_file_and_left_untouched() {
    // As a full disk can leave it: the file is there, its bytes are not. A
    // new empty journal in its place would silently lose every task it held.
    let data = tempfile::tempdir().unwrap();
    let journal = data.path().join("orchestrator.redb");
    std::fs::File::create(&journal).unwrap();
    let output = single_orchestrator_on(data.path());
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(
        message.contains(&journal.display().to_string()),
        "{message}"
    );
    assert!(message.contains("is empty"), "{message}");
    assert!(message.contains("from a backup"), "{message}");
    assert!(message.contains("move it away"), "{message}");
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    assert!(!data.path().join("orchestrator.redb.new").exists());
}

#[test]
fn by_default_a_zero_length_replica_store_is_refused_naming_the_file_and_left_untouched() {
    // Raft replication (the default) keeps the replica's log in
    // replica.redb: an empty one must not become a new replica that forgot
    // its vote.
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("replica.redb");
    std::fs::File::create(&store).unwrap();
    let output = orchestrator_on(data.path(), &[]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains(&store.display().to_string()), "{message}");
    assert!(message.contains("is empty"), "{message}");
    assert!(message.contains("restore"), "{message}");
    assert!(message.contains("move it away"), "{message}");
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0);
}

#[tokio::test]
async fn the_llm_stub_prints_its_address_answers_and_stops_on_sigterm() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["dev", "llm-stub", "--listen", "127.0.0.1:0"])
        .env_clear()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("herd runs");
    // Read the line on a thread so that a stub that never prints fails the
    // test at the deadline instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (line_sender, line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = line_sender.send(line);
    });
    let line = match line.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("herd dev llm-stub printed no address within 30 s");
        }
    };
    let base = line
        .trim_end()
        .strip_prefix("llm-stub listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(!base.ends_with(":0"), "{base}");

    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "ping"}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        "stub answer to: ping"
    );

    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herd dev llm-stub did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_llm_stub_reports_a_taken_port_and_bad_flags() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = herd(&["dev", "llm-stub", "--listen", &addr], &[]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("cannot listen on {addr}")),
        "{message}"
    );
    assert!(message.contains("--listen 127.0.0.1:0"), "{message}");
    assert!(stdout(&output).is_empty());

    let output = herd(&["dev", "llm-stub", "--requests-per-minute", "0"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--requests-per-minute"),
        "{}",
        stderr(&output)
    );

    let help = herd(&["dev", "llm-stub", "--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
    assert!(
        stdout(&help).contains("Never for production"),
        "{}",
        stdout(&help)
    );
}
