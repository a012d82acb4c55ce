//! `[limits]`: payload and queue bounds, checked against herd-protocol's
//! limits.

use herd_protocol::limits::{
    CLUSTER_FRAME_LIMIT_BYTES, MAX_BATCH_BYTES_RANGE, MAX_BATCH_TASKS_RANGE,
    MAX_CONFIGURABLE_BATCH_BYTES, MAX_CONFIGURABLE_PAYLOAD_BYTES, MAX_HELD_BYTES_RANGE,
    MAX_PAYLOAD_BYTES_RANGE, MAX_UNFINISHED_TASKS_RANGE, MIB, TENANT_MAX_HELD_BYTES_RANGE,
};

use super::range_check::{as_file_range, file_integer};
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::Limits;

/// Resolves `[limits]`; a key that is unset or out of range keeps its
/// default (an out-of-range one also pushes an error).
pub(super) fn resolve_limits(file: Option<&LoadedFile>, errors: &mut Vec<ConfigError>) -> Limits {
    let section = file.map(|f| &f.config.limits);
    let defaults = Limits::default();
    let max_payload_bytes = file_integer(
        file,
        "limits.max_payload_bytes",
        section.and_then(|s| s.max_payload_bytes),
        as_file_range(MAX_PAYLOAD_BYTES_RANGE),
        &format!(
            "set the largest task payload in bytes; at most {} MiB ({MAX_CONFIGURABLE_PAYLOAD_BYTES}), because a cluster frame over {} MiB drops the whole link",
            MAX_CONFIGURABLE_PAYLOAD_BYTES / MIB,
            CLUSTER_FRAME_LIMIT_BYTES / MIB,
        ),
        errors,
    )
    .map_or(defaults.max_payload_bytes, |v| v as usize);
    let max_unfinished_tasks = file_integer(
        file,
        "limits.max_unfinished_tasks",
        section.and_then(|s| s.max_unfinished_tasks),
        as_file_range(MAX_UNFINISHED_TASKS_RANGE),
        "set how many unfinished tasks the orchestrator holds before it answers 429",
        errors,
    )
    .map_or(defaults.max_unfinished_tasks, |v| v as u64);
    let max_batch_bytes = file_integer(
        file,
        "limits.max_batch_bytes",
        section.and_then(|s| s.max_batch_bytes),
        as_file_range(MAX_BATCH_BYTES_RANGE),
        &format!(
            "set the largest encoded size of one submitted batch in bytes; at most {} MiB ({MAX_CONFIGURABLE_BATCH_BYTES}), because a batch is accepted all or none and must reach the orchestrator in one cluster frame",
            MAX_CONFIGURABLE_BATCH_BYTES / MIB,
        ),
        errors,
    )
    .map_or(defaults.max_batch_bytes, |v| v as usize);
    let max_batch_tasks = file_integer(
        file,
        "limits.max_batch_tasks",
        section.and_then(|s| s.max_batch_tasks),
        as_file_range(MAX_BATCH_TASKS_RANGE),
        "set how many tasks one submitted batch may hold before it is answered 413",
        errors,
    )
    .map_or(defaults.max_batch_tasks, |v| v as usize);
    let max_held_bytes = file_integer(
        file,
        "limits.max_held_bytes",
        section.and_then(|s| s.max_held_bytes),
        as_file_range(MAX_HELD_BYTES_RANGE),
        "set how many payload and result bytes the orchestrator's task book holds; size it well under the node's memory limit",
        errors,
    )
    .map_or(defaults.max_held_bytes, |v| v as u64);
    let tenant_max_unfinished_tasks = file_integer(
        file,
        "limits.tenant_max_unfinished_tasks",
        section.and_then(|s| s.tenant_max_unfinished_tasks),
        as_file_range(MAX_UNFINISHED_TASKS_RANGE),
        "set how many unfinished tasks one tenant may hold before its submissions get 429",
        errors,
    )
    .map(|v| v as u64);
    let tenant_max_held_bytes = file_integer(
        file,
        "limits.tenant_max_held_bytes",
        section.and_then(|s| s.tenant_max_held_bytes),
        as_file_range(TENANT_MAX_HELD_BYTES_RANGE),
        "set how many bytes of unfinished payloads and results one tenant may hold before its submissions get 429",
        errors,
    )
    .map(|v| v as u64);
    Limits {
        max_payload_bytes,
        max_unfinished_tasks,
        max_batch_bytes,
        max_batch_tasks,
        max_held_bytes,
        tenant_max_unfinished_tasks,
        tenant_max_held_bytes,
    }
}
