//! The `exec` handler: runs a configured program per attempt.
//!
//! The child never sees the node's environment (see `environment`), its
//! stderr is read with bounded memory (see `stderr_tail`), and a failure to
//! start it is retried only when the cause passes (see `spawn_error`).

mod environment;
mod spawn_error;
mod stderr_tail;

use std::ffi::OsString;
use std::process::Stdio;

use herd_config::ExecHandlerConfig;
use herd_protocol::JsonText;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use stderr_tail::STDERR_TAIL_BYTES;

use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Runs a configured program per attempt: the payload on stdin, the JSON on
/// stdout is the result. A non-zero exit fails the attempt with the last
/// 4 KiB of stderr (read with bounded memory however much the child writes);
/// exit codes listed in `fatal_exit_codes` are not retried. Failing to start
/// the program is retried when the node is short of resources (file
/// descriptors, processes, memory) and fatal when the program is missing or
/// not executable. The child is killed if the attempt is cancelled or times
/// out (`kill_on_drop`).
///
/// The child starts from an empty environment: it gets the node's `PATH`
/// (`/usr/local/bin:/usr/bin:/bin` if the node has none), `HOME`, `LANG`,
/// `LC_ALL`, `TZ` and `TMPDIR` when set, the node's variables named in
/// `pass_env`, the `env` table, and `HERD_TASK_ID`, `HERD_AGENT_TYPE`, `HERD_ATTEMPT` and
/// `TRACEPARENT` — never the node's secrets (`HERD_COOKIE`, API keys).
#[derive(Debug, Clone)]
pub struct ExecHandler {
    config: ExecHandlerConfig,
    max_output_bytes: usize,
    /// The node's variables the child inherits, read once at construction.
    inherited: Vec<(String, OsString)>,
}

impl ExecHandler {
    /// A handler running `config.command`, accepting at most
    /// `max_output_bytes` of stdout; inherits from this process's environment
    /// only what the type doc lists.
    pub fn new(config: ExecHandlerConfig, max_output_bytes: usize) -> Self {
        Self::with_node_environment(config, max_output_bytes, |name| std::env::var_os(name))
    }

    /// Like [`ExecHandler::new`], with the node's environment read through
    /// `node_variable` instead of this process's (for tests and embedders
    /// that keep their own).
    pub fn with_node_environment(
        config: ExecHandlerConfig,
        max_output_bytes: usize,
        node_variable: impl Fn(&str) -> Option<OsString>,
    ) -> Self {
        let inherited = environment::inherited(node_variable, &config.pass_env);
        ExecHandler {
            config,
            max_output_bytes,
            inherited,
        }
    }
}

#[async_trait::async_trait]
impl TaskHandler for ExecHandler {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        let (program, arguments) = self
            .config
            .command
            .split_first()
            .expect("config requires a command");
        let mut command = Command::new(program);
        command
            .args(arguments)
            .env_clear()
            .envs(self.inherited.iter().map(|(name, value)| (name, value)))
            .envs(&self.config.env)
            .env("HERD_TASK_ID", input.task_id.to_string())
            .env("HERD_AGENT_TYPE", input.agent_type.as_str())
            .env("HERD_ATTEMPT", input.attempt.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.config.working_dir {
            command.current_dir(dir);
        }
        if let Some(trace) = &input.trace_context {
            command.env("TRACEPARENT", trace);
        }
        let mut child = command.spawn().map_err(|error| {
            spawn_error::classify(program, self.config.working_dir.as_deref(), &error)
        })?;

        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let payload = input.payload.clone();
        let limit = self.max_output_bytes;
        // Feed stdin and drain both pipes concurrently so that a chatty child
        // never blocks on a full pipe.
        let feed = async move {
            // A child that exits without reading its input is not an error.
            let _ = stdin.write_all(payload.as_bytes()).await;
            drop(stdin);
        };
        let read_stdout = async move {
            let mut buffer = Vec::new();
            let read = (&mut stdout)
                .take(limit as u64 + 1)
                .read_to_end(&mut buffer)
                .await;
            read.map(|_| buffer)
        };
        let read_stderr = stderr_tail::read_tail(stderr, STDERR_TAIL_BYTES);
        let ((), stdout_bytes, stderr_end) = tokio::join!(feed, read_stdout, read_stderr);
        let status = child.wait().await.map_err(|error| {
            HandlerError::Retryable(format!("waiting for {program:?} failed: {error}"))
        })?;
        let stdout_bytes = stdout_bytes
            .map_err(|error| HandlerError::Retryable(format!("reading stdout failed: {error}")))?;
        // Checked before the exit status: once herd stops reading, a child
        // still writing dies of SIGPIPE, and the size is the real cause.
        if stdout_bytes.len() > limit {
            return Err(HandlerError::Fatal(format!(
                "{program:?} wrote more than {limit} bytes to stdout; results over the payload limit are refused"
            )));
        }

        if !status.success() {
            let tail = stderr_tail::as_text(&stderr_end);
            let code = status.code();
            let description = match code {
                Some(code) => format!("{program:?} exited with status {code}"),
                None => format!("{program:?} was killed by a signal"),
            };
            let message = if tail.is_empty() {
                description
            } else {
                format!("{description}; stderr: {tail}")
            };
            let fatal = code.is_some_and(|code| self.config.fatal_exit_codes.contains(&code));
            return Err(if fatal {
                HandlerError::Fatal(message)
            } else {
                HandlerError::Retryable(message)
            });
        }
        let result = JsonText::parse(stdout_bytes).map_err(|error| {
            HandlerError::Fatal(format!(
                "{program:?} must print one JSON document on stdout: {error}"
            ))
        })?;
        Ok(TaskOutput::raw(result))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use herd_protocol::{AgentType, TaskId};

    use super::*;

    fn config(script: &str, fatal: Vec<i32>) -> ExecHandlerConfig {
        ExecHandlerConfig {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
            pass_env: Vec::new(),
            working_dir: None,
            fatal_exit_codes: fatal,
        }
    }

    fn handler(script: &str, fatal: Vec<i32>) -> ExecHandler {
        ExecHandler::new(config(script, fatal), 1024)
    }

    /// The child's environment as `NAME=value` lines, run by a handler whose
    /// node environment is `node` and whose `pass_env` is `pass_env`.
    async fn child_environment(node: &[(&str, &str)], pass_env: &[&str]) -> (String, TaskInput) {
        let node: BTreeMap<String, std::ffi::OsString> = node
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("env");
        // The result must be JSON, so the child writes its environment to a
        // file named in `env` and prints an empty object.
        let mut config = config("env > \"$DUMP\"; echo '{}'", vec![]);
        config
            .env
            .insert("DUMP".to_string(), dump.display().to_string());
        config.pass_env = pass_env.iter().map(|name| name.to_string()).collect();
        let handler =
            ExecHandler::with_node_environment(config, 1024, |name| node.get(name).cloned());
        let mut input = input("1");
        input.trace_context =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string());
        handler.handle(input.clone()).await.unwrap();
        (std::fs::read_to_string(&dump).unwrap(), input)
    }

    #[tokio::test]
    async fn the_child_sees_no_secret_of_the_node_and_only_what_is_configured() {
        let (environment, input) = child_environment(
            &[
                ("PATH", "/usr/bin:/bin"),
                ("HOME", "/home/herd"),
                ("TZ", "Europe/Paris"),
                ("HERD_COOKIE", "cookie-from-the-node"),
                ("OPENAI_API_KEY", "sk-test-secret-from-the-node"),
                ("REGION", "eu-west-1"),
            ],
            &["REGION"],
        )
        .await;
        let lines: Vec<&str> = environment.lines().collect();
        for expected in [
            "PATH=/usr/bin:/bin".to_string(),
            "HOME=/home/herd".to_string(),
            "TZ=Europe/Paris".to_string(),
            "REGION=eu-west-1".to_string(),
            "GREETING=hi".to_string(),
            format!("HERD_TASK_ID={}", input.task_id),
            "HERD_AGENT_TYPE=tool".to_string(),
            "HERD_ATTEMPT=1".to_string(),
            format!("TRACEPARENT={}", input.trace_context.as_deref().unwrap()),
        ] {
            assert!(
                lines.contains(&expected.as_str()),
                "{expected} missing in:\n{environment}"
            );
        }
        assert!(
            !environment.contains("cookie-from-the-node"),
            "{environment}"
        );
        assert!(!environment.contains("sk-test-secret"), "{environment}");
        assert!(!environment.contains("HERD_COOKIE"), "{environment}");
        assert!(!environment.contains("OPENAI_API_KEY"), "{environment}");
    }

    #[tokio::test]
    async fn the_test_process_environment_is_not_inherited() {
        // cargo sets CARGO_MANIFEST_DIR for the test process itself: a child
        // that inherited the real environment would see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("env");
        let mut config = config("env > \"$DUMP\"; echo '{}'", vec![]);
        config
            .env
            .insert("DUMP".to_string(), dump.display().to_string());
        ExecHandler::new(config, 1024)
            .handle(input("1"))
            .await
            .unwrap();
        let environment = std::fs::read_to_string(&dump).unwrap();
        assert!(!environment.contains("CARGO_MANIFEST_DIR"), "{environment}");
        assert!(
            environment.lines().any(|line| line.starts_with("PATH=")),
            "{environment}"
        );
    }

    #[tokio::test]
    async fn a_child_flooding_stderr_fails_with_only_the_end_of_it() {
        // 2 MiB of noise, then the line that explains the failure.
        let error = handler(
            "head -c 2097152 /dev/zero | tr '\\0' 'x' >&2; echo >&2; echo 'out of quota' >&2; exit 4",
            vec![],
        )
        .handle(input("1"))
        .await
        .unwrap_err();
        let HandlerError::Retryable(message) = error else {
            panic!("a plain non-zero exit is retried: {error:?}");
        };
        assert!(
            message.ends_with("out of quota"),
            "{}",
            &message[message.len() - 80..]
        );
        assert!(
            message.len() <= STDERR_TAIL_BYTES + 100,
            "the message holds only the tail: {} bytes",
            message.len()
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_fatal_and_says_what_to_fix() {
        let mut config = config("", vec![]);
        config.command = vec!["herd-no-such-program".into()];
        let error = ExecHandler::new(config, 1024)
            .handle(input("1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, HandlerError::Fatal(message) if message.contains("\"herd-no-such-program\"") && message.contains("full path")),
            "{error:?}"
        );
    }

    fn input(payload: &str) -> TaskInput {
        TaskInput {
            task_id: TaskId::new_v7(),
            agent_type: AgentType::new("tool"),
            attempt: 1,
            payload: JsonText::parse(payload.to_string()).unwrap(),
            timeout: Duration::from_secs(5),
            trace_context: None,
            epoch: herd_protocol::AssignmentEpoch(1),
            provider: None,
        }
    }

    #[tokio::test]
    async fn stdin_in_json_out() {
        let output = handler(
            "read line; printf '{\"got\": %s, \"greeting\": \"%s\"}' \"$line\" \"$GREETING\"",
            vec![],
        )
        .handle(input("{\"x\":1}"))
        .await
        .unwrap();
        assert_eq!(
            output.result.as_str(),
            "{\"got\": {\"x\":1}, \"greeting\": \"hi\"}"
        );
    }

    #[tokio::test]
    async fn non_zero_exit_carries_the_stderr_tail_and_fatal_codes_are_fatal() {
        let error = handler("echo 'quota exceeded' >&2; exit 3", vec![])
            .handle(input("1"))
            .await
            .unwrap_err();
        assert_eq!(
            error,
            HandlerError::Retryable("\"sh\" exited with status 3; stderr: quota exceeded".into())
        );
        let error = handler("echo bad input >&2; exit 65", vec![65])
            .handle(input("1"))
            .await
            .unwrap_err();
        assert!(matches!(error, HandlerError::Fatal(message) if message.contains("bad input")));
    }

    #[tokio::test]
    async fn non_json_and_oversized_output_are_refused() {
        let error = handler("echo not json", vec![])
            .handle(input("1"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, HandlerError::Fatal(message) if message.contains("must print one JSON document"))
        );
        let error = handler("head -c 5000 /dev/zero | tr '\\0' 'a'", vec![])
            .handle(input("1"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, HandlerError::Fatal(message) if message.contains("more than 1024 bytes"))
        );
    }

    #[tokio::test]
    async fn dropping_the_attempt_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let attempt = handler(&script, vec![]);
        let mut running = Box::pin(attempt.handle(input("1")));
        // Run the attempt until the child has written its pid, then drop it.
        let pid: u32 = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    _ = &mut running => panic!("the child should still be running"),
                    _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                }
                if let Some(pid) = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    return pid;
                }
            }
        })
        .await
        .expect("child started");
        drop(running);
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_alive(pid) {
            assert!(
                Instant::now() < deadline,
                "child {pid} outlived its cancelled attempt"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True while `pid` exists and is not a zombie.
    fn process_alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}
