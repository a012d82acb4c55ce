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
