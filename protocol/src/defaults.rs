//! Built-in defaults for tasks and the task book, each defined once.
//!
//! The config model, the task book and the HTTP API all start from these
//! values. Each is checked at compile time to lie within its range in
//! [`crate::limits`], so a default can never be a value the config refuses.

use crate::limits::{
    ATTEMPTS_RANGE, HTTP_MAX_CONNECTIONS_RANGE, HTTP_TIMEOUT_S_RANGE, MAX_BATCH_BYTES_RANGE,
    MAX_BATCH_TASKS_RANGE, MAX_CONFIGURABLE_BATCH_BYTES, MAX_HELD_BYTES_RANGE,
    MAX_PAYLOAD_BYTES_RANGE, MAX_UNFINISHED_TASKS_RANGE, MIB, POISON_CRASHES_RANGE,
    PROVIDER_MAX_WAIT_S_RANGE, RETAIN_FINISHED_RANGE, RETRY_DELAY_S_RANGE, RETRY_FACTOR_RANGE,
    SLOT_CREDIT_RANGE, TIMEOUT_S_RANGE,
};
use crate::task::RetrySpec;

/// Largest accepted task payload or result unless configured: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = MIB;

/// Largest encoded size of one submitted batch unless configured: 12 MiB,
/// the most one cluster frame carries with room to spare (a batch is all or
/// none, so it is never split across frames).
pub const DEFAULT_MAX_BATCH_BYTES: usize = MAX_CONFIGURABLE_BATCH_BYTES;

/// Most tasks in one submitted batch unless configured.
pub const DEFAULT_MAX_BATCH_TASKS: usize = 10_000;

/// Payload and result bytes the task book holds unless configured: 256 MiB,
/// a quarter of the 1 GiB memory limit of the Kubernetes manifests, since
/// each held byte is also copied into views, journal entries and frames.
pub const DEFAULT_MAX_HELD_BYTES: u64 = 256 * MIB as u64;

/// Per-attempt time limit, in seconds, for tasks and agent types that do not
/// say: five minutes.
pub const DEFAULT_TIMEOUT_S: u32 = 300;

/// Attempts for tasks and agent types that do not say.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Worker crashes after which a task is dead as poison.
pub const DEFAULT_POISON_CRASHES: u32 = 2;

/// Finished tasks the task book keeps for queries; the oldest beyond this
/// are forgotten.
pub const DEFAULT_RETAIN_FINISHED: usize = 100_000;

/// Unfinished tasks the task book holds before it refuses submissions.
pub const DEFAULT_MAX_UNFINISHED_TASKS: u64 = 1_000_000;

/// The default backoff's delay before the second attempt, in seconds.
pub const DEFAULT_RETRY_INITIAL_S: f64 = 1.0;

/// The default backoff's growth per attempt.
pub const DEFAULT_RETRY_FACTOR: f64 = 2.0;

/// The default backoff's longest delay, in seconds.
pub const DEFAULT_RETRY_MAX_S: f64 = 300.0;

/// The backoff of tasks and agent types that do not say (the workflow retry
/// pattern of seed 000): exponential from 1 s, doubling, capped at 300 s.
pub const DEFAULT_RETRY: RetrySpec = RetrySpec::Exponential {
    initial_s: DEFAULT_RETRY_INITIAL_S,
    factor: DEFAULT_RETRY_FACTOR,
    max_s: DEFAULT_RETRY_MAX_S,
};

/// The delay, in seconds, of a linear backoff that names none when the
/// backoff it replaces is exponential.
pub const DEFAULT_LINEAR_RETRY_DELAY_S: f64 = 30.0;

/// Seconds a task waits for a provider's budget before its call goes to the
/// next provider of its fallback list, when the provider does not say.
pub const DEFAULT_PROVIDER_MAX_WAIT_S: u32 = 5;

/// Most HTTP connections a node holds open at once unless configured. A
/// node also never uses more than a quarter of its file-descriptor limit for
/// them, so tasks, journal files and cluster links always have descriptors.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 4096;

/// Seconds a client has to send a request's line and headers: ten.
pub const DEFAULT_HTTP_HEADER_TIMEOUT_S: u32 = 10;

/// Seconds a request body may go without sending data: thirty.
pub const DEFAULT_HTTP_BODY_TIMEOUT_S: u32 = 30;

/// Seconds a request may take from its headers to its answer: sixty. A
/// `?wait=` long-poll gets its wait on top.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT_S: u32 = 60;

/// The fewest attempts a pool is given per worker slot unless configured
/// (the floor of the adaptive credit): four, so a slot has its next tasks
/// at hand while the orchestrator journals the reports of the last ones and
/// the assignments that replace them (as a fixed credit, with a journal and
/// 3 slots, 2 gave about 4,400 no-op tasks/s over HTTP on the 2-core
/// development machine, 4 about 12,000 and 8 no more than 4). Tasks that run
/// long against a commit keep it.
pub const DEFAULT_SLOT_CREDIT: u32 = 4;

/// The most attempts a pool is given per worker slot unless configured:
/// sixty-four, reached by types whose tasks are short against the commit
/// latency (a journal's fsync, a replicated log's quorum round trip). With
/// three replicas journaled on one disk and 3 slots, a fixed credit of 4
/// gave about 2,900 no-op tasks/s, 16 about 9,700 and 64 about 21,000
/// (`herd bench throughput --replicas 3 --workers 1 --slot-credit N
/// --data-dir DIR`, 2-core development machine).
pub const DEFAULT_MAX_SLOT_CREDIT: u32 = 64;

/// Fails the build when `$value` lies outside `$range` (a `RangeInclusive`
/// const; its `contains` is not usable in const context).
macro_rules! assert_within {
    ($value:expr, $range:expr) => {
        const _: () = assert!(*$range.start() <= $value && $value <= *$range.end());
    };
}

assert_within!(DEFAULT_MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES_RANGE);
assert_within!(DEFAULT_MAX_BATCH_BYTES, MAX_BATCH_BYTES_RANGE);
assert_within!(DEFAULT_MAX_BATCH_TASKS, MAX_BATCH_TASKS_RANGE);
assert_within!(DEFAULT_MAX_HELD_BYTES, MAX_HELD_BYTES_RANGE);
assert_within!(DEFAULT_TIMEOUT_S, TIMEOUT_S_RANGE);
assert_within!(DEFAULT_MAX_ATTEMPTS, ATTEMPTS_RANGE);
assert_within!(DEFAULT_POISON_CRASHES, POISON_CRASHES_RANGE);
assert_within!(DEFAULT_RETAIN_FINISHED, RETAIN_FINISHED_RANGE);
assert_within!(DEFAULT_MAX_UNFINISHED_TASKS, MAX_UNFINISHED_TASKS_RANGE);
assert_within!(DEFAULT_RETRY_INITIAL_S, RETRY_DELAY_S_RANGE);
assert_within!(DEFAULT_RETRY_MAX_S, RETRY_DELAY_S_RANGE);
assert_within!(DEFAULT_RETRY_FACTOR, RETRY_FACTOR_RANGE);
assert_within!(DEFAULT_LINEAR_RETRY_DELAY_S, RETRY_DELAY_S_RANGE);
assert_within!(DEFAULT_PROVIDER_MAX_WAIT_S, PROVIDER_MAX_WAIT_S_RANGE);
assert_within!(DEFAULT_SLOT_CREDIT, SLOT_CREDIT_RANGE);
assert_within!(DEFAULT_MAX_SLOT_CREDIT, SLOT_CREDIT_RANGE);
assert_within!(DEFAULT_HTTP_MAX_CONNECTIONS, HTTP_MAX_CONNECTIONS_RANGE);
assert_within!(DEFAULT_HTTP_HEADER_TIMEOUT_S, HTTP_TIMEOUT_S_RANGE);
assert_within!(DEFAULT_HTTP_BODY_TIMEOUT_S, HTTP_TIMEOUT_S_RANGE);
assert_within!(DEFAULT_HTTP_REQUEST_TIMEOUT_S, HTTP_TIMEOUT_S_RANGE);
const _: () = assert!(DEFAULT_RETRY_INITIAL_S <= DEFAULT_RETRY_MAX_S);
