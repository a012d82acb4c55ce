//! `[limits]`: payload and queue bounds, checked against herd-protocol's
//! limits.

use herd_protocol::limits::{
    CLUSTER_FRAME_LIMIT_BYTES, MAX_CONFIGURABLE_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES_RANGE,
    MAX_UNFINISHED_TASKS_RANGE, MIB,
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
    Limits {
        max_payload_bytes,
        max_unfinished_tasks,
    }
}
