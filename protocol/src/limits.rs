//! The bounds herd accepts, each defined once.
//!
//! The config's range checks, the task book's validation, the HTTP API and
//! their error messages all read these constants, so a message never states a
//! bound other than the one checked. Defaults live next door, in
//! [`crate::defaults`], and are checked against these ranges at compile time.
//!
//! Payload sizes: ractor_cluster drops the whole session when a peer receives
//! a frame over 16 MiB, which would take every task on that link with it.
//! herd therefore caps single payloads and results well below that, and caps
//! batches so that a batch plus one maximal item still fits in a frame.

use std::ops::RangeInclusive;

/// One mebibyte, the unit payload and frame limits are stated in.
pub const MIB: usize = 1024 * 1024;

/// The largest payload limit an operator may configure: 7 MiB, so that a
/// task's view — its payload and its result, each up to the limit — still
/// crosses between nodes in one frame under ractor_cluster's 16 MiB limit,
/// with room for framing and the other fields.
pub const MAX_CONFIGURABLE_PAYLOAD_BYTES: usize = 7 * MIB;

/// The values `limits.max_payload_bytes` may take: 1 byte up to
/// [`MAX_CONFIGURABLE_PAYLOAD_BYTES`].
pub const MAX_PAYLOAD_BYTES_RANGE: RangeInclusive<usize> = 1..=MAX_CONFIGURABLE_PAYLOAD_BYTES;

/// ractor_cluster's inbound frame limit (its `DEFAULT_MAX_INBOUND_FRAME_SIZE`).
pub const CLUSTER_FRAME_LIMIT_BYTES: usize = 16 * MIB;

/// Batches of assignments or reports stop growing once their payload bytes
/// reach this budget, so `budget + one maximal item` stays under the frame
/// limit.
pub const BATCH_PAYLOAD_BUDGET_BYTES: usize = 4 * MIB;

/// Batches also stop at this many items, to bound per-message latency.
pub const MAX_BATCH_ITEMS: usize = 1024;

const _: () = assert!(
    BATCH_PAYLOAD_BUDGET_BYTES + MAX_CONFIGURABLE_PAYLOAD_BYTES + MIB < CLUSTER_FRAME_LIMIT_BYTES
);
// One task view (payload and result at the limit) forwarded to another node.
const _: () = assert!(2 * MAX_CONFIGURABLE_PAYLOAD_BYTES + MIB < CLUSTER_FRAME_LIMIT_BYTES);

/// Splits items into batches bounded by [`MAX_BATCH_ITEMS`] and by
/// [`BATCH_PAYLOAD_BUDGET_BYTES`] of payload (`size` of each item), so that
/// no cluster frame nears the frame limit. An item larger than the budget
/// travels alone.
pub fn chunk_by_budget<T>(
    items: impl IntoIterator<Item = T>,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for item in items {
        let item_size = size(&item);
        if !batch.is_empty()
            && (batch.len() >= MAX_BATCH_ITEMS || bytes + item_size > BATCH_PAYLOAD_BUDGET_BYTES)
        {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += item_size;
        batch.push(item);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// The most bytes an operator may let one submitted batch encode to: 12 MiB.
/// A batch is accepted all or none, so it travels to the orchestrator as one
/// cluster frame and cannot be split; this leaves 4 MiB of the frame limit
/// for the request's envelope.
pub const MAX_CONFIGURABLE_BATCH_BYTES: usize = 12 * MIB;

/// The values `limits.max_batch_bytes` may take: 1 KiB up to
/// [`MAX_CONFIGURABLE_BATCH_BYTES`].
pub const MAX_BATCH_BYTES_RANGE: RangeInclusive<usize> = 1024..=MAX_CONFIGURABLE_BATCH_BYTES;

const _: () = assert!(MAX_CONFIGURABLE_BATCH_BYTES + 4 * MIB <= CLUSTER_FRAME_LIMIT_BYTES);

/// The values `limits.max_batch_tasks` may take: tasks in one submitted batch.
pub const MAX_BATCH_TASKS_RANGE: RangeInclusive<usize> = 1..=100_000;

/// The values `limits.max_held_bytes` may take: the payload and result bytes
/// the task book may hold, from 16 MiB (more than one batch) up to 1 TiB.
pub const MAX_HELD_BYTES_RANGE: RangeInclusive<u64> = (16 * MIB as u64)..=(1 << 40);

/// Range of one tenant's byte budget (`limits.tenant_max_held_bytes`,
/// `tenants.NAME.max_held_bytes`): 1 MiB to 1 TiB.
pub const TENANT_MAX_HELD_BYTES_RANGE: RangeInclusive<u64> = (MIB as u64)..=(1 << 40);

const _: () = assert!(MAX_CONFIGURABLE_BATCH_BYTES as u64 <= *MAX_HELD_BYTES_RANGE.start());

/// A page of tasks (`GET /v1/tasks`, `GET /v1/dead-letters`) stops growing
/// before its estimated encoded size passes this budget, so a page forwarded
/// between nodes stays well under the frame limit. A single task larger than
/// the budget still comes alone in its page.
pub const PAGE_BYTE_BUDGET: usize = 8 * MIB;

/// The fewest characters a cluster cookie may have. The cookie is the only
/// thing between a stranger and running code on the cluster, so a short
/// guessable one is refused; 32+ random characters are advised.
pub const MIN_COOKIE_CHARS: usize = 16;

/// The HTTP API's connection cap may be set to: one connection up to a
/// million (the file-descriptor limit lowers it further at run time).
pub const HTTP_MAX_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// The seconds the HTTP API's header, body and request timeouts may be set
/// to: one second to one hour.
pub const HTTP_TIMEOUT_S_RANGE: RangeInclusive<u32> = 1..=3_600;

/// The per-attempt time limits, in seconds, a task, an agent type or the
/// config may set: one second to one day.
pub const TIMEOUT_S_RANGE: RangeInclusive<u32> = 1..=86_400;

/// The longest per-attempt time limit: the end of [`TIMEOUT_S_RANGE`].
pub const MAX_TIMEOUT_S: u32 = *TIMEOUT_S_RANGE.end();

/// The attempts a task, an agent type or the config may ask for.
pub const ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;

/// The most attempts a task may get: the end of [`ATTEMPTS_RANGE`].
pub const MAX_ATTEMPTS: u32 = *ATTEMPTS_RANGE.end();

/// The longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// The delays, in seconds, a backoff may name (its initial, longest or fixed
/// delay): none up to one day. Retry delays are also clamped to it.
pub const RETRY_DELAY_S_RANGE: RangeInclusive<f64> = 0.0..=86_400.0;

/// The growth per attempt an exponential backoff may use.
pub const RETRY_FACTOR_RANGE: RangeInclusive<f64> = 1.0..=10.0;

/// The worker crashes after which a task is dead as poison.
pub const POISON_CRASHES_RANGE: RangeInclusive<u32> = 1..=100;

/// The finished tasks the task book may be told to keep for queries.
pub const RETAIN_FINISHED_RANGE: RangeInclusive<usize> = 0..=10_000_000;

/// The unfinished tasks the task book may be told to hold before it refuses
/// submissions.
pub const MAX_UNFINISHED_TASKS_RANGE: RangeInclusive<u64> = 1..=100_000_000;

/// The fewest worker slots the cluster may be told to keep (seed 004).
pub const MIN_WORKERS_RANGE: RangeInclusive<u32> = 1..=100;

/// The most worker slots the cluster may be told to grow to (seed 004).
pub const MAX_WORKERS_RANGE: RangeInclusive<u32> = 1..=1000;

/// The attempts a pool may be given per worker slot (`scaling.slot_credit`,
/// the floor, and `scaling.max_slot_credit`, the ceiling): one runs, the
/// others wait in the pool's backlog and start the moment the slot frees. 1
/// means a slot is only re-filled by the orchestrator.
pub const SLOT_CREDIT_RANGE: RangeInclusive<u32> = 1..=128;

/// The weights an agent type may be given (shares of the worker slots,
/// normalised across types).
pub const WEIGHT_RANGE: RangeInclusive<f64> = 0.0..=1.0;

/// The utilizations (busy and queued work over slots) the scale-up and
/// scale-down thresholds may be set to.
pub const SCALE_THRESHOLD_RANGE: RangeInclusive<f64> = 0.0..=1.0;

/// The consecutive failures after which a circuit opens (0 disables it),
/// for agent types and providers alike.
pub const CIRCUIT_FAILURES_RANGE: RangeInclusive<u32> = 0..=10_000;

/// The trial tasks or calls that must succeed to close a circuit again.
pub const CIRCUIT_HALF_OPEN_TRIALS_RANGE: RangeInclusive<u32> = 1..=1_000;

/// The seconds an open circuit may wait before its trials.
pub const CIRCUIT_RECOVERY_S_RANGE: RangeInclusive<f64> = 0.01..=86_400.0;

/// The requests per minute a provider may be given (cluster-wide).
pub const PROVIDER_REQUESTS_PER_MINUTE_RANGE: RangeInclusive<u32> = 1..=1_000_000;

/// The tokens per minute a provider may be given (cluster-wide).
pub const PROVIDER_TOKENS_PER_MINUTE_RANGE: RangeInclusive<u64> = 1..=10_000_000_000;

/// The calls a provider may be given in flight at once (cluster-wide).
pub const PROVIDER_MAX_CONCURRENT_RANGE: RangeInclusive<u32> = 1..=10_000;

/// The seconds a task may wait for a provider's budget before its call goes
/// to the next provider of its fallback list.
pub const PROVIDER_MAX_WAIT_S_RANGE: RangeInclusive<u32> = 0..=3_600;

/// The sampling temperatures an `llm` agent type or task may ask for.
pub const LLM_TEMPERATURE_RANGE: RangeInclusive<f64> = 0.0..=2.0;

/// The completion lengths, in tokens, an `llm` agent type or task may ask for.
pub const LLM_MAX_TOKENS_RANGE: RangeInclusive<u32> = 1..=1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_byte_budgets() {
        let sizes = vec![3 * 1024 * 1024, 3 * 1024 * 1024, 10, 10];
        let batches = chunk_by_budget(sizes, |s| *s);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 3]);
        let many: Vec<usize> = vec![1; MAX_BATCH_ITEMS * 2 + 1];
        assert_eq!(chunk_by_budget(many, |s| *s).len(), 3);
        assert!(chunk_by_budget(Vec::<usize>::new(), |s| *s).is_empty());
    }
}
