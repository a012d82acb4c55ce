//! `[scaling]`: the deployment-mode preset, then the keys that override it,
//! checked against seed 004's ranges.

use std::time::Duration;

use herd_protocol::limits::{
    MAX_WORKERS_RANGE, MIN_WORKERS_RANGE, SCALE_THRESHOLD_RANGE, SLOT_CREDIT_RANGE,
};

use super::range_check::{as_file_range, file_in_range, file_integer};
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::{DeploymentMode, ScalingSettings};
use crate::origin::Origin;

/// The names the mode goes by.
pub(crate) const MODE_KEY: &str = "scaling.mode";
pub(crate) const MODE_FLAG: &str = "--mode";
pub(crate) const MODE_ENV: &str = "HERD_MODE";

/// Resolves `[scaling]`. `mode` is the flag or variable value, if any (it
/// beats `scaling.mode` in the file).
pub(crate) fn resolve_scaling(
    file: Option<&LoadedFile>,
    mode: Option<(String, Origin)>,
    errors: &mut Vec<ConfigError>,
) -> ScalingSettings {
    let section = file.map(|f| &f.config.scaling);
    let origin_of = |key: &str| file.map_or(Origin::Default, |f| f.origin_of(key));
    let mode = mode.or_else(|| {
        section
            .and_then(|s| s.mode.clone())
            .map(|m| (m, origin_of(MODE_KEY)))
    });
    let mode = match mode {
        None => DeploymentMode::Static,
        Some((text, origin)) => DeploymentMode::parse(&text).unwrap_or_else(|| {
            errors.push(ConfigError::new(
                origin,
                MODE_KEY,
                format!("{text:?} is not a deployment mode; use \"static\" (fixed slots), \"development\" (2–5 workers), \"trusted-tester\" (5–50) or \"production\" (10–1000)"),
            ));
            DeploymentMode::Static
        }),
    };
    let mut settings = ScalingSettings::preset(mode);
    let Some(section) = section else {
        return settings;
    };

    if let Some(v) = file_integer(
        file,
        "scaling.interval_ms",
        section.interval_ms,
        100..=60_000,
        "set the time between scaling decisions in milliseconds",
        errors,
    ) {
        settings.interval = Duration::from_millis(v as u64);
    }
    if let Some(v) = file_integer(
        file,
        "scaling.min_workers",
        section.min_workers,
        as_file_range(MIN_WORKERS_RANGE),
        "set the fewest worker slots the cluster keeps",
        errors,
    ) {
        settings.min_workers = v as u32;
    }
    if let Some(v) = file_integer(
        file,
        "scaling.max_workers",
        section.max_workers,
        as_file_range(MAX_WORKERS_RANGE),
        "set the most worker slots the cluster may grow to",
        errors,
    ) {
        settings.max_workers = v as u32;
    }
    if let Some(v) = file_integer(
        file,
        "scaling.stabilization_s",
        section.stabilization_s,
        1..=3600,
        "set how long utilization must stay low before the pool shrinks, in seconds",
        errors,
    ) {
        settings.stabilization = Duration::from_secs(v as u64);
    }
    if let Some(v) = file_integer(
        file,
        "scaling.worker_timeout_seconds",
        section.worker_timeout_seconds,
        60..=3600,
        "set the longest one attempt may run, in seconds",
        errors,
    ) {
        settings.worker_timeout = Some(Duration::from_secs(v as u64));
    }
    if let Some(v) = file_integer(
        file,
        "scaling.max_concurrent_llm_calls",
        section.max_concurrent_llm_calls,
        1..=100,
        "set how many LLM-calling tasks one node runs at once",
        errors,
    ) {
        settings.max_concurrent_llm_calls = v as u32;
    }
    if let Some(v) = file_integer(
        file,
        "scaling.slot_credit",
        section.slot_credit,
        as_file_range(SLOT_CREDIT_RANGE),
        "set the fewest attempts a pool is given per worker slot (alone, without max_slot_credit: a fixed credit; 1 = only what it can start now)",
        errors,
    ) {
        settings.slot_credit = v as u32;
    }
    if let Some(v) = file_integer(
        file,
        "scaling.max_slot_credit",
        section.max_slot_credit,
        as_file_range(SLOT_CREDIT_RANGE),
        "set the most attempts a pool is given per worker slot when a type's tasks are short against the commit latency (equal to slot_credit: a fixed credit)",
        errors,
    ) {
        settings.max_slot_credit = v as u32;
    } else if section.slot_credit.is_some() {
        // A file that sets only slot_credit (written before the credit
        // adapted) keeps the fixed credit it asked for.
        settings.max_slot_credit = settings.slot_credit;
    }

    if let Some(v) = file_in_range(
        file,
        "scaling.scale_up_threshold",
        section.scale_up_threshold,
        SCALE_THRESHOLD_RANGE,
        "set the utilization (busy and queued work over slots) above which the pool grows",
        errors,
    ) {
        settings.scale_up_threshold = v;
    }
    if let Some(v) = file_in_range(
        file,
        "scaling.scale_down_threshold",
        section.scale_down_threshold,
        SCALE_THRESHOLD_RANGE,
        "set the utilization below which the pool shrinks",
        errors,
    ) {
        settings.scale_down_threshold = v;
    }
    if let Some(v) = file_in_range(
        file,
        "scaling.max_cpu_per_worker",
        section.max_cpu_per_worker,
        0.5..=16.0,
        "set the CPU cores budgeted per worker slot (it caps the slots a node hosts)",
        errors,
    ) {
        settings.max_cpu_per_worker = Some(v);
    }
    if let Some(v) = file_in_range(
        file,
        "scaling.max_memory_per_worker_gb",
        section.max_memory_per_worker_gb,
        1.0..=64.0,
        "set the memory in GB budgeted per worker slot (it caps the slots a node hosts)",
        errors,
    ) {
        settings.max_memory_per_worker_gb = Some(v);
    }
    if let Some(v) = file_in_range(
        file,
        "scaling.max_weight_step",
        section.max_weight_step,
        0.01..=0.5,
        "set the largest relative change of a weight in one step (at most 0.5: weights never more than halve or grow by half at once)",
        errors,
    ) {
        settings.max_weight_step = v;
    }
    if let Some(v) = section.rebalance {
        settings.rebalance = v;
    }
    if let Some(v) = section.autoscale {
        settings.autoscale = v;
    }

    if settings.min_workers > settings.max_workers {
        errors.push(ConfigError::new(
            origin_of("scaling.min_workers"),
            "scaling.min_workers",
            format!(
                "is {}, above max_workers ({}) for mode {:?}; lower min_workers or raise max_workers",
                settings.min_workers,
                settings.max_workers,
                mode.as_str()
            ),
        ));
    }
    if settings.max_slot_credit < settings.slot_credit {
        errors.push(ConfigError::new(
            origin_of("scaling.max_slot_credit"),
            "scaling.max_slot_credit",
            format!(
                "is {}, below slot_credit ({}); raise max_slot_credit, or set both equal for a fixed credit",
                settings.max_slot_credit, settings.slot_credit
            ),
        ));
    }
    if settings.scale_up_threshold <= settings.scale_down_threshold {
        errors.push(ConfigError::new(
            origin_of("scaling.scale_up_threshold"),
            "scaling.scale_up_threshold",
            format!(
                "is {}, not above scale_down_threshold ({}); the pool would grow and shrink at the same load — keep a gap, e.g. 0.75 and 0.25",
                settings.scale_up_threshold, settings.scale_down_threshold
            ),
        ));
    }
    settings
}
