//! Journal sequencing, and the effects held back until they are durable.
//!
//! Every command applied to the task book gets a sequence number and is
//! journaled, or with raft replication proposed to the replicated log.
//! Anything another party could act on — a 202 for a submission, an
//! assignment, a report acknowledgement, a waiter's answer — is deferred
//! until the journal is durable (the log committed on a quorum) through
//! every command applied before it, so a crash or a failover can never
//! leave the world knowing something the orchestrator forgot. With a single
//! orchestrator and no data directory nothing is recorded and nothing waits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herd_protocol::messages::orchestrator::{OrchestratorReply, RequestFailure};
use herd_protocol::{MemberId, TaskAssignment};
use ractor::{ActorRef, RpcReplyPort};

use crate::journal::JournalWriter;
use crate::pool::PoolMsg;
use crate::replica::proposer::Proposer;
use crate::task_book::{Command, Effect};

/// Journal entries after which a snapshot is taken.
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 500_000;
/// Time after which a snapshot is taken if anything changed.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// Something that must wait until the journal is durable.
pub enum Deferred {
    /// Answer a request.
    Reply(RpcReplyPort<OrchestratorReply>, Box<OrchestratorReply>),
    /// Carry out the task book's effects.
    Effects(Vec<Effect>),
    /// Send attempts to a pool.
    Assignments(MemberId, Vec<TaskAssignment>),
    /// Tell a pool its reports are durable.
    Ack {
        /// The pool.
        pool: ActorRef<PoolMsg>,
        /// Highest durable report sequence.
        through: u64,
    },
}

/// Where recorded commands go.
enum Sink {
    /// Nowhere: released at once.
    None,
    /// The journal, encoded.
    Journal(JournalWriter),
    /// The replicated log.
    Replica(Proposer),
}

/// Sequencing and holding back. See the module docs.
pub struct Durability {
    sink: Sink,
    next_sequence: u64,
    durable_through: u64,
    buffered: Vec<(u64, Vec<u8>)>,
    /// Commands waiting to be proposed (raft replication).
    to_propose: Vec<(u64, Command)>,
    waiting: VecDeque<(u64, Deferred)>,
    since_snapshot: u64,
    last_snapshot: Instant,
}

impl Durability {
    /// No journal: everything is released at once.
    pub fn in_memory() -> Self {
        Durability {
            sink: Sink::None,
            next_sequence: 1,
            durable_through: 0,
            buffered: Vec::new(),
            to_propose: Vec::new(),
            waiting: VecDeque::new(),
            since_snapshot: 0,
            last_snapshot: Instant::now(),
        }
    }

    /// A journal whose last stored entry is `last_sequence`.
    pub fn journaled(writer: JournalWriter, last_sequence: u64) -> Self {
        Durability {
            sink: Sink::Journal(writer),
            next_sequence: last_sequence + 1,
            durable_through: last_sequence,
            ..Durability::in_memory()
        }
    }

    /// Commands go to the replicated log through `proposer`.
    pub fn replicated(proposer: Proposer) -> Self {
        Durability {
            sink: Sink::Replica(proposer),
            ..Durability::in_memory()
        }
    }

    /// True when commands are recorded (journaled or replicated) and
    /// effects wait for them.
    pub fn is_recorded(&self) -> bool {
        !matches!(self.sink, Sink::None)
    }

    /// With raft replication, the term this orchestrator leads.
    pub fn replicated_term(&self) -> Option<u64> {
        match &self.sink {
            Sink::Replica(proposer) => Some(proposer.term()),
            _ => None,
        }
    }

    /// Records a command (before the book applies it).
    pub fn record(&mut self, command: &Command) {
        let sequence = self.take_sequence();
        match &self.sink {
            Sink::None => {}
            Sink::Journal(_) => self.buffer(sequence, command),
            Sink::Replica(_) => self.to_propose.push((sequence, command.clone())),
        }
    }

    /// Records the command `command` builds; when nothing is recorded it is
    /// never built (a submission is cloned only to be recorded).
    pub fn record_with(&mut self, command: impl FnOnce() -> Command) {
        let sequence = self.take_sequence();
        match &self.sink {
            Sink::None => {}
            Sink::Journal(_) => self.buffer(sequence, &command()),
            Sink::Replica(_) => self.to_propose.push((sequence, command())),
        }
    }

    fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if matches!(self.sink, Sink::None) {
            self.durable_through = sequence;
        }
        sequence
    }

    fn buffer(&mut self, sequence: u64, command: &Command) {
        match herd_protocol::codec::encode(command) {
            Ok(bytes) => self.buffered.push((sequence, bytes)),
            // Commands are plain data (ids, strings, numbers, byte strings),
            // which the codec always encodes; failing to is a bug, not input.
            Err(error) => panic!("a task book command could not be encoded: {error}"),
        }
        self.since_snapshot += 1;
    }

    /// Holds `action` until everything recorded so far is durable; returns
    /// it if that is already the case.
    pub fn defer(&mut self, action: Deferred) -> Option<Deferred> {
        let needed = self.next_sequence - 1;
        if self.durable_through >= needed {
            Some(action)
        } else {
            self.waiting.push_back((needed, action));
            None
        }
    }

    /// True when entries wait to be written.
    pub fn has_buffered(&self) -> bool {
        !self.buffered.is_empty() || !self.to_propose.is_empty()
    }

    /// Hands buffered entries to the writer or the proposer.
    pub fn flush(&mut self) {
        match &self.sink {
            Sink::Journal(writer) if !self.buffered.is_empty() => {
                writer.append(std::mem::take(&mut self.buffered));
            }
            Sink::Replica(proposer) if !self.to_propose.is_empty() => {
                proposer.propose(std::mem::take(&mut self.to_propose));
            }
            _ => {}
        }
    }

    /// The writer made everything through `sequence` durable: returns the
    /// actions that may now run, in order.
    pub fn durable(&mut self, sequence: u64) -> Vec<Deferred> {
        self.durable_through = self.durable_through.max(sequence);
        let mut released = Vec::new();
        while self
            .waiting
            .front()
            .is_some_and(|(needed, _)| *needed <= self.durable_through)
        {
            released.push(self.waiting.pop_front().expect("checked").1);
        }
        released
    }

    /// The orchestrator is stopping: answers every request still held back
    /// with [`RequestFailure::Interrupted`] (its outcome is unknown: an entry
    /// already proposed may yet commit under the next leader) and drops the
    /// other held actions, which nobody may act on before their commit.
    /// Returns how many requests were answered.
    pub fn interrupt_held(&mut self) -> usize {
        let mut answered = 0;
        for (_, action) in self.waiting.drain(..) {
            if let Deferred::Reply(port, _) = action {
                let _ = port.send(OrchestratorReply::Failed(RequestFailure::Interrupted));
                answered += 1;
            }
        }
        answered
    }

    /// True when a journal snapshot is due (the replicated log takes its
    /// own snapshots).
    pub fn snapshot_due(&self) -> bool {
        matches!(self.sink, Sink::Journal(_))
            && (self.since_snapshot >= SNAPSHOT_EVERY_ENTRIES
                || (self.since_snapshot > 0 && self.last_snapshot.elapsed() >= SNAPSHOT_EVERY))
    }

    /// Queues a snapshot of the book covering everything recorded so far.
    /// The writer stores it after the entries already handed to it.
    pub fn snapshot(&mut self, book: Vec<u8>) {
        self.flush();
        if let Sink::Journal(writer) = &self.sink {
            writer.snapshot(self.next_sequence - 1, book);
        }
        self.since_snapshot = 0;
        self.last_snapshot = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_orchestrator_answers_its_held_requests_as_interrupted_and_drops_the_rest() {
        let mut durability = Durability::in_memory();
        let (first_tx, mut first) = ractor::concurrency::oneshot();
        let (second_tx, mut second) = ractor::concurrency::oneshot();
        let held = |port| Deferred::Reply(port, Box::new(OrchestratorReply::Pong));
        durability.waiting.push_back((3, held(first_tx.into())));
        durability
            .waiting
            .push_back((4, Deferred::Effects(Vec::new())));
        durability.waiting.push_back((5, held(second_tx.into())));

        assert_eq!(durability.interrupt_held(), 2);

        for answer in [first.try_recv(), second.try_recv()] {
            let answer = answer.expect("answered, not dropped");
            assert!(
                matches!(
                    answer,
                    OrchestratorReply::Failed(RequestFailure::Interrupted)
                ),
                "{answer:?}"
            );
        }
        assert!(durability.waiting.is_empty(), "nothing is held any more");
        assert!(
            durability.durable(5).is_empty(),
            "what was held is never released after the stop"
        );
    }
}
