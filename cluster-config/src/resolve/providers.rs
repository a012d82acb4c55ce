//! `[providers.NAME]`: the OpenAI-compatible APIs that `llm` agent types
//! call, with the limits each provider enforces cluster-wide.
//!
//! The API key is a [`Secret`] from the moment it is read: no error built
//! here quotes it, whether it was written inline, expanded from `${VAR}` or
//! read from `api_key_file`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_protocol::defaults::DEFAULT_PROVIDER_MAX_WAIT_S;
use herd_protocol::limits::{
    PROVIDER_MAX_CONCURRENT_RANGE, PROVIDER_MAX_WAIT_S_RANGE, PROVIDER_REQUESTS_PER_MINUTE_RANGE,
    PROVIDER_TOKENS_PER_MINUTE_RANGE,
};

use super::policy::{PolicyFields, resolve_circuit};
use super::range_check::{as_file_range, file_integer};
use crate::error::ConfigError;
use crate::file::{LoadedFile, ProviderSection};
use crate::model::{ProviderConfig, Secret, TaskDefaults};
use crate::rules;

/// Resolves every `[providers.NAME]`; a provider's circuit inherits the
/// `[tasks]` circuit settings key by key.
pub(super) fn resolve_providers(
    file: Option<&LoadedFile>,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, ProviderConfig> {
    let Some(file) = file else {
        return BTreeMap::new();
    };
    let mut providers = BTreeMap::new();
    for (name, section) in &file.config.providers {
        let prefix = format!("providers.{name}");
        if let Err(message) = rules::provider_name(name) {
            errors.push(ConfigError::new(
                file.origin_of(&prefix),
                prefix.clone(),
                message,
            ));
            continue;
        }
        if let Some(provider) = resolve_provider(file, &prefix, section, tasks, errors) {
            providers.insert(name.clone(), provider);
        }
    }
    providers
}

fn resolve_provider(
    file: &LoadedFile,
    prefix: &str,
    section: &ProviderSection,
    tasks: &TaskDefaults,
    errors: &mut Vec<ConfigError>,
) -> Option<ProviderConfig> {
    let error_count = errors.len();
    let key = |field: &str| format!("{prefix}.{field}");
    let fail = |errors: &mut Vec<ConfigError>, field: &str, message: String| {
        errors.push(ConfigError::new(
            file.origin_of(&key(field)),
            key(field),
            message,
        ));
    };

    let base_url = match section.base_url.as_deref().map(str::trim) {
        None | Some("") => {
            fail(errors, "base_url", "is required: give the OpenAI-compatible API's base URL, e.g. base_url = \"https://api.openai.com/v1\" (calls go to {base_url}/chat/completions)".to_string());
            None
        }
        Some(url) => match url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
        {
            Some(rest) if !rest.trim_matches('/').is_empty() => {
                Some(url.trim_end_matches('/').to_string())
            }
            _ => {
                fail(
                    errors,
                    "base_url",
                    format!("{url:?} is not an http:// or https:// URL with a host"),
                );
                None
            }
        },
    };

    let api_key = match (&section.api_key, &section.api_key_file) {
        (Some(_), Some(_)) => {
            fail(errors, "api_key_file", "cannot be combined with api_key; keep one: api_key (e.g. \"${OPENAI_API_KEY}\") or api_key_file (a file holding only the key)".to_string());
            None
        }
        (Some(inline), None) => match checked_key(inline) {
            Ok(key) => Some(key),
            Err(problem) => {
                fail(
                    errors,
                    "api_key",
                    format!(
                        "{problem}; set the provider's API key, e.g. api_key = \"${{OPENAI_API_KEY}}\", or remove the key for an API that needs none"
                    ),
                );
                None
            }
        },
        (None, Some(path)) => {
            let path = relative_to_config(file.path(), path);
            match read_key_file(&path) {
                Ok(key) => Some(key),
                Err(problem) => {
                    fail(errors, "api_key_file", problem);
                    None
                }
            }
        }
        (None, None) => None,
    };

    let model = match section.model.as_deref().map(str::trim) {
        Some("") => {
            fail(
                errors,
                "model",
                "is empty; name the model agent types use by default, e.g. model = \"gpt-4o-mini\", or remove the key".to_string(),
            );
            None
        }
        other => other.map(str::to_string),
    };

    let requests_per_minute = file_integer(
        Some(file),
        &key("requests_per_minute"),
        section.requests_per_minute,
        as_file_range(PROVIDER_REQUESTS_PER_MINUTE_RANGE),
        "set the requests the provider accepts per minute, for the whole cluster",
        errors,
    )
    .map(|v| v as u32);
    let tokens_per_minute = file_integer(
        Some(file),
        &key("tokens_per_minute"),
        section.tokens_per_minute,
        as_file_range(PROVIDER_TOKENS_PER_MINUTE_RANGE),
        "set the tokens (prompt + completion) the provider accepts per minute, for the whole cluster",
        errors,
    )
    .map(|v| v as u64);
    let max_concurrent = file_integer(
        Some(file),
        &key("max_concurrent"),
        section.max_concurrent,
        as_file_range(PROVIDER_MAX_CONCURRENT_RANGE),
        "set how many calls may be in flight at once, for the whole cluster",
        errors,
    )
    .map(|v| v as u32);
    let max_wait_s = file_integer(
        Some(file),
        &key("max_wait_s"),
        section.max_wait_s,
        as_file_range(PROVIDER_MAX_WAIT_S_RANGE),
        "set how many seconds a task waits for this provider's budget before trying its fallback",
        errors,
    )
    .map_or(DEFAULT_PROVIDER_MAX_WAIT_S, |v| v as u32);
    let circuit = resolve_circuit(
        Some(file),
        prefix,
        &PolicyFields::of_provider(section),
        &tasks.circuit,
        errors,
    )
    .unwrap_or_else(|| tasks.circuit.clone());

    if errors.len() > error_count {
        return None;
    }
    Some(ProviderConfig {
        base_url: base_url?,
        api_key,
        model,
        requests_per_minute,
        tokens_per_minute,
        max_concurrent,
        max_wait: Duration::from_secs(u64::from(max_wait_s)),
        circuit,
    })
}

/// The key as a secret, or what is wrong with it (never quoting it).
fn checked_key(text: &str) -> Result<Secret, &'static str> {
    let key = text.trim();
    if key.is_empty() {
        return Err("is empty");
    }
    if key.chars().any(char::is_control) {
        return Err("contains control characters (a key is one line of printable text)");
    }
    Ok(Secret::new(key))
}

/// A relative `api_key_file` is read from the config file's directory, so
/// a config and its key file can move together.
fn relative_to_config(config_file: &Path, key_file: &str) -> PathBuf {
    let key_file = Path::new(key_file);
    match config_file.parent() {
        Some(dir) if key_file.is_relative() => dir.join(key_file),
        _ => key_file.to_path_buf(),
    }
}

fn read_key_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "cannot read {}: {error}; give a readable file holding only the API key",
            path.display()
        )
    })?;
    checked_key(&text).map_err(|problem| {
        format!(
            "{} {problem}; the file must hold only the API key",
            path.display()
        )
    })
}
