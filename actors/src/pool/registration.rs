//! The pool's registration with the orchestrator: made whenever the
//! orchestrator or this node's incarnation changes, repeated until welcomed,
//! and carrying what the pool runs and has not had acknowledged, so the
//! orchestrator can tell which of its attempts were lost.

use herd_protocol::messages::orchestrator::{OrchestratorCast, PoolRegistration, RunningAttempt};
use herd_protocol::{Mailbox, MemberId};
use ractor::{ActorRef, MessagingErr};
use tracing::{debug, info};

use super::actor::{PoolMsg, PoolState};
use crate::orchestrator::{OrchestratorMsg, find_orchestrator};

/// A registration with the orchestrator, answered or not.
#[derive(Debug)]
pub(super) struct Registration {
    /// The orchestrator's node.
    pub orchestrator: MemberId,
    /// The orchestrator actor; once it has stopped, the registration is void.
    pub actor: ActorRef<OrchestratorMsg>,
    /// The incarnation of this node the pool registered as.
    pub member: MemberId,
    /// The orchestrator answered: it now accepts reports and sends work.
    pub welcomed: bool,
}

impl Registration {
    /// Sends `message` to the orchestrator registered with. An error means
    /// the orchestrator's actor is gone (boxed: it carries the message back).
    pub(super) fn send(
        &self,
        message: OrchestratorCast,
    ) -> Result<(), Box<MessagingErr<OrchestratorMsg>>> {
        self.actor.cast(Mailbox::Cast(message)).map_err(Box::new)
    }
}

impl PoolState {
    /// Registers with the cluster's orchestrator whenever the orchestrator or
    /// this node's incarnation changes, or the orchestrator went away.
    pub(super) fn refresh_registration(&mut self) {
        let view = self.view.borrow().clone();
        let local = view.local.member.clone();
        if local != self.last_member {
            info!(old = %self.last_member, new = %local, "this node rejoined under a new incarnation; abandoning attempts of the old one");
            self.abandon_attempts_of_old_incarnations(&local);
            self.last_member = local.clone();
        }
        let target = view
            .orchestrator
            .clone()
            .filter(|member| view.is_alive(member));
        let valid = self.registration.as_ref().is_some_and(|r| {
            Some(&r.orchestrator) == target.as_ref()
                && r.member == local
                && r.actor.get_status() != ractor::ActorStatus::Stopped
        });
        if !valid && self.registration.take().is_some() {
            // What was in flight to it may be lost.
            self.outbox.resend_all();
        }
        if self.registration.as_ref().is_some_and(|r| r.welcomed) {
            return;
        }
        let Some(target) = target else {
            return;
        };
        if self.registration.is_none() {
            let Some(actor) = find_orchestrator(&view) else {
                return;
            };
            info!(orchestrator = %target, as_member = %local, "registering with the orchestrator");
            self.registration = Some(Registration {
                orchestrator: target,
                actor,
                member: local,
                welcomed: false,
            });
        }
        self.register();
    }

    fn abandon_attempts_of_old_incarnations(&mut self, current: &MemberId) {
        // Their tasks were re-queued when the old incarnation was declared
        // down; finishing them would only duplicate work.
        for (_, worker) in self
            .slots
            .cancel_where(|r| &r.member != current && !r.cancelled)
        {
            if let Some(worker) = worker {
                worker.kill();
            }
        }
        self.backlog.retain(|(member, _)| member == current);
    }

    fn register(&self) {
        let Some(registration) = &self.registration else {
            return;
        };
        let member = &registration.member;
        let running = self
            .slots
            .running_attempts_of(member)
            .chain(
                self.backlog
                    .iter()
                    .filter(|(assigned_to, _)| assigned_to == member)
                    .map(|(_, a)| RunningAttempt {
                        task_id: a.task_id,
                        epoch: a.epoch,
                        worker: None,
                    }),
            )
            .collect();
        let message = PoolRegistration {
            member: member.clone(),
            workers: self.slots.target(),
            capacity: self.slots.capacity(),
            agent_types: self.handlers.agent_types().cloned().collect(),
            running,
            unacked: self.outbox.unacked_of(member).collect(),
            draining: self.drain.is_some(),
        };
        if let Err(error) = registration.send(OrchestratorCast::PoolRegistered(message)) {
            debug!(%error, "registration not delivered; will retry");
        }
    }

    /// Takes the orchestrator's answer to a registration; reports waiting
    /// for it go out.
    pub(super) fn on_welcome(&mut self, myself: &ActorRef<PoolMsg>, orchestrator: MemberId) {
        match self.registration.as_mut() {
            Some(registration) if registration.orchestrator == orchestrator => {
                if !registration.welcomed {
                    info!(orchestrator = %orchestrator, "registered with the orchestrator");
                }
                registration.welcomed = true;
            }
            _ => return,
        }
        if self.outbox.has_unsent() {
            self.schedule_flush(myself);
        }
    }
}
