//! The Raft timing and sizing of the replicated task book.
//!
//! The numbers are chosen for failover in about a second on a LAN: a leader
//! heartbeats every 100 ms, and a follower stands for election once
//! openraft 0.9's leader lease (the election timeout's maximum, 600 ms) and
//! its own election timeout (500–600 ms) have passed without a heartbeat, so
//! a dead leader is replaced after 1.1–1.2 s plus the election (`herd bench
//! failover --replicas 3`). The minimum also bounds each vote request
//! (openraft times a vote out after `election_timeout_min`), and a vote
//! includes an fsync of the voter's vote with a data directory: with a
//! 300 ms minimum and nine nodes' fsyncs queued on one disk, no leader was
//! elected for 15 s after the old one was killed (in a CI run and a stress
//! run); 500 ms is the bound that had always held. Shorter leases would
//! also depose healthy leaders on a loaded machine, whose threads stall for
//! a few hundred milliseconds.
//!
//! Entries are batches of commands, so 64 entries per append is thousands of
//! commands; snapshot chunks stay far below the cluster frame limit.
//!
//! openraft 0.9 times an append out after one heartbeat interval, so an
//! append must be small enough to be sent and made durable in 100 ms:
//! [`super::network::MAX_APPEND_BYTES`] cuts appends of several entries, and
//! the leader keeps each entry's batch small (see the module notes).

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};

use super::network::MAX_RPC_BYTES;

/// How often the leader heartbeats its followers.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// A follower stands for election after hearing nothing for a random time
/// between these bounds.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (500, 600);
/// Entries (command batches) sent in one append at most.
pub const MAX_ENTRIES_PER_APPEND: u64 = 64;
/// How long sending and installing one snapshot chunk may take.
pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 30_000;
/// Log entries kept behind a snapshot at most, so a briefly lagging
/// follower catches up from entries rather than a whole snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1_000;

/// openraft's configuration for the task book group, validated; a snapshot
/// every `snapshot_every_entries` log entries (`cluster.snapshot_every_entries`).
pub fn raft_config(snapshot_every_entries: u64) -> Arc<Config> {
    let config = Config {
        cluster_name: "herd-task-book".to_string(),
        heartbeat_interval: HEARTBEAT_INTERVAL_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.0,
        election_timeout_max: ELECTION_TIMEOUT_MS.1,
        max_payload_entries: MAX_ENTRIES_PER_APPEND,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every_entries),
        snapshot_max_chunk_size: (MAX_RPC_BYTES / 4) as u64,
        // Keep some log behind a snapshot so a briefly lagging follower
        // catches up from entries rather than a whole snapshot (a tenth
        // of the interval when snapshots are frequent).
        max_in_snapshot_log_to_keep: LOG_KEPT_BEHIND_SNAPSHOT.min(snapshot_every_entries / 10),
        // Sending and installing the last chunk decodes and stores the whole
        // book on the follower: seconds for a large one, not openraft's
        // 200 ms default (after which the transfer starts over).
        install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
        ..Config::default()
    };
    // The values are constants checked by the test below.
    Arc::new(
        config
            .validate()
            .expect("the task book's Raft configuration is valid"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raft_configuration_validates() {
        let config = raft_config(herd_config::DEFAULT_SNAPSHOT_EVERY_ENTRIES);
        assert!(config.election_timeout_min >= 3 * config.heartbeat_interval);
    }
}
