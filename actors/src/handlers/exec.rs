use std::process::Stdio;

use herd_config::ExecHandlerConfig;
use herd_protocol::JsonText;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Bytes of stderr kept for the error message of a failed run.
const STDERR_TAIL_BYTES: usize = 2048;

/// Runs a configured program per attempt: the payload on stdin, the JSON on
/// stdout is the result. A non-zero exit fails the attempt with the tail of
/// stderr; exit codes listed in `fatal_exit_codes` are not retried. The child
/// is killed if the attempt is cancelled or times out (`kill_on_drop`).
#[derive(Debug, Clone)]
pub struct ExecHandler {
    config: ExecHandlerConfig,
    max_output_bytes: usize,
}

impl ExecHandler {
    /// A handler running `config.command`, accepting at most
    /// `max_output_bytes` of stdout.
    pub fn new(config: ExecHandlerConfig, max_output_bytes: usize) -> Self {
        ExecHandler {
            config,
            max_output_bytes,
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
        let mut child = command
            .spawn()
            .map_err(|error| HandlerError::Fatal(format!("cannot start {program:?}: {error}")))?;

        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
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
        let read_stderr = async move {
            let mut buffer = Vec::new();
            let _ = stderr.read_to_end(&mut buffer).await;
            buffer
        };
        let ((), stdout_bytes, stderr_bytes) = tokio::join!(feed, read_stdout, read_stderr);
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
            let tail = stderr_tail(&stderr_bytes);
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

fn stderr_tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use herd_protocol::{AgentType, TaskId};

    use super::*;

    fn handler(script: &str, fatal: Vec<i32>) -> ExecHandler {
        ExecHandler::new(
            ExecHandlerConfig {
                command: vec!["sh".into(), "-c".into(), script.into()],
                env: BTreeMap::from([("GREETING".to_string(), "hi".to_string())]),
                working_dir: None,
                fatal_exit_codes: fatal,
            },
            1024,
        )
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
