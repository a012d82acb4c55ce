//! Draining (SIGTERM, or the orchestrator's request): no new work, running
//! attempts may finish within a grace period and are then handed back, the
//! last reports are sent, and the requesters hear once they are acknowledged
//! (or after [`DRAIN_ACK_WAIT`]). The actor side of [`Drain`].

use std::time::Duration;

use herd_protocol::messages::orchestrator::OrchestratorCast;
use herd_protocol::{AssignmentEpoch, Mailbox, MemberId, TaskId};
use ractor::ActorRef;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::actor::{PoolLocal, PoolMsg, PoolState};
use super::drain::Drain;
use crate::runtime::NodeEvent;

/// After a drain, how long the pool waits for its last reports to be
/// acknowledged before it lets the node stop.
const DRAIN_ACK_WAIT: Duration = Duration::from_secs(5);

impl PoolState {
    /// Starts a drain, or joins the one under way. A request from this node
    /// is answered on `done`; one from the orchestrator (no `done`) tells the
    /// node when drained.
    pub(super) fn start_drain(
        &mut self,
        myself: &ActorRef<PoolMsg>,
        grace: Duration,
        done: Option<oneshot::Sender<()>>,
    ) {
        if let Some(drain) = self.drain.as_mut() {
            drain.join(done);
        } else {
            info!(
                running = self.slots.wanted_attempts(),
                grace_s = grace.as_secs_f64(),
                "draining: no new work; running tasks may finish within the grace period"
            );
            self.drain = Some(Drain::new(done));
            if let Some(registration) = &self.registration {
                let _ = registration.send(OrchestratorCast::PoolDraining {
                    member: registration.member.clone(),
                });
            }
            self.hand_back_backlog();
            myself.send_after(grace, || Mailbox::Local(PoolLocal::DrainDeadline));
        }
        self.check_drained(myself);
    }

    /// Settles the drain once no attempt runs any more.
    pub(super) fn check_drained(&mut self, myself: &ActorRef<PoolMsg>) {
        let attempts_running = self.slots.wanted_attempts() > 0;
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        if !drain.settle(attempts_running) {
            return;
        }
        self.flush();
        if self.outbox.is_empty() {
            self.finish_drain();
        } else {
            myself.send_after(DRAIN_ACK_WAIT, || {
                Mailbox::Local(PoolLocal::DrainAckDeadline)
            });
        }
    }

    /// Ends the grace period: attempts still running are stopped and handed
    /// back to the orchestrator.
    pub(super) fn drain_deadline(&mut self, myself: &ActorRef<PoolMsg>) {
        if self.drain.as_ref().is_none_or(Drain::is_settled) {
            return;
        }
        let handed: Vec<(MemberId, (TaskId, AssignmentEpoch))> = self
            .slots
            .cancel_where(|r| !r.cancelled)
            .into_iter()
            .map(|(running, worker)| {
                if let Some(worker) = worker {
                    worker.kill();
                }
                (running.member.clone(), (running.task_id, running.epoch))
            })
            .collect();
        info!(
            handed_back = handed.len(),
            "drain grace period over; handing back unfinished tasks"
        );
        for (member, attempt) in handed {
            self.hand_back(member, vec![attempt]);
        }
        self.check_drained(myself);
    }

    /// Gives attempts of incarnation `member` back to the orchestrator to run
    /// elsewhere.
    /// Hands every waiting (prefetched) attempt back to the orchestrator,
    /// one message per incarnation it was assigned to.
    pub(super) fn hand_back_backlog(&mut self) {
        let mut by_member: Vec<(MemberId, Vec<(TaskId, AssignmentEpoch)>)> = Vec::new();
        for (member, assignment) in std::mem::take(&mut self.backlog) {
            let attempt = (assignment.task_id, assignment.epoch);
            match by_member.iter_mut().find(|(m, _)| *m == member) {
                Some((_, attempts)) => attempts.push(attempt),
                None => by_member.push((member, vec![attempt])),
            }
        }
        for (member, attempts) in by_member {
            self.hand_back(member, attempts);
        }
    }

    pub(super) fn hand_back(&mut self, member: MemberId, attempts: Vec<(TaskId, AssignmentEpoch)>) {
        // Reports first, so the orchestrator sees them before the hand-back.
        self.flush();
        if let Some(registration) = &self.registration {
            let _ = registration.send(OrchestratorCast::HandBack { member, attempts });
        }
    }

    /// Ends the drain: answers every requester and, if the orchestrator asked
    /// for it, tells the node.
    pub(super) fn finish_drain(&mut self) {
        let Some(finished) = self.drain.as_mut().and_then(Drain::finish) else {
            return;
        };
        if !self.outbox.is_empty() {
            warn!(
                unacknowledged = self.outbox.len(),
                "drained with reports the orchestrator has not acknowledged; their tasks may run again"
            );
        }
        info!("drained");
        for done in finished.done {
            let _ = done.send(());
        }
        if finished.tell_node {
            let _ = self.events.send(NodeEvent::Drained);
        }
    }
}
