//! Size limits that keep one task from breaking a cluster link.
//!
//! ractor_cluster drops the whole session when a peer receives a frame over
//! 16 MiB, which would take every task on that link with it. herd therefore
//! caps single payloads and results well below that, and caps batches so that
//! a batch plus one maximal item still fits in a frame.

/// Default largest accepted task payload or result: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The largest payload limit an operator may configure: 8 MiB, half of
/// ractor_cluster's 16 MiB frame limit, leaving room for framing and batching.
pub const MAX_CONFIGURABLE_PAYLOAD_BYTES: usize = 8 * 1024 * 1024;

/// ractor_cluster's inbound frame limit (its `DEFAULT_MAX_INBOUND_FRAME_SIZE`).
pub const CLUSTER_FRAME_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Batches of assignments or reports stop growing once their payload bytes
/// reach this budget, so `budget + one maximal item` stays under the frame
/// limit.
pub const BATCH_PAYLOAD_BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// Batches also stop at this many items, to bound per-message latency.
pub const MAX_BATCH_ITEMS: usize = 1024;

const _: () = assert!(
    BATCH_PAYLOAD_BUDGET_BYTES + MAX_CONFIGURABLE_PAYLOAD_BYTES + 1024 * 1024
        < CLUSTER_FRAME_LIMIT_BYTES
);
