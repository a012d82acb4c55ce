//! Validation of single values. Each error message says what is allowed.

use std::net::SocketAddr;

use herd_protocol::NodeName;
use herd_protocol::limits::MIN_COOKIE_CHARS;
use herd_protocol::messages::membership::Role;

use crate::model::Secret;

/// Most worker slots one node may host.
pub const MAX_WORKERS_PER_NODE: u32 = 4096;

pub(crate) fn node_name(text: &str) -> Result<NodeName, String> {
    NodeName::parse(text).map_err(|error| {
        format!("{text:?} {error}; use 2-64 lowercase letters, digits and hyphens, e.g. worker-1")
    })
}

pub(crate) fn cookie(text: &str) -> Result<Secret, String> {
    if text.trim().is_empty() {
        return Err("is empty; set the shared cluster secret (the same on every node)".into());
    }
    if text.chars().any(char::is_control) {
        return Err("contains control characters; use printable characters only".into());
    }
    let chars = text.chars().count();
    if chars < MIN_COOKIE_CHARS {
        return Err(format!(
            "is {chars} characters, fewer than the {MIN_COOKIE_CHARS} required; use 32 or more random characters, e.g. the output of `openssl rand -hex 32`"
        ));
    }
    Ok(Secret::new(text))
}

pub(crate) fn socket_addr(text: &str, example: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IP:PORT address; write e.g. {example}"))
}

pub(crate) fn host(text: &str) -> Result<String, String> {
    let host = text.trim();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if valid {
        Ok(host.to_string())
    } else {
        Err(format!(
            "{text:?} is not a host name or IP address peers can dial"
        ))
    }
}

pub(crate) fn host_port(text: &str) -> Result<String, String> {
    let fix = "write each seed as HOST:PORT, e.g. 10.0.0.2:7100 or n2.herd:7100";
    let (host_part, port) = text
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| format!("seed {text:?} has no port; {fix}"))?;
    if port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(format!("seed {text:?} has an invalid port; {fix}"));
    }
    host(host_part).map_err(|_| format!("seed {text:?} has an invalid host; {fix}"))?;
    Ok(text.trim().to_string())
}

pub(crate) fn roles(items: &[String]) -> Result<Vec<Role>, String> {
    if items.is_empty() {
        return Err(
            "is empty; give at least one of orchestrator, worker, monitor (comma-separated)".into(),
        );
    }
    let mut roles = Vec::new();
    for item in items {
        let role = item.parse::<Role>().map_err(|error| {
            format!("{error}; give a comma-separated subset, e.g. orchestrator,worker,monitor")
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    roles.sort();
    Ok(roles)
}

pub(crate) fn workers(text: &str) -> Result<u32, String> {
    let count: i64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number; give the number of worker slots (1 to {MAX_WORKERS_PER_NODE})"))?;
    if !(0..=MAX_WORKERS_PER_NODE as i64).contains(&count) {
        return Err(format!(
            "is {count}, outside 1..={MAX_WORKERS_PER_NODE}; give the number of worker slots this node runs"
        ));
    }
    Ok(count as u32)
}

pub(crate) fn seconds(
    text: &str,
    range: std::ops::RangeInclusive<u64>,
    meaning: &str,
) -> Result<std::time::Duration, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of seconds; set {meaning}"))?;
    if !range.contains(&value) {
        return Err(format!(
            "is {value}, outside {}..={}; set {meaning}",
            range.start(),
            range.end()
        ));
    }
    Ok(std::time::Duration::from_secs(value))
}

pub(crate) fn agent_type_name(name: &str) -> Result<(), String> {
    short_lowercase_name(name, "agent type name")
}

/// Provider names follow the agent type rules: they appear in metric labels
/// and in task records.
pub(crate) fn provider_name(name: &str) -> Result<(), String> {
    short_lowercase_name(name, "provider name")
}

fn short_lowercase_name(name: &str, what: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1-64 lowercase letters, digits, '_' or '-'"
        ))
    }
}
