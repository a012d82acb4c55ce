//! The bound on one submitted batch, checked on the node that receives it,
//! before it is forwarded.
//!
//! A batch is accepted all or none, so it reaches the orchestrator as one
//! request in one cluster frame; ractor_cluster drops the whole session on a
//! frame over 16 MiB, which would declare the node down and re-queue its
//! tasks. Splitting the batch into several requests would let part of it be
//! accepted and the rest refused, so instead a batch whose encoded size
//! passes `limits.max_batch_bytes` (at most 12 MiB, well under the frame
//! limit) or whose task count passes `limits.max_batch_tasks` is refused
//! here and never sent.

use herd_config::Limits;
use herd_protocol::TaskSpec;

/// A batch over `limits.max_batch_bytes` or `limits.max_batch_tasks`. Says
/// both limits and the batch's size, so the client can split it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the batch holds {tasks} tasks encoding to {bytes} bytes; a batch may hold at most {max_tasks} tasks (limits.max_batch_tasks) and {max_bytes} bytes (limits.max_batch_bytes), because it is accepted all or none and must reach the orchestrator in one cluster frame; split it into smaller batches"
)]
pub struct BatchTooLarge {
    /// Tasks in the batch.
    pub tasks: usize,
    /// The batch's encoded size, in bytes (what it would take on the wire).
    pub bytes: usize,
    /// The configured most tasks per batch.
    pub max_tasks: usize,
    /// The configured largest encoded batch, in bytes.
    pub max_bytes: usize,
}

/// Refuses `specs` if they are too many or encode to more than the limit.
pub(crate) fn check_batch(specs: &[TaskSpec], limits: &Limits) -> Result<(), BatchTooLarge> {
    // Counting first spares measuring a batch already refused by count.
    let too_many = specs.len() > limits.max_batch_tasks;
    let bytes = herd_protocol::codec::encoded_len(specs).unwrap_or(usize::MAX);
    if too_many || bytes > limits.max_batch_bytes {
        return Err(BatchTooLarge {
            tasks: specs.len(),
            bytes,
            max_tasks: limits.max_batch_tasks,
            max_bytes: limits.max_batch_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::JsonText;

    fn spec(payload_bytes: usize) -> TaskSpec {
        let text = format!("\"{}\"", "x".repeat(payload_bytes));
        TaskSpec::new("echo", JsonText::parse(text).unwrap())
    }

    #[test]
    fn a_batch_is_refused_over_either_limit_and_the_error_names_both() {
        let limits = Limits {
            max_batch_bytes: 10_000,
            max_batch_tasks: 3,
            ..Limits::default()
        };
        assert!(check_batch(&[spec(10), spec(10)], &limits).is_ok());
        let by_count = check_batch(&[spec(1), spec(1), spec(1), spec(1)], &limits).unwrap_err();
        assert_eq!(by_count.tasks, 4);
        let by_bytes = check_batch(&[spec(20_000)], &limits).unwrap_err();
        assert!(by_bytes.bytes > 20_000);
        let message = by_bytes.to_string();
        assert!(message.contains("10000 bytes") && message.contains("at most 3 tasks"));
    }
}
