//! `[agents.NAME]`: the agent types a node offers, each with its handler
//! and the task defaults it overrides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use herd_protocol::AgentType;
use herd_protocol::limits::{
    ATTEMPTS_RANGE, LLM_MAX_TOKENS_RANGE, LLM_TEMPERATURE_RANGE, TIMEOUT_S_RANGE, WEIGHT_RANGE,
};

use super::policy::{PolicyFields, resolve_circuit, resolve_retry};
use super::range_check::{as_file_range, file_in_range, file_integer};
use crate::error::ConfigError;
use crate::file::{AgentSection, LoadedFile};
use crate::model::{
    AgentConfig, DEFAULT_AGENT_WEIGHT, ExecHandlerConfig, HandlerConfig, HttpHandlerConfig,
    LlmHandlerConfig, Secret, TaskDefaults, default_agents,
};
use crate::rules;

/// Resolves every `[agents.NAME]` table, each inheriting `tasks`; with none,
/// the node offers [`default_agents`].
pub(super) fn resolve_agents(
    file: Option<&LoadedFile>,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<AgentType, AgentConfig> {
    let Some(file) = file.filter(|f| !f.config.agents.is_empty()) else {
        return default_agents();
    };
    let mut agents = BTreeMap::new();
    for (name, section) in &file.config.agents {
        let prefix = format!("agents.{name}");
        if let Err(message) = rules::agent_type_name(name) {
            errors.push(ConfigError::new(
                file.origin_of(&prefix),
                prefix.clone(),
                message,
            ));
            continue;
        }
        if let Some(agent) = resolve_agent(file, &prefix, section, tasks, errors) {
            agents.insert(AgentType::new(name), agent);
        }
    }
    if !agents.is_empty() && agents.values().all(|agent| agent.weight == 0.0) {
        errors.push(ConfigError::new(
            file.origin_of("agents"),
            "agents",
            "every agent type has weight 0; give at least one a positive weight so slots can be shared by weight",
        ));
    }
    agents
}

fn resolve_agent(
    file: &LoadedFile,
    prefix: &str,
    section: &AgentSection,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> Option<AgentConfig> {
    let error_count = errors.len();
    let fields = PolicyFields::of_agent(section);
    let retry = resolve_retry(Some(file), prefix, &fields, &tasks.retry, errors);
    let circuit = resolve_circuit(Some(file), prefix, &fields, &tasks.circuit, errors);
    let key = |field: &str| format!("{prefix}.{field}");

    let weight = section.weight.unwrap_or(DEFAULT_AGENT_WEIGHT);
    if !WEIGHT_RANGE.contains(&weight) || !weight.is_finite() {
        errors.push(ConfigError::new(
            file.origin_of(&key("weight")),
            key("weight"),
            format!(
                "is {weight}, outside 0.0..=1.0; weights are shares of the worker slots (they are normalised, so 0.5 and 0.5 split evenly)"
            ),
        ));
    }
    let timeout_s = file_integer(
        Some(file),
        &key("timeout_s"),
        section.timeout_s,
        as_file_range(TIMEOUT_S_RANGE),
        "set the per-attempt time limit in seconds",
        errors,
    )
    .map(|v| v as u32);
    let max_attempts = file_integer(
        Some(file),
        &key("max_attempts"),
        section.max_attempts,
        as_file_range(ATTEMPTS_RANGE),
        "set how many attempts a task gets",
        errors,
    )
    .map(|v| v as u32);

    let mut fail = |field: &str, message: String| {
        errors.push(ConfigError::new(
            file.origin_of(&key(field)),
            key(field),
            message,
        ));
    };

    let kind = section.handler.as_deref().unwrap_or("");
    let exec_only = [
        ("command", section.command.is_some()),
        ("env", section.env.is_some()),
        ("pass_env", section.pass_env.is_some()),
        ("working_dir", section.working_dir.is_some()),
        ("fatal_exit_codes", section.fatal_exit_codes.is_some()),
    ];
    let http_only = [
        ("url", section.url.is_some()),
        ("headers", section.headers.is_some()),
    ];
    let llm_only = [
        ("provider", section.provider.is_some()),
        ("fallback", section.fallback.is_some()),
        ("model", section.model.is_some()),
        ("system_prompt", section.system_prompt.is_some()),
        ("temperature", section.temperature.is_some()),
        ("max_tokens", section.max_tokens.is_some()),
    ];
    let mut reject_foreign = |fields: &[(&str, bool)], owner: &str| {
        for (field, present) in fields {
            if *present {
                fail(
                    field,
                    format!(
                        "applies only to handler = \"{owner}\", but this agent type uses handler = \"{kind}\"; remove it or change the handler"
                    ),
                );
            }
        }
    };
    let handler = match kind {
        "echo" | "sleep" | "custom" => {
            reject_foreign(&exec_only, "exec");
            reject_foreign(&http_only, "http");
            reject_foreign(&llm_only, "llm");
            Some(match kind {
                "echo" => HandlerConfig::Echo,
                "sleep" => HandlerConfig::Sleep,
                _ => HandlerConfig::Custom,
            })
        }
        "exec" => {
            reject_foreign(&http_only, "http");
            reject_foreign(&llm_only, "llm");
            exec_handler(section, &mut fail)
        }
        "http" => {
            reject_foreign(&exec_only, "exec");
            reject_foreign(&llm_only, "llm");
            http_handler(section, &mut fail)
        }
        "llm" => {
            reject_foreign(&exec_only, "exec");
            reject_foreign(&http_only, "http");
            llm_handler(file, prefix, section, &mut fail)
        }
        "" => {
            fail("handler", "is required: set handler = \"echo\", \"sleep\", \"exec\", \"http\", \"llm\" or \"custom\" (registered in code)".to_string());
            None
        }
        other => {
            fail(
                "handler",
                format!(
                    "{other:?} is not a handler; use \"echo\", \"sleep\", \"exec\", \"http\", \"llm\" or \"custom\" (registered in code)"
                ),
            );
            None
        }
    };
    if errors.len() > error_count {
        return None;
    }
    Some(AgentConfig {
        weight,
        timeout_s,
        max_attempts,
        retry,
        circuit,
        llm: section.llm.unwrap_or(matches!(
            handler,
            Some(HandlerConfig::Http(_) | HandlerConfig::Llm(_))
        )),
        handler: handler?,
    })
}

fn exec_handler(
    section: &AgentSection,
    fail: &mut impl FnMut(&str, String),
) -> Option<HandlerConfig> {
    let command = section.command.clone().unwrap_or_default();
    if command.is_empty() || command[0].trim().is_empty() {
        fail("command", "is required for handler = \"exec\": give the program and its arguments, e.g. command = [\"python3\", \"summarize.py\"]".to_string());
        return None;
    }
    let mut fatal_exit_codes = Vec::new();
    for code in section.fatal_exit_codes.clone().unwrap_or_default() {
        match i32::try_from(code) {
            Ok(code) if (1..=255).contains(&code) => fatal_exit_codes.push(code),
            _ => fail(
                "fatal_exit_codes",
                format!("contains {code}; exit codes are 1..=255"),
            ),
        }
    }
    let env = section.env.clone().unwrap_or_default();
    let mut pass_env: Vec<String> = Vec::new();
    for name in section.pass_env.iter().flatten() {
        match pass_env_refusal(name, &env) {
            Some(reason) => fail("pass_env", reason),
            None => pass_env.push(name.clone()),
        }
    }
    pass_env.sort();
    pass_env.dedup();
    Some(HandlerConfig::Exec(ExecHandlerConfig {
        command,
        env,
        pass_env,
        working_dir: section.working_dir.clone().map(PathBuf::from),
        fatal_exit_codes,
    }))
}

/// Why `name` may not be passed from the node's environment to an `exec`
/// program, if it may not.
///
/// `HERD_*` variables are the node's own: its configuration and its secrets
/// (`HERD_COOKIE` lets anyone holding it join the cluster). Refusing the whole
/// prefix keeps a secret herd reads from the environment in the future from
/// becoming passable by an old config. A value a program needs is given with
/// `env` instead, where the config states it.
fn pass_env_refusal(name: &str, env: &BTreeMap<String, String>) -> Option<String> {
    let portable = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !portable {
        return Some(format!(
            "names {name:?}, which is not an environment variable name; use letters, digits and _, not starting with a digit"
        ));
    }
    if name.to_ascii_uppercase().starts_with("HERD_") {
        return Some(format!(
            "names {name:?}; HERD_* variables configure the node and hold its secrets (HERD_COOKIE), so they are never passed to programs; herd sets HERD_TASK_ID, HERD_AGENT_TYPE and HERD_ATTEMPT itself, and a value the program needs can be given in env"
        ));
    }
    if env.contains_key(name) {
        return Some(format!(
            "names {name:?}, which env also sets; keep it in one of the two"
        ));
    }
    None
}

fn http_handler(
    section: &AgentSection,
    fail: &mut impl FnMut(&str, String),
) -> Option<HandlerConfig> {
    let Some(url) = section.url.clone() else {
        fail("url", "is required for handler = \"http\": give the endpoint to POST payloads to, e.g. url = \"http://127.0.0.1:9000/run\"".to_string());
        return None;
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        fail("url", format!("{url:?} is not an http:// or https:// URL"));
        return None;
    }
    Some(HandlerConfig::Http(HttpHandlerConfig {
        url,
        headers: section
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, Secret::new(value)))
            .collect(),
    }))
}

fn llm_handler(
    file: &LoadedFile,
    prefix: &str,
    section: &AgentSection,
    fail: &mut impl FnMut(&str, String),
) -> Option<HandlerConfig> {
    let declared = &file.config.providers;
    let known = || {
        if declared.is_empty() {
            "no [providers.NAME] is declared; add one, e.g. [providers.openai] with base_url and api_key".to_string()
        } else {
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            format!("the declared providers are {}", names.join(", "))
        }
    };
    let provider = match section.provider.as_deref().map(str::trim) {
        None | Some("") => {
            fail(
                "provider",
                format!(
                    "is required for handler = \"llm\": name the [providers.NAME] its calls go to, e.g. provider = \"openai\"; {}",
                    known()
                ),
            );
            None
        }
        Some(name) if !declared.contains_key(name) => {
            fail(
                "provider",
                format!("{name:?} is not a [providers.NAME]; {}", known()),
            );
            None
        }
        Some(name) => Some(name.to_string()),
    };
    let mut fallback: Vec<String> = Vec::new();
    for name in section.fallback.iter().flatten() {
        let name = name.trim();
        if !declared.contains_key(name) {
            fail(
                "fallback",
                format!(
                    "names {name:?}, which is not a [providers.NAME]; {}",
                    known()
                ),
            );
        } else if provider.as_deref() == Some(name) {
            fail(
                "fallback",
                format!(
                    "names {name:?}, which is already this agent type's provider; list only other providers"
                ),
            );
        } else if fallback.iter().any(|seen| seen == name) {
            fail(
                "fallback",
                format!("names {name:?} twice; list each provider once, in the order to try them"),
            );
        } else {
            fallback.push(name.to_string());
        }
    }
    let model = match section.model.as_deref().map(str::trim) {
        Some("") => {
            fail("model", "is empty; name a model, e.g. model = \"gpt-4o-mini\", or remove the key to use each provider's model".to_string());
            None
        }
        other => other.map(str::to_string),
    };
    if section.model.is_none() {
        for name in provider.iter().chain(&fallback) {
            let provider_model = declared[name.as_str()].model.as_deref().map(str::trim);
            if provider_model.is_none_or(str::is_empty) {
                fail(
                    "model",
                    format!(
                        "is not set, and provider {name:?} has no model either; set model here or in [providers.{name}]"
                    ),
                );
            }
        }
    }
    let mut range_errors = Vec::new();
    let temperature = file_in_range(
        Some(file),
        &format!("{prefix}.temperature"),
        section.temperature,
        LLM_TEMPERATURE_RANGE,
        "set the sampling temperature (0 is the most deterministic)",
        &mut range_errors,
    );
    let max_tokens = file_integer(
        Some(file),
        &format!("{prefix}.max_tokens"),
        section.max_tokens,
        as_file_range(LLM_MAX_TOKENS_RANGE),
        "set the most tokens one completion may have",
        &mut range_errors,
    )
    .map(|v| v as u32);
    for error in range_errors {
        let field = error.key.rsplit('.').next().unwrap_or_default().to_string();
        fail(&field, error.message);
    }
    Some(HandlerConfig::Llm(LlmHandlerConfig {
        provider: provider?,
        fallback,
        model,
        system_prompt: section.system_prompt.clone(),
        temperature,
        max_tokens,
    }))
}
