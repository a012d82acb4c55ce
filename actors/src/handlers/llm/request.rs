//! A task's payload → the chat-completions request body.
//!
//! Accepted payload (one of `messages` or `prompt`, the rest optional):
//! `{"messages": [{"role", "content"}, …]}` or `{"prompt": "…"}` (one user
//! message), `model`, `temperature`, `max_tokens`, `system_prompt`
//! (per-task overrides of the agent type's settings) and `inputs` (an
//! object templates read as `inputs.…`). The system prompt goes first.

use herd_config::LlmHandlerConfig;
use herd_protocol::limits::{LLM_MAX_TOKENS_RANGE, LLM_TEMPERATURE_RANGE};
use serde::Serialize;
use serde_json::{Map, Value};

use super::template::PromptTemplates;
use crate::handlers::HandlerError;

/// The fields a payload may hold.
const ACCEPTED_FIELDS: [&str; 7] = [
    "messages",
    "prompt",
    "model",
    "temperature",
    "max_tokens",
    "system_prompt",
    "inputs",
];

/// One chat message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct ChatMessage {
    pub(super) role: String,
    pub(super) content: String,
}

/// The body POSTed to `{base_url}/chat/completions`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct ChatRequest {
    pub(super) model: String,
    pub(super) messages: Vec<ChatMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_tokens: Option<u32>,
}

/// Builds the request for `payload`; `provider_model` is the model of the
/// provider the call goes to (used when neither task nor agent type names one).
pub(super) fn chat_request(
    payload: &Value,
    agent: &LlmHandlerConfig,
    provider_name: &str,
    provider_model: Option<&str>,
    templates: &PromptTemplates,
) -> Result<ChatRequest, HandlerError> {
    let fatal = |message: String| HandlerError::Fatal(message);
    let Some(fields) = payload.as_object() else {
        return Err(fatal(format!(
            "the payload of an llm task must be a JSON object with {}",
            accepted()
        )));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !ACCEPTED_FIELDS.contains(&key.as_str()))
    {
        return Err(fatal(format!(
            "the payload field {unknown:?} is not understood; an llm task accepts {}",
            accepted()
        )));
    }
    let inputs = match fields.get("inputs") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(inputs @ Value::Object(_)) => inputs.clone(),
        Some(_) => {
            return Err(fatal(
                "the payload field \"inputs\" must be an object (templates read it as inputs.NAME)"
                    .to_string(),
            ));
        }
    };

    let mut messages = Vec::new();
    let system_prompt = match fields.get("system_prompt") {
        Some(value) => Some(string_field("system_prompt", value)?),
        None => agent.system_prompt.clone(),
    };
    if let Some(system_prompt) = system_prompt {
        messages.push(ChatMessage {
            role: "system".to_string(),
            content: templates.render("system_prompt", &system_prompt, &inputs)?,
        });
    }
    match (fields.get("messages"), fields.get("prompt")) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(fatal(
                "an llm task's payload needs exactly one of \"messages\" (a list of {\"role\", \"content\"}) or \"prompt\" (a string)".to_string(),
            ));
        }
        (None, Some(prompt)) => messages.push(ChatMessage {
            role: "user".to_string(),
            content: templates.render("prompt", &string_field("prompt", prompt)?, &inputs)?,
        }),
        (Some(list), None) => {
            let Some(list) = list.as_array().filter(|list| !list.is_empty()) else {
                return Err(fatal(
                    "the payload field \"messages\" must be a non-empty list of {\"role\", \"content\"} objects".to_string(),
                ));
            };
            for (index, message) in list.iter().enumerate() {
                let mut message = chat_message(index, message)?;
                message.content = templates.render(
                    &format!("messages[{index}].content"),
                    &message.content,
                    &inputs,
                )?;
                messages.push(message);
            }
        }
    }

    let model = match fields.get("model") {
        Some(value) => Some(string_field("model", value)?),
        None => agent.model.clone(),
    }
    .or_else(|| provider_model.map(str::to_string))
    .filter(|model| !model.trim().is_empty())
    .ok_or_else(|| {
        fatal(format!(
            "no model is known for provider {provider_name:?}: set \"model\" in the payload, the agent type or [providers.{provider_name}]"
        ))
    })?;
    let temperature = match fields.get("temperature") {
        Some(value) => Some(
            value
                .as_f64()
                .filter(|t| LLM_TEMPERATURE_RANGE.contains(t))
                .ok_or_else(|| {
                    fatal(format!(
                        "the payload field \"temperature\" is {value}; give a number in {}..={}",
                        LLM_TEMPERATURE_RANGE.start(),
                        LLM_TEMPERATURE_RANGE.end()
                    ))
                })?,
        ),
        None => agent.temperature,
    };
    let max_tokens = match fields.get("max_tokens") {
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| LLM_MAX_TOKENS_RANGE.contains(n))
                .ok_or_else(|| {
                    fatal(format!(
                        "the payload field \"max_tokens\" is {value}; give a whole number in {}..={}",
                        LLM_MAX_TOKENS_RANGE.start(),
                        LLM_MAX_TOKENS_RANGE.end()
                    ))
                })?,
        ),
        None => agent.max_tokens,
    };
    Ok(ChatRequest {
        model,
        messages,
        temperature,
        max_tokens,
    })
}

fn accepted() -> String {
    let (first, rest) = ACCEPTED_FIELDS.split_at(2);
    format!(
        "\"{}\" or \"{}\", and optionally {}",
        first[0],
        first[1],
        rest.iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn string_field(name: &str, value: &Value) -> Result<String, HandlerError> {
    value.as_str().map(str::to_string).ok_or_else(|| {
        HandlerError::Fatal(format!(
            "the payload field {name:?} must be a string, not {value}"
        ))
    })
}

fn chat_message(index: usize, value: &Value) -> Result<ChatMessage, HandlerError> {
    let shape = || {
        HandlerError::Fatal(format!(
            "messages[{index}] must be an object with exactly \"role\" and \"content\" strings, e.g. {{\"role\": \"user\", \"content\": \"…\"}}"
        ))
    };
    let fields = value.as_object().ok_or_else(shape)?;
    if fields.len() != 2 {
        return Err(shape());
    }
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_string);
    match (text("role"), text("content")) {
        (Some(role), Some(content)) if !role.trim().is_empty() => Ok(ChatMessage { role, content }),
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn agent() -> LlmHandlerConfig {
        LlmHandlerConfig {
            provider: "p".into(),
            fallback: vec![],
            model: None,
            system_prompt: None,
            temperature: Some(0.3),
            max_tokens: None,
        }
    }

    fn build(payload: Value, agent: &LlmHandlerConfig) -> Result<ChatRequest, HandlerError> {
        chat_request(
            &payload,
            agent,
            "p",
            Some("provider-model"),
            &PromptTemplates::new(4096),
        )
    }

    fn fatal(result: Result<ChatRequest, HandlerError>) -> String {
        match result {
            Err(HandlerError::Fatal(message)) => message,
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_name_the_accepted_ones() {
        let message = fatal(build(json!({"prompt": "x", "temprature": 1}), &agent()));
        assert!(message.contains("\"temprature\""), "{message}");
        assert!(message.contains("\"max_tokens\""), "{message}");
        assert!(message.contains("\"inputs\""), "{message}");
    }

    #[test]
    fn exactly_one_of_messages_or_prompt() {
        for payload in [json!({}), json!({"prompt": "a", "messages": []})] {
            let message = fatal(build(payload, &agent()));
            assert!(message.contains("exactly one of"), "{message}");
        }
        let message = fatal(build(json!({"messages": [{"role": "user"}]}), &agent()));
        assert!(message.contains("messages[0]"), "{message}");
    }

    #[test]
    fn overrides_are_range_checked() {
        let message = fatal(build(json!({"prompt": "a", "temperature": 3}), &agent()));
        assert!(message.contains("0..=2"), "{message}");
        let message = fatal(build(json!({"prompt": "a", "max_tokens": 0}), &agent()));
        assert!(message.contains("1..=1000000"), "{message}");
        let message = fatal(build(json!({"prompt": "a", "inputs": [1]}), &agent()));
        assert!(message.contains("must be an object"), "{message}");
    }

    #[test]
    fn the_model_comes_from_the_task_then_the_agent_type_then_the_provider() {
        let mut agent = agent();
        assert_eq!(
            build(json!({"prompt": "a"}), &agent).unwrap().model,
            "provider-model"
        );
        agent.model = Some("agent-model".into());
        assert_eq!(
            build(json!({"prompt": "a"}), &agent).unwrap().model,
            "agent-model"
        );
        assert_eq!(
            build(json!({"prompt": "a", "model": "task-model"}), &agent)
                .unwrap()
                .model,
            "task-model"
        );
        let none = chat_request(
            &json!({"prompt": "a"}),
            &LlmHandlerConfig {
                model: None,
                ..agent
            },
            "p",
            None,
            &PromptTemplates::new(64),
        );
        assert!(fatal(none).contains("[providers.p]"));
    }
}
