//! The leader's writes into the replicated log: the orchestrator's commands,
//! in the order it applied them, grouped into log entries (group commit),
//! and the news of which of them are committed.
//!
//! One proposer serves one orchestrator for one term. It is the Raft
//! counterpart of the journal writer: the orchestrator hands it commands
//! with their sequence numbers, and it reports
//! [`WriterEvent::Durable`] once the entry holding a sequence is committed
//! on a quorum and applied to this node's replica, or
//! [`WriterEvent::Failed`] once an entry can no longer commit under this
//! term (leadership lost), after which it proposes nothing more.
//!
//! Proposals are pipelined, but only [`groups_in_flight`] *groups* at a
//! time: a group is everything the orchestrator applied while the groups
//! before it were replicating, proposed together. That bound is the group
//! commit: one log write (an fsync with a data directory) and one append
//! per follower carry a whole group, instead of one tiny entry per
//! orchestrator turn each paying its own. A group is cut into entries of
//! at most [`MAX_ENTRY_BYTES`] of encoded commands, because openraft 0.9
//! times an append out after one heartbeat interval (100 ms): a follower
//! must decode and store any one entry well within that, even loaded (an
//! entry near 1 MiB did not, and a new leader never heard its followers).

use std::collections::VecDeque;
use std::time::Instant;

use openraft::Raft;
use openraft::ServerState;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::types::{CommandBatch, ReplicaTypes};
use crate::journal::WriterEvent;
use crate::task_book::Command;

/// Largest entry the proposer makes (encoded commands). A single command
/// larger than this goes in an entry of its own; the codec's frame limit
/// and the book's payload limit bound it.
pub const MAX_ENTRY_BYTES: usize = 128 * 1024;

/// Groups proposed and not yet committed at most. With a data directory
/// every log write costs an fsync on each replica, so one at a time: each
/// carries everything applied during the previous one's commit (as the
/// single orchestrator's journal does). In memory a group costs only its
/// round trip, so two overlap, one replicating while the next fills.
/// (`herd bench throughput --replicas 3`: one in flight gave the journaled
/// one-replica group 5,900–7,100 tasks/s against 4,000–5,500 with two, and
/// two gave three in-memory replicas 44,000–54,000 against 40,000.)
pub fn groups_in_flight(durable: bool) -> usize {
    if durable { 1 } else { 2 }
}

/// Commands in sequence order, each with its sequence number.
pub type Sequenced = Vec<(u64, Command)>;

/// Hands an orchestrator's commands to Raft. Dropping it lets the entries
/// already handed over finish; [`ProposerDone`] tells when they have.
pub struct Proposer {
    commands: mpsc::UnboundedSender<Sequenced>,
    term: u64,
}

/// Resolves once every entry a proposer proposed is resolved (committed
/// and applied here, or failed): a new orchestrator copies the book only
/// after that, so nothing its predecessor proposed lands after the copy.
pub struct ProposerDone(JoinHandle<()>);

impl ProposerDone {
    /// Waits for it.
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

impl Proposer {
    /// A proposer for the leader of `term` with at most `in_flight`
    /// groups uncommitted (see [`groups_in_flight`]); `notify` hears of
    /// commits and of the failure that ends it (on a tokio task).
    pub fn start(
        raft: Raft<ReplicaTypes>,
        term: u64,
        in_flight: usize,
        notify: impl Fn(WriterEvent) + Send + Sync + 'static,
    ) -> (Proposer, ProposerDone) {
        let (commands, inbox) = mpsc::unbounded_channel();
        let done = tokio::spawn(run(raft, term, in_flight.max(1), inbox, notify));
        (Proposer { commands, term }, ProposerDone(done))
    }

    /// The term it proposes under.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Queues commands (in sequence order, after every earlier call's).
    pub fn propose(&self, commands: Sequenced) {
        let _ = self.commands.send(commands);
    }
}

/// One proposed entry waiting to commit.
struct InFlight {
    through: u64,
    commands: usize,
    proposed: Instant,
    answer: tokio::sync::oneshot::Receiver<openraft::raft::ClientWriteResult<ReplicaTypes>>,
    /// Shared by the entries of one group; returned once the last of them
    /// is resolved, letting the next group go.
    _slot: std::sync::Arc<tokio::sync::OwnedSemaphorePermit>,
}

async fn run(
    raft: Raft<ReplicaTypes>,
    term: u64,
    in_flight: usize,
    mut inbox: mpsc::UnboundedReceiver<Sequenced>,
    notify: impl Fn(WriterEvent) + Send + Sync + 'static,
) {
    let notify = std::sync::Arc::new(notify);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight));
    let (in_flight_tx, mut in_flight_rx) = mpsc::unbounded_channel::<InFlight>();
    // Answers are awaited in proposal order on a task of their own, so the
    // next entry is proposed while earlier ones replicate.
    let waiter = {
        let notify = notify.clone();
        tokio::spawn(async move {
            while let Some(entry) = in_flight_rx.recv().await {
                match entry.answer.await {
                    Ok(Ok(_)) => notify(WriterEvent::Durable {
                        through: entry.through,
                        entries: entry.commands,
                        commit: entry.proposed.elapsed(),
                    }),
                    Ok(Err(error)) => {
                        notify(WriterEvent::Failed(format!(
                            "an entry of term {term} did not commit: {error}"
                        )));
                        return;
                    }
                    Err(_) => {
                        notify(WriterEvent::Failed(format!(
                            "the replica stopped before an entry of term {term} committed"
                        )));
                        return;
                    }
                }
            }
        })
    };
    let mut pending: VecDeque<(u64, Command)> = VecDeque::new();
    'proposing: while let Some(first) = inbox.recv().await {
        pending.extend(first);
        // Wait for room in the pipeline, then take everything that queued
        // meanwhile: this group (group commit).
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break 'proposing;
        };
        let slot = std::sync::Arc::new(slot);
        while let Ok(more) = inbox.try_recv() {
            pending.extend(more);
        }
        while let Some((through, batch)) = next_entry(&mut pending) {
            if !leads_in(&raft, term) {
                notify(WriterEvent::Failed(format!(
                    "this node no longer leads term {term}"
                )));
                break 'proposing;
            }
            let commands = batch.len();
            let proposed = Instant::now();
            match raft
                .client_write_ff(CommandBatch {
                    term,
                    commands: batch,
                })
                .await
            {
                Ok(answer) => {
                    let _ = in_flight_tx.send(InFlight {
                        through,
                        commands,
                        proposed,
                        answer,
                        _slot: slot.clone(),
                    });
                }
                Err(error) => {
                    notify(WriterEvent::Failed(format!("the replica stopped: {error}")));
                    break 'proposing;
                }
            }
        }
    }
    drop(in_flight_tx);
    let _ = waiter.await;
    debug!(term, "proposer finished");
}

/// Whether this node's replica still leads in `term`.
fn leads_in(raft: &Raft<ReplicaTypes>, term: u64) -> bool {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    metrics.state == ServerState::Leader && metrics.current_term == term
}

/// Takes the next entry's commands off `pending`: as many as fit
/// [`MAX_ENTRY_BYTES`], at least one. Returns the last one's sequence.
fn next_entry(pending: &mut VecDeque<(u64, Command)>) -> Option<(u64, Vec<Command>)> {
    let mut bytes = 0;
    let mut through = None;
    let mut commands = Vec::new();
    while let Some((_, command)) = pending.front() {
        let size = herd_protocol::codec::encoded_len(command).unwrap_or(usize::MAX);
        if !commands.is_empty() && bytes + size > MAX_ENTRY_BYTES {
            break;
        }
        bytes = bytes.saturating_add(size);
        let (sequence, command) = pending.pop_front().expect("checked");
        through = Some(sequence);
        commands.push(command);
    }
    through.map(|through| (through, commands))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::UnixMillis;

    fn tick(n: u64) -> (u64, Command) {
        (
            n,
            Command::Tick {
                now: UnixMillis(1_700_000_000_000),
            },
        )
    }

    #[test]
    fn entries_are_cut_by_encoded_size_and_keep_their_last_sequence() {
        let one = herd_protocol::codec::encoded_len(&tick(1).1).unwrap();
        let per_entry = MAX_ENTRY_BYTES / one;
        let mut pending: VecDeque<_> = (1..=(per_entry as u64 * 2 + 3)).map(tick).collect();
        let (through, first) = next_entry(&mut pending).unwrap();
        assert_eq!(first.len(), per_entry);
        assert_eq!(through, per_entry as u64);
        let (_, second) = next_entry(&mut pending).unwrap();
        assert_eq!(second.len(), per_entry);
        let (through, third) = next_entry(&mut pending).unwrap();
        assert_eq!((through, third.len()), (per_entry as u64 * 2 + 3, 3));
        assert!(next_entry(&mut pending).is_none());
    }
}
