//! `[cluster]`: redial backoff, failure-detector tuning and how many peers
//! each node watches.

use std::time::Duration;

use super::range_check::file_integer;
use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::model::{
    ClusterSettings, FailureDetectorSettings, ReplicationMode, SNAPSHOT_EVERY_ENTRIES_RANGE,
    VOTERS_RANGE, WATCHERS_RANGE,
};
use crate::origin::Origin;

/// Resolves `[cluster]`; a key that is unset or out of range keeps its
/// default (an out-of-range one also pushes an error).
pub(super) fn resolve_cluster(
    file: Option<&LoadedFile>,
    replication: Option<(String, Origin)>,
    errors: &mut Vec<ConfigError>,
) -> ClusterSettings {
    let section = file.map(|f| &f.config.cluster);
    let defaults = ClusterSettings::default();
    let initial = file_integer(
        file,
        "cluster.reconnect_initial_ms",
        section.and_then(|s| s.reconnect_initial_ms),
        10..=60_000,
        "set the first redial delay in milliseconds",
        errors,
    )
    .map_or(defaults.reconnect_initial, |v| {
        Duration::from_millis(v as u64)
    });
    let max = file_integer(
        file,
        "cluster.reconnect_max_ms",
        section.and_then(|s| s.reconnect_max_ms),
        10..=300_000,
        "set the longest redial delay in milliseconds",
        errors,
    )
    .map_or(defaults.reconnect_max, |v| Duration::from_millis(v as u64));
    if max < initial {
        errors.push(ConfigError::new(
            file.map(|f| f.origin_of("cluster.reconnect_max_ms"))
                .unwrap_or(Origin::Default),
            "cluster.reconnect_max_ms",
            format!(
                "is {} ms, below reconnect_initial_ms ({} ms); make it at least as large",
                max.as_millis(),
                initial.as_millis()
            ),
        ));
    }
    let detector_defaults = FailureDetectorSettings::default();
    let millis = |key: &str,
                  value: Option<i64>,
                  range: std::ops::RangeInclusive<i64>,
                  meaning: &str,
                  default: Duration,
                  errors: &mut Vec<ConfigError>| {
        file_integer(file, key, value, range, meaning, errors)
            .map_or(default, |v| Duration::from_millis(v as u64))
    };
    let failure_detector = FailureDetectorSettings {
        heartbeat_interval: millis(
            "cluster.heartbeat_interval_ms",
            section.and_then(|s| s.heartbeat_interval_ms),
            10..=10_000,
            "set how often peers are sent heartbeats, in milliseconds",
            detector_defaults.heartbeat_interval,
            errors,
        ),
        acceptable_pause: millis(
            "cluster.acceptable_pause_ms",
            section.and_then(|s| s.acceptable_pause_ms),
            0..=60_000,
            "set the silence tolerated on top of the usual heartbeat gap, in milliseconds",
            detector_defaults.acceptable_pause,
            errors,
        ),
        max_silence: millis(
            "cluster.max_silence_ms",
            section.and_then(|s| s.max_silence_ms),
            50..=600_000,
            "set the silence after which a peer is declared down, in milliseconds",
            detector_defaults.max_silence,
            errors,
        ),
        min_std_dev: millis(
            "cluster.min_std_dev_ms",
            section.and_then(|s| s.min_std_dev_ms),
            1..=10_000,
            "set the floor of the heartbeat-gap deviation, in milliseconds",
            detector_defaults.min_std_dev,
            errors,
        ),
        threshold: match section.and_then(|s| s.failure_threshold) {
            Some(phi) if phi.is_finite() && (1.0..=50.0).contains(&phi) => phi,
            Some(phi) => {
                errors.push(ConfigError::new(
                    file.map(|f| f.origin_of("cluster.failure_threshold")).unwrap_or(Origin::Default),
                    "cluster.failure_threshold",
                    format!("is {phi}, outside 1.0..=50.0; set the phi above which a silent peer is declared down (8 is a good default)"),
                ));
                detector_defaults.threshold
            }
            None => detector_defaults.threshold,
        },
    };
    let watchers = file_integer(
        file,
        "cluster.watchers",
        section.and_then(|s| s.watchers),
        WATCHERS_RANGE,
        "set how many peers each node heartbeats (its successors on the ring of members); a member is declared down when two of them report it",
        errors,
    )
    .map_or(defaults.watchers, |v| v as usize);
    let replication = replication.or_else(|| {
        section.and_then(|s| s.replication.clone()).map(|text| {
            (
                text,
                file.map_or(Origin::Default, |f| f.origin_of(REPLICATION_KEY)),
            )
        })
    });
    let replication = match replication {
        None => defaults.replication,
        Some((text, origin)) => ReplicationMode::parse(&text).unwrap_or_else(|| {
            errors.push(ConfigError::new(
                origin,
                REPLICATION_KEY,
                format!("{text:?} is not a replication mode; use \"single\" (one orchestrator, journaled with a data directory) or \"raft\" (every orchestrator-role node holds a replica; a follower takes over when the leader is lost)"),
            ));
            defaults.replication
        }),
    };
    let voters = file_integer(
        file,
        "cluster.voters",
        section.and_then(|s| s.voters),
        VOTERS_RANGE,
        "set how many task book replicas vote (3 tolerates the loss of one, 5 of two; further orchestrator-role nodes are learners)",
        errors,
    )
    .map_or(defaults.voters, |v| v as usize);
    let snapshot_every_entries = file_integer(
        file,
        "cluster.snapshot_every_entries",
        section.and_then(|s| s.snapshot_every_entries),
        SNAPSHOT_EVERY_ENTRIES_RANGE,
        "set after how many log entries a task book replica snapshots its book and compacts its log",
        errors,
    )
    .map_or(defaults.snapshot_every_entries, |v| v as u64);
    ClusterSettings {
        reconnect_initial: initial,
        reconnect_max: max.max(initial),
        failure_detector,
        watchers,
        replication,
        voters,
        snapshot_every_entries,
    }
}

/// The names the replication mode goes by.
pub(crate) const REPLICATION_KEY: &str = "cluster.replication";
pub(crate) const REPLICATION_FLAG: &str = "--replication";
pub(crate) const REPLICATION_ENV: &str = "HERD_REPLICATION";
