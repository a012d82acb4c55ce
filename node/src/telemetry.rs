//! Logging setup: `LOG_FORMAT=json|text`, `LOG_LEVEL` or `RUST_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable lines.
    Text,
}

/// Why the logging variables are invalid.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `LOG_FORMAT` is not json or text.
    #[error("LOG_FORMAT={0:?} is not supported; use json or text")]
    Format(String),
    /// `LOG_LEVEL` / `RUST_LOG` does not parse.
    #[error(
        "{var}={value:?} is not a log level; use ERROR, WARN, INFO or DEBUG (or a RUST_LOG filter such as herd=debug)"
    )]
    Level {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
}

/// Reads `LOG_FORMAT`, `LOG_LEVEL` and `RUST_LOG` from `env`.
pub fn settings(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(LogFormat, EnvFilter), TelemetryError> {
    let format = match env("LOG_FORMAT").map(|v| v.to_ascii_lowercase()) {
        None => LogFormat::Text,
        Some(value) if value == "text" || value.is_empty() => LogFormat::Text,
        Some(value) if value == "json" => LogFormat::Json,
        Some(value) => return Err(TelemetryError::Format(value)),
    };
    let (var, value) = match (env("RUST_LOG"), env("LOG_LEVEL")) {
        (Some(filter), _) if !filter.is_empty() => ("RUST_LOG", filter),
        (_, Some(level)) if !level.is_empty() => {
            let level = level.to_ascii_lowercase();
            if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                return Err(TelemetryError::Level {
                    var: "LOG_LEVEL",
                    value: level,
                });
            }
            ("LOG_LEVEL", level)
        }
        _ => ("LOG_LEVEL", "info".to_string()),
    };
    let filter =
        EnvFilter::try_new(quiet_dependencies(&value)).map_err(|_| TelemetryError::Level {
            var,
            value: value.clone(),
        })?;
    Ok((format, filter))
}

/// ractor_cluster logs every connection, and warns about routine events such
/// as a redundant connection losing its election; openraft warns about every
/// stale response, and logs an unreachable replica as an error twice a
/// second for as long as it is down; herd's membership and leadership report
/// what an operator needs (leader changes, lost quorum, storage failures).
/// A filter that names the dependency itself is left alone
/// (`RUST_LOG=info,openraft=warn` shows openraft's own account).
fn quiet_dependencies(filter: &str) -> String {
    let mut quiet = filter.to_string();
    if !filter.contains("ractor") {
        quiet.push_str(",ractor_cluster=error,ractor=warn");
    }
    if !filter.contains("openraft") {
        quiet.push_str(",openraft=off");
    }
    quiet
}

/// Installs the global subscriber for node `node`. Call once, early.
pub fn init(format: LogFormat, filter: EnvFilter, node: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::json_log::JsonLines {
                node: node.to_string(),
            })
            .try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_format_and_level() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(settings(&env(&[])).unwrap().0, LogFormat::Text);
        assert_eq!(
            settings(&env(&[("LOG_FORMAT", "JSON"), ("LOG_LEVEL", "DEBUG")]))
                .unwrap()
                .0,
            LogFormat::Json
        );
        let error = settings(&env(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "LOG_FORMAT=\"xml\" is not supported; use json or text"
        );
        assert_eq!(
            settings(&env(&[("LOG_LEVEL", "loud")]))
                .unwrap_err()
                .to_string(),
            "LOG_LEVEL=\"loud\" is not a log level; use ERROR, WARN, INFO or DEBUG (or a RUST_LOG filter such as herd=debug)"
        );
        assert!(settings(&env(&[("RUST_LOG", "herd_actors=debug")])).is_ok());
    }
}
