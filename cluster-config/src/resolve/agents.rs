//! `[agents.NAME]`: the agent types a node offers, each with its handler
//! and the task defaults it overrides.

use herd_protocol::limits::WEIGHT_RANGE;
use std::collections::BTreeMap;
use std::path::PathBuf;

use herd_protocol::AgentType;
use herd_protocol::limits::{ATTEMPTS_RANGE, TIMEOUT_S_RANGE};

use super::policy::{PolicyFields, resolve_circuit, resolve_retry};
use super::range_check::{as_file_range, file_integer};
use crate::error::ConfigError;
use crate::file::{AgentSection, LoadedFile};
use crate::model::{
    AgentConfig, DEFAULT_AGENT_WEIGHT, ExecHandlerConfig, HandlerConfig, HttpHandlerConfig, Secret,
    TaskDefaults, default_agents,
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
        ("working_dir", section.working_dir.is_some()),
        ("fatal_exit_codes", section.fatal_exit_codes.is_some()),
    ];
    let http_only = [
        ("url", section.url.is_some()),
        ("headers", section.headers.is_some()),
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
            Some(match kind {
                "echo" => HandlerConfig::Echo,
                "sleep" => HandlerConfig::Sleep,
                _ => HandlerConfig::Custom,
            })
        }
        "exec" => {
            reject_foreign(&http_only, "http");
            exec_handler(section, &mut fail)
        }
        "http" => {
            reject_foreign(&exec_only, "exec");
            http_handler(section, &mut fail)
        }
        "" => {
            fail("handler", "is required: set handler = \"echo\", \"sleep\", \"exec\", \"http\" or \"custom\" (registered in code)".to_string());
            None
        }
        other => {
            fail(
                "handler",
                format!(
                    "{other:?} is not a handler; use \"echo\", \"sleep\", \"exec\", \"http\" or \"custom\" (registered in code)"
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
        llm: section
            .llm
            .unwrap_or(matches!(handler, Some(HandlerConfig::Http(_)))),
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
    Some(HandlerConfig::Exec(ExecHandlerConfig {
        command,
        env: section.env.clone().unwrap_or_default(),
        working_dir: section.working_dir.clone().map(PathBuf::from),
        fatal_exit_codes,
    }))
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
