//! `[tasks]`: defaults for tasks that do not say, checked against
//! herd-protocol's limits.

use herd_protocol::limits::{
    ATTEMPTS_RANGE, POISON_CRASHES_RANGE, RETAIN_FINISHED_RANGE, TIMEOUT_S_RANGE,
};

use super::policy::{PolicyFields, resolve_circuit, resolve_retry};
use super::range_check::{as_file_range, file_integer};
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::TaskDefaults;

/// Resolves `[tasks]`; a key that is unset or invalid keeps its default (an
/// invalid one also pushes an error).
pub(super) fn resolve_task_defaults(
    file: Option<&LoadedFile>,
    errors: &mut Vec<ConfigError>,
) -> TaskDefaults {
    let section = file.map(|f| &f.config.tasks);
    let defaults = TaskDefaults::default();
    let mut resolved = TaskDefaults {
        timeout_s: file_integer(
            file,
            "tasks.default_timeout_s",
            section.and_then(|s| s.default_timeout_s),
            as_file_range(TIMEOUT_S_RANGE),
            "set the per-attempt time limit in seconds (1 second to 1 day)",
            errors,
        )
        .map_or(defaults.timeout_s, |v| v as u32),
        max_attempts: file_integer(
            file,
            "tasks.default_max_attempts",
            section.and_then(|s| s.default_max_attempts),
            as_file_range(ATTEMPTS_RANGE),
            &format!(
                "set how many attempts a task gets ({} to {})",
                ATTEMPTS_RANGE.start(),
                ATTEMPTS_RANGE.end()
            ),
            errors,
        )
        .map_or(defaults.max_attempts, |v| v as u32),
        retain_finished: file_integer(
            file,
            "tasks.retain_finished",
            section.and_then(|s| s.retain_finished),
            as_file_range(RETAIN_FINISHED_RANGE),
            "set how many finished tasks stay queryable",
            errors,
        )
        .map_or(defaults.retain_finished, |v| v as usize),
        ..defaults.clone()
    };
    resolved.poison_crashes = file_integer(
        file,
        "tasks.poison_crashes",
        section.and_then(|s| s.poison_crashes),
        as_file_range(POISON_CRASHES_RANGE),
        "set after how many worker crashes a task is dead as poison",
        errors,
    )
    .map_or(defaults.poison_crashes, |v| v as u32);
    if let Some(section) = section {
        let fields = PolicyFields::of_tasks(section);
        if let Some(retry) = resolve_retry(file, "tasks", &fields, &defaults.retry, errors) {
            resolved.retry = retry;
        }
        if let Some(circuit) = resolve_circuit(file, "tasks", &fields, &defaults.circuit, errors) {
            resolved.circuit = circuit;
        }
    }
    resolved
}
