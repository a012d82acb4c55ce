//! `[http]`: the API server's connection cap and timeouts, checked against
//! herd-protocol's limits.

use std::time::Duration;

use herd_protocol::limits::{HTTP_MAX_CONNECTIONS_RANGE, HTTP_TIMEOUT_S_RANGE};

use super::range_check::{as_file_range, file_integer};
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::HttpServerSettings;

/// Resolves `[http]`; a key that is unset or out of range keeps its default
/// (an out-of-range one also pushes an error).
pub(super) fn resolve_http(
    file: Option<&LoadedFile>,
    errors: &mut Vec<ConfigError>,
) -> HttpServerSettings {
    let section = file.map(|f| &f.config.http);
    let defaults = HttpServerSettings::default();
    let max_connections = file_integer(
        file,
        "http.max_connections",
        section.and_then(|s| s.max_connections),
        as_file_range(HTTP_MAX_CONNECTIONS_RANGE),
        "set how many HTTP connections the node holds open at once; a node also never uses more than a quarter of its file-descriptor limit (ulimit -n) for them",
        errors,
    )
    .map_or(defaults.max_connections, |v| v as u32);
    let mut seconds = |key: &str, value: Option<i64>, meaning: &str, default: Duration| {
        file_integer(
            file,
            key,
            value,
            as_file_range(HTTP_TIMEOUT_S_RANGE),
            meaning,
            errors,
        )
        .map_or(default, |v| Duration::from_secs(v as u64))
    };
    let header_timeout = seconds(
        "http.header_timeout_s",
        section.and_then(|s| s.header_timeout_s),
        "set the seconds a client has to send a request's line and headers",
        defaults.header_timeout,
    );
    let body_timeout = seconds(
        "http.body_timeout_s",
        section.and_then(|s| s.body_timeout_s),
        "set the seconds a request body may go without sending data",
        defaults.body_timeout,
    );
    let request_timeout = seconds(
        "http.request_timeout_s",
        section.and_then(|s| s.request_timeout_s),
        "set the seconds a request may take from its headers to its answer (a ?wait= long-poll gets its wait on top)",
        defaults.request_timeout,
    );
    HttpServerSettings {
        max_connections,
        header_timeout,
        body_timeout,
        request_timeout,
    }
}
