//! The `llm` handler: one OpenAI-compatible chat completion per attempt,
//! through the provider the orchestrator granted the attempt.

use std::collections::BTreeMap;

use herd_config::{LlmHandlerConfig, ProviderConfig};
use herd_protocol::messages::provider::ProviderCall;

use super::{HandlerError, TaskHandler, TaskInput, TaskOutput};

/// Where `llm` handlers put the calls they finished, for the orchestrator's
/// provider budgets. Bounded: when full, a call is dropped (and counted)
/// rather than delaying the task.
#[derive(Clone, Debug)]
pub struct ProviderCallSink(tokio::sync::mpsc::Sender<ProviderCall>);

impl ProviderCallSink {
    /// A sink feeding `sender`.
    pub fn new(sender: tokio::sync::mpsc::Sender<ProviderCall>) -> Self {
        ProviderCallSink(sender)
    }

    /// A sink whose calls go nowhere (tests, tools).
    pub fn discard() -> Self {
        let (sender, _) = tokio::sync::mpsc::channel(1);
        ProviderCallSink(sender)
    }

    /// Records a finished call; never waits.
    pub fn record(&self, call: ProviderCall) {
        if self.0.try_send(call).is_err() {
            metrics::counter!("herd_llm_feedback_dropped_total").increment(1);
        }
    }
}

/// Calls an OpenAI-compatible chat-completions API.
#[derive(Debug)]
pub struct LlmHandler {
    #[allow(dead_code)]
    agent: LlmHandlerConfig,
    #[allow(dead_code)]
    providers: BTreeMap<String, ProviderConfig>,
    #[allow(dead_code)]
    calls: ProviderCallSink,
}

impl LlmHandler {
    /// A handler for one agent type; `providers` holds at least every
    /// provider of `agent.chain()`.
    pub fn new(
        agent: LlmHandlerConfig,
        providers: BTreeMap<String, ProviderConfig>,
        _max_response_bytes: usize,
        calls: ProviderCallSink,
    ) -> Result<Self, reqwest::Error> {
        Ok(LlmHandler {
            agent,
            providers,
            calls,
        })
    }
}

#[async_trait::async_trait]
impl TaskHandler for LlmHandler {
    async fn handle(&self, _input: TaskInput) -> Result<TaskOutput, HandlerError> {
        Err(HandlerError::Fatal("not built yet".into()))
    }
}
