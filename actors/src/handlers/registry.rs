use std::collections::BTreeMap;
use std::sync::Arc;

use herd_config::{HandlerConfig, NodeConfig};
use herd_protocol::AgentType;

use super::{
    EchoHandler, ExecHandler, HttpHandler, LlmHandler, ProviderCallSink, SleepHandler, TaskHandler,
};

/// The handler for each agent type a node can run.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: BTreeMap<AgentType, Arc<dyn TaskHandler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

/// A configured handler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// `handler = "custom"` without a handler registered in code.
    #[error(
        "agent type {0:?} is configured with handler = \"custom\" but the program registered no handler for it; register one with HerdNodeBuilder::handler, or pick a built-in handler"
    )]
    MissingCustomHandler(AgentType),
    /// The HTTP client could not be created.
    #[error("cannot build the http handler for {0:?}: {1}")]
    HttpClient(AgentType, String),
}

impl HandlerRegistry {
    /// Built-in handlers for every configured agent type, plus `custom`
    /// handlers registered in code (which may also add agent types the
    /// config does not list).
    pub fn from_config(
        config: &NodeConfig,
        mut custom: BTreeMap<AgentType, Arc<dyn TaskHandler>>,
        provider_calls: ProviderCallSink,
    ) -> Result<Self, RegistryError> {
        let max_bytes = config.limits.max_payload_bytes;
        let mut handlers: BTreeMap<AgentType, Arc<dyn TaskHandler>> = BTreeMap::new();
        for (agent_type, agent) in &config.agents {
            let handler: Arc<dyn TaskHandler> = match &agent.handler {
                HandlerConfig::Echo => Arc::new(EchoHandler),
                HandlerConfig::Sleep => Arc::new(SleepHandler),
                HandlerConfig::Exec(exec) => Arc::new(ExecHandler::new(exec.clone(), max_bytes)),
                HandlerConfig::Http(http) => {
                    Arc::new(HttpHandler::new(http.clone(), max_bytes).map_err(|error| {
                        RegistryError::HttpClient(agent_type.clone(), error.to_string())
                    })?)
                }
                HandlerConfig::Llm(llm) => Arc::new(
                    LlmHandler::new(
                        llm.clone(),
                        config.providers.clone(),
                        max_bytes,
                        provider_calls.clone(),
                    )
                    .map_err(|error| {
                        RegistryError::HttpClient(agent_type.clone(), error.to_string())
                    })?,
                ),
                HandlerConfig::Custom => custom
                    .remove(agent_type)
                    .ok_or_else(|| RegistryError::MissingCustomHandler(agent_type.clone()))?,
            };
            handlers.insert(agent_type.clone(), handler);
        }
        // Code-registered handlers override built-ins and may add types.
        handlers.extend(custom);
        Ok(HandlerRegistry { handlers })
    }

    /// The handler for `agent_type`, if this node runs it.
    pub fn get(&self, agent_type: &AgentType) -> Option<&Arc<dyn TaskHandler>> {
        self.handlers.get(agent_type)
    }

    /// The agent types this node runs.
    pub fn agent_types(&self) -> impl Iterator<Item = &AgentType> {
        self.handlers.keys()
    }
}
