//! The retry and circuit-breaker keys that `[tasks]` and `[agents.NAME]`
//! share: each section overrides the policy it inherits, field by field.

use std::time::Duration;

use herd_protocol::RetrySpec;
use herd_protocol::defaults::{
    DEFAULT_LINEAR_RETRY_DELAY_S, DEFAULT_RETRY_FACTOR, DEFAULT_RETRY_INITIAL_S,
    DEFAULT_RETRY_MAX_S,
};
use herd_protocol::limits::{
    CIRCUIT_FAILURES_RANGE, CIRCUIT_HALF_OPEN_TRIALS_RANGE, CIRCUIT_RECOVERY_S_RANGE,
};

use super::range_check::{as_file_range, file_in_range, file_integer};
use crate::error::ConfigError;
use crate::file::{AgentSection, LoadedFile, ProviderSection, TasksSection};
use crate::model::CircuitSettings;
use crate::origin::Origin;

/// The retry and circuit fields that both `[tasks]` and `[agents.NAME]` hold.
pub(super) struct PolicyFields<'a> {
    retry: Option<&'a str>,
    initial_s: Option<f64>,
    factor: Option<f64>,
    max_s: Option<f64>,
    delay_s: Option<f64>,
    circuit_failures: Option<i64>,
    circuit_recovery_s: Option<f64>,
    circuit_half_open_trials: Option<i64>,
}

macro_rules! policy_fields {
    ($section:expr) => {
        PolicyFields {
            retry: $section.retry.as_deref(),
            initial_s: $section.retry_initial_s,
            factor: $section.retry_factor,
            max_s: $section.retry_max_s,
            delay_s: $section.retry_delay_s,
            circuit_failures: $section.circuit_failures,
            circuit_recovery_s: $section.circuit_recovery_s,
            circuit_half_open_trials: $section.circuit_half_open_trials,
        }
    };
}

impl<'a> PolicyFields<'a> {
    pub(super) fn of_tasks(section: &'a TasksSection) -> Self {
        policy_fields!(section)
    }

    pub(super) fn of_agent(section: &'a AgentSection) -> Self {
        policy_fields!(section)
    }

    /// A provider has a circuit but no retry policy of its own.
    pub(super) fn of_provider(section: &'a ProviderSection) -> Self {
        PolicyFields {
            retry: None,
            initial_s: None,
            factor: None,
            max_s: None,
            delay_s: None,
            circuit_failures: section.circuit_failures,
            circuit_recovery_s: section.circuit_recovery_s,
            circuit_half_open_trials: section.circuit_half_open_trials,
        }
    }
}

/// The backoff a section asks for, starting from `base`; `None` when the
/// section sets no retry field.
pub(super) fn resolve_retry(
    file: Option<&LoadedFile>,
    prefix: &str,
    fields: &PolicyFields<'_>,
    base: &RetrySpec,
    errors: &mut Vec<ConfigError>,
) -> Option<RetrySpec> {
    let exponential_fields =
        fields.initial_s.is_some() || fields.factor.is_some() || fields.max_s.is_some();
    if fields.retry.is_none() && !exponential_fields && fields.delay_s.is_none() {
        return None;
    }
    let origin = |field: &str| {
        file.map(|f| f.origin_of(&format!("{prefix}.{field}")))
            .unwrap_or(Origin::Default)
    };
    let kind = match fields.retry {
        Some(kind @ ("exponential" | "linear")) => kind,
        Some(other) => {
            errors.push(ConfigError::new(
                origin("retry"),
                format!("{prefix}.retry"),
                format!("{other:?} is not a backoff; use \"exponential\" or \"linear\""),
            ));
            return None;
        }
        None if fields.delay_s.is_some() && !exponential_fields => "linear",
        None => match base {
            RetrySpec::Exponential { .. } => "exponential",
            RetrySpec::Linear { .. } => "linear",
        },
    };
    let spec = if kind == "linear" {
        if exponential_fields {
            errors.push(ConfigError::new(origin("retry"), format!("{prefix}.retry_initial_s"), "retry_initial_s, retry_factor and retry_max_s apply only to retry = \"exponential\"; use retry_delay_s for a linear backoff"));
            return None;
        }
        let default_delay = match base {
            RetrySpec::Linear { delay_s } => *delay_s,
            RetrySpec::Exponential { .. } => DEFAULT_LINEAR_RETRY_DELAY_S,
        };
        RetrySpec::Linear {
            delay_s: fields.delay_s.unwrap_or(default_delay),
        }
    } else {
        if fields.delay_s.is_some() {
            errors.push(ConfigError::new(origin("retry_delay_s"), format!("{prefix}.retry_delay_s"), "retry_delay_s applies only to retry = \"linear\"; use retry_initial_s, retry_factor and retry_max_s"));
            return None;
        }
        let (initial, factor, max) = match base {
            RetrySpec::Exponential {
                initial_s,
                factor,
                max_s,
            } => (*initial_s, *factor, *max_s),
            RetrySpec::Linear { .. } => (
                DEFAULT_RETRY_INITIAL_S,
                DEFAULT_RETRY_FACTOR,
                DEFAULT_RETRY_MAX_S,
            ),
        };
        RetrySpec::Exponential {
            initial_s: fields.initial_s.unwrap_or(initial),
            factor: fields.factor.unwrap_or(factor),
            max_s: fields.max_s.unwrap_or(max),
        }
    };
    if let Err(message) = spec.validate() {
        errors.push(ConfigError::new(
            origin("retry"),
            format!("{prefix}.retry"),
            message,
        ));
        return None;
    }
    Some(spec)
}

/// The circuit breaker a section asks for, starting from `base`; `None` when
/// the section sets no circuit field.
pub(super) fn resolve_circuit(
    file: Option<&LoadedFile>,
    prefix: &str,
    fields: &PolicyFields<'_>,
    base: &CircuitSettings,
    errors: &mut Vec<ConfigError>,
) -> Option<CircuitSettings> {
    if fields.circuit_failures.is_none()
        && fields.circuit_recovery_s.is_none()
        && fields.circuit_half_open_trials.is_none()
    {
        return None;
    }
    let key = |field: &str| format!("{prefix}.{field}");
    let failures = file_integer(
        file,
        &key("circuit_failures"),
        fields.circuit_failures,
        as_file_range(CIRCUIT_FAILURES_RANGE),
        "set how many failures in a row open the circuit (0 disables it)",
        errors,
    );
    let trials = file_integer(
        file,
        &key("circuit_half_open_trials"),
        fields.circuit_half_open_trials,
        as_file_range(CIRCUIT_HALF_OPEN_TRIALS_RANGE),
        "set how many trial tasks must succeed to close the circuit",
        errors,
    );
    let recovery = file_in_range(
        file,
        &key("circuit_recovery_s"),
        fields.circuit_recovery_s,
        CIRCUIT_RECOVERY_S_RANGE,
        "set how many seconds an open circuit waits before trial tasks",
        errors,
    );
    Some(CircuitSettings {
        failures: failures.map_or(base.failures, |v| v as u32),
        recovery: recovery.map_or(base.recovery, Duration::from_secs_f64),
        half_open_trials: trials.map_or(base.half_open_trials, |v| v as u32),
    })
}
