//! What the `herd` command-line tests share: running the binary to
//! completion under a deadline, and reading its output.

use std::process::{Command, Output};

/// Runs `herd` to completion. Every command here is expected to exit on its
/// own; one that keeps running (a node that starts where it should refuse)
/// is killed at a deadline and fails the test instead of hanging it.
pub fn herd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herd"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("herd runs");
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || done_tx.send(child.wait_with_output()));
    match done_rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(output) => output.expect("herd's output is readable"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("herd {args:?} was still running after 60 s; it was expected to exit");
        }
    }
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}
