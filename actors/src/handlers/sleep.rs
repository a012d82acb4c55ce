use std::time::Duration;

use serde::Deserialize;

use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Payload `{"ms": N}`: sleeps N milliseconds, result `{"slept_ms": N}`.
/// Stands in for I/O-bound agent work (an LLM call) in samples and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct SleepHandler;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    ms: u64,
}

#[async_trait::async_trait]
impl TaskHandler for SleepHandler {
    async fn handle(&self, input: TaskInput) -> Result<TaskOutput, HandlerError> {
        let SleepPayload { ms } = input.payload.decode().map_err(|error| {
            HandlerError::Fatal(format!(
                "sleep expects a payload like {{\"ms\": 250}}: {error}"
            ))
        })?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        TaskOutput::json(&serde_json::json!({ "slept_ms": ms }))
    }
}
