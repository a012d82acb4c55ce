//! The journaled book: every command is recorded (with a data directory,
//! journaled) before the book applies it, and whatever others could act on
//! is released only once the journal is durable through it (see
//! `durability`). Also the journal writer's events and snapshots.

use std::time::Instant;

use herd_protocol::Mailbox;
use herd_protocol::messages::pool::PoolCast;
use ractor::{ActorProcessingErr, ActorRef};
use tracing::{debug, error};

use super::OrchestratorMsg;
use super::actor::OrchestratorLocal;
use super::durability::Deferred;
use super::state::OrchestratorState;
use crate::journal::WriterEvent;
use crate::task_book::{Command, Effect};

impl OrchestratorState {
    /// Journals and applies one command.
    pub(super) fn apply(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        command: Command,
    ) -> Vec<Effect> {
        self.durability.record(&command);
        self.schedule_flush(myself);
        self.book.apply(command)
    }

    /// Journals and applies one command, and carries out its effects once
    /// they are durable.
    pub(super) fn apply_and_release(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        command: Command,
    ) {
        let effects = self.apply(myself, command);
        self.release(myself, Deferred::Effects(effects));
    }

    /// Journals a command whose typed answer the caller then takes from the
    /// book; `command` is built only when a journal is kept.
    pub(super) fn record_with(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        command: impl FnOnce() -> Command,
    ) {
        self.durability.record_with(command);
        self.schedule_flush(myself);
    }

    fn schedule_flush(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        if self.durability.has_buffered() && !self.flush_scheduled {
            self.flush_scheduled = true;
            let _ = myself.cast(Mailbox::Local(OrchestratorLocal::FlushJournal));
        }
    }

    /// Runs `action` once everything applied so far is durable.
    pub(super) fn release(&mut self, myself: &ActorRef<OrchestratorMsg>, action: Deferred) {
        if let Some(action) = self.durability.defer(action) {
            self.run(myself, action);
        }
    }

    fn run(&mut self, myself: &ActorRef<OrchestratorMsg>, action: Deferred) {
        match action {
            Deferred::Reply(port, reply) => {
                let _ = port.send(*reply);
            }
            Deferred::Effects(effects) => self.carry_out(myself, effects),
            Deferred::Assignments(member, assignments) => {
                self.send_assignments(&member, assignments)
            }
            Deferred::Ack { pool, through } => {
                let _ = pool.cast(Mailbox::Cast(PoolCast::ReportsAck { through }));
            }
        }
    }

    /// Hands buffered entries to the writer, and a snapshot when one is due.
    pub(super) fn flush_journal(&mut self) -> Result<(), ActorProcessingErr> {
        self.flush_scheduled = false;
        self.durability.flush();
        if self.durability.snapshot_due() {
            let started = Instant::now();
            let snapshot = crate::journal::encode_snapshot(&self.book)
                .map_err(|e| format!("the task book could not be encoded: {e}"))?;
            debug!(
                bytes = snapshot.len(),
                encode_ms = started.elapsed().as_millis() as u64,
                "journal snapshot queued"
            );
            self.durability.snapshot(snapshot);
        }
        Ok(())
    }

    /// What the journal writer reports: entries made durable (releasing what
    /// waited for them), a snapshot stored, or a failure, which stops the
    /// orchestrator so that nothing unrecorded is ever acknowledged.
    pub(super) fn on_journal_event(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        event: WriterEvent,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            WriterEvent::Durable {
                through,
                entries,
                commit,
            } => {
                if self.durability.replicated_term().is_some() {
                    metrics::histogram!("herd_raft_commit_seconds").record(commit.as_secs_f64());
                    metrics::counter!("herd_raft_entries_total").increment(entries as u64);
                } else {
                    metrics::histogram!("herd_journal_commit_seconds").record(commit.as_secs_f64());
                    metrics::counter!("herd_journal_entries_total").increment(entries as u64);
                }
                self.slot_credit.observe_commit(commit);
                for action in self.durability.durable(through) {
                    self.run(myself, action);
                }
            }
            WriterEvent::Snapshotted { through, bytes } => {
                metrics::gauge!("herd_journal_snapshot_bytes").set(bytes as f64);
                debug!(through, bytes, "journal snapshot stored");
            }
            WriterEvent::Failed(reason) if self.durability.replicated_term().is_some() => {
                // Leadership lost: this orchestrator's term is over. Whatever
                // it held back is never released; the next leader goes on
                // from the committed log.
                tracing::warn!(%reason, "the orchestrator's term is over; stopping it");
                myself.stop(Some(format!("term over: {reason}")));
            }
            WriterEvent::Failed(reason) => {
                error!(%reason, "the orchestrator journal failed; stopping the orchestrator so no unrecorded state is acknowledged");
                return Err(format!("journal failure: {reason}").into());
            }
        }
        Ok(())
    }
}
