//! The workers of the slots: started, replaced when they die or get stuck
//! (with backoff if they keep failing), retired and added as the pool is
//! resized, and their use reported.

use std::time::Instant;

use herd_protocol::messages::orchestrator::OrchestratorCast;
use herd_protocol::{FailureKind, Mailbox, Outcome, TaskReport, UnixMillis, WorkerId};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, info, warn};

use super::actor::{PoolLocal, PoolMsg, PoolState};
use super::slots::{Exited, Resized, RunningTask};
use super::worker::{Worker, WorkerArgs, WorkerMsg};

impl PoolState {
    /// Starts a worker for `slot`, unless the slot is out of service.
    pub(super) async fn start_worker(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
    ) -> Result<(), ActorProcessingErr> {
        let Some(generation) = self.slots.next_generation(slot) else {
            // Retired by a resize (e.g. while its stuck worker was being
            // replaced): it stays down until the pool grows again.
            return Ok(());
        };
        let args = WorkerArgs {
            slot,
            generation,
            pool: myself.clone(),
            handlers: self.handlers.clone(),
            max_result_bytes: self.max_result_bytes,
        };
        let (worker, _) = Actor::spawn_linked(None, Worker, args, myself.get_cell()).await?;
        self.slots.staff(slot, generation, worker);
        self.assign_backlog();
        Ok(())
    }

    /// Starts the worker of a slot whose restart was delayed.
    pub(super) async fn restart_slot(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        slot: WorkerId,
    ) -> Result<(), ActorProcessingErr> {
        // A slot retired while its restart was delayed stays down.
        if self.slots.is_unstaffed(slot) {
            self.start_worker(myself, slot).await?
        }
        Ok(())
    }

    /// Replaces a worker that stopped (at once, or later if it keeps
    /// failing) and reports the attempt it was running as crashed.
    pub(super) fn on_worker_exit(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        actor: ractor::ActorId,
        reason: Option<String>,
    ) {
        let Some(exited) = self.slots.worker_exited(&actor, Instant::now()) else {
            return;
        };
        if let Exited::Failed {
            slot,
            running,
            restart_after,
        } = exited
        {
            metrics::counter!("herd_worker_restarts_total").increment(1);
            let reason = reason.unwrap_or_else(|| "stopped".to_string());
            match running {
                Some(running) if running.cancelled => {
                    debug!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, "worker stopped for a cancelled task")
                }
                Some(running) => {
                    warn!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, %reason, "worker died while running a task; replacing it");
                    let report = failure_report(
                        &running,
                        slot,
                        FailureKind::Crash,
                        format!("worker {slot} crashed: {reason}"),
                    );
                    self.queue_report(myself, running.member, report);
                }
                None => warn!(%slot, %reason, "idle worker died; replacing it"),
            }
            match restart_after {
                // Out of service: its task is reported above; the slot itself
                // is no longer wanted.
                None => {}
                Some(delay) if delay.is_zero() => {
                    let _ = myself.cast(Mailbox::Local(PoolLocal::RestartSlot(slot)));
                }
                Some(delay) => {
                    warn!(%slot, delay_ms = delay.as_millis() as u64, "worker keeps failing; delaying its restart");
                    myself.send_after(delay, move || Mailbox::Local(PoolLocal::RestartSlot(slot)));
                }
            }
        }
        self.check_drained(myself);
    }

    /// Abandons workers still busy well past their task's time limit (their
    /// handler blocks its thread) and starts replacements.
    pub(super) async fn replace_stuck_workers(
        &mut self,
        myself: &ActorRef<PoolMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        for slot in self.slots.stuck(now) {
            let (running, worker) = self.slots.abandon(slot, now);
            if let Some(worker) = worker {
                worker.kill();
            }
            metrics::counter!("herd_worker_restarts_total").increment(1);
            if !running.cancelled {
                warn!(%slot, task_id = %running.task_id, agent_type = %running.agent_type, "worker did not stop at its task's time limit (its handler blocks); abandoning it and starting a replacement");
                let report = failure_report(
                    &running,
                    slot,
                    FailureKind::Timeout,
                    format!(
                        "the handler ignored its time limit; worker {slot} was abandoned and replaced"
                    ),
                );
                self.queue_report(myself, running.member, report);
            }
            // A new generation: anything the abandoned worker still sends is ignored.
            self.start_worker(myself, slot).await?;
        }
        Ok(())
    }

    /// Runs `workers` slots (at most the node's capacity): slots above the
    /// new count retire now if idle, else when their task ends. A draining
    /// pool keeps its size.
    pub(super) async fn resize(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        workers: u32,
    ) -> Result<(), ActorProcessingErr> {
        if self.drain.is_some() {
            return Ok(());
        }
        let from = self.slots.target();
        let Some(resized) = self.slots.resize(workers) else {
            return Ok(());
        };
        info!(from, to = self.slots.target(), "resizing the worker pool");
        match resized {
            Resized::Shrunk { retired } => {
                for (slot, worker) in retired {
                    stop_retired(slot, worker);
                }
                if self.slots.target() == 0 {
                    // No slot will free for prefetched attempts: give them back.
                    self.hand_back_backlog();
                }
            }
            Resized::Grown { unstaffed } => {
                for slot in unstaffed {
                    self.start_worker(myself, slot).await?;
                }
                self.slots.serve_lowest_first();
            }
        }
        metrics::gauge!("herd_pool_slots").set(f64::from(self.slots.target()));
        Ok(())
    }

    /// Stops the idle worker of a slot that is no longer in service.
    pub(super) fn retire(&mut self, slot: WorkerId) {
        let worker = self.slots.retire(slot);
        stop_retired(slot, worker);
    }

    /// Records slot use and sends resource use to the orchestrator.
    pub(super) fn send_stats(&mut self) {
        metrics::gauge!("herd_pool_workers", "state" => "busy").set(self.slots.busy() as f64);
        metrics::gauge!("herd_pool_workers", "state" => "idle").set(self.slots.idle() as f64);
        metrics::gauge!("herd_pool_slots").set(f64::from(self.slots.target()));
        let sample = self.probe.sample();
        let Some(registration) = self.registration.as_ref().filter(|r| r.welcomed) else {
            return;
        };
        let _ = registration.send(OrchestratorCast::PoolStats {
            member: registration.member.clone(),
            cpu_percent: sample.cpu_percent,
            memory_percent: sample.memory_percent,
            cores: sample.cores,
            memory_gb: sample.memory_gb,
        });
    }
}

fn stop_retired(slot: WorkerId, worker: Option<ActorRef<WorkerMsg>>) {
    if let Some(worker) = worker {
        worker.stop(Some("slot retired".to_string()));
    }
    debug!(%slot, "worker slot retired");
}

/// The report of an attempt the pool ended itself.
fn failure_report(
    running: &RunningTask,
    slot: WorkerId,
    kind: FailureKind,
    message: String,
) -> TaskReport {
    let now = UnixMillis::now();
    TaskReport {
        task_id: running.task_id,
        epoch: running.epoch,
        worker: slot,
        outcome: Outcome::Failed { kind, message },
        started_at: now,
        finished_at: now,
    }
}
