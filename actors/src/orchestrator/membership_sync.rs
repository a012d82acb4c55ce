//! Keeping the pools in step with the cluster: registrations (a new
//! incarnation replaces the old; attempts a restarted pool lost are
//! retried), drains and hand-backs, and view changes (the attempts of a node
//! that is gone are re-queued; after a restart, nodes get a grace period to
//! re-register first).

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use herd_protocol::messages::orchestrator::{MemberState, PoolRegistration};
use herd_protocol::messages::pool::PoolCast;
use herd_protocol::{AgentType, AssignmentEpoch, Mailbox, MemberId, TaskId, UnixMillis};
use ractor::ActorRef;
use tracing::{debug, info, warn};

use super::OrchestratorMsg;
use super::pools::PoolEntry;
use super::process_groups::find_pool;
use super::state::OrchestratorState;
use crate::task_book::Command;

impl OrchestratorState {
    /// Takes a pool's (re-)registration.
    pub(super) fn on_pool_registered(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        registration: PoolRegistration,
    ) {
        let member = registration.member.clone();
        let view = self.view.borrow().clone();
        let Some(actor) = find_pool(&view, &member) else {
            debug!(pool = %member, "registration from a pool not yet in the view; it will retry");
            return;
        };
        let now = UnixMillis::now();
        // A new incarnation replaces the old one, whose attempts are lost.
        if let Some((previous, _)) = self
            .pools
            .by_name(&member.name)
            .map(|(m, e)| (m.clone(), e.clone()))
            && previous != member
        {
            info!(old = %previous, new = %member, "pool re-registered under a new incarnation");
            self.pools.remove(&previous, &self.weights);
            self.apply_and_release(
                myself,
                Command::MemberLost {
                    member: previous,
                    now,
                },
            );
        }
        // Attempts the book places on this pool that the pool neither runs nor
        // has a report for were lost (the pool restarted); retry them.
        let accounted: HashSet<(TaskId, AssignmentEpoch)> = registration
            .running
            .iter()
            .map(|r| (r.task_id, r.epoch))
            .chain(registration.unacked.iter().copied())
            .collect();
        let lost: Vec<_> = self
            .book
            .running_attempts_on(&member)
            .into_iter()
            .filter(|attempt| !accounted.contains(attempt))
            .collect();
        if !lost.is_empty() {
            warn!(pool = %member, lost = lost.len(), "pool registered without attempts it was running; retrying them");
            self.apply_and_release(
                myself,
                Command::AttemptsLost {
                    member: member.clone(),
                    attempts: lost,
                    now,
                },
            );
        }
        let known = self.pools.get(&member).is_some();
        let supports: BTreeSet<AgentType> = registration
            .agent_types
            .into_iter()
            .filter(|t| self.agent_types.contains_key(t))
            .collect();
        let entry = PoolEntry {
            actor: actor.clone(),
            workers: registration.workers,
            supports,
            draining: registration.draining,
            capacity: registration.capacity.max(registration.workers),
        };
        self.pools.insert(member.clone(), entry, &self.weights);
        if !known {
            info!(pool = %member, workers = registration.workers, "pool registered");
        }
        let _ = actor.cast(Mailbox::Cast(PoolCast::Welcome {
            orchestrator: self.local_member(),
        }));
        self.schedule_dispatch(myself);
    }

    /// A pool says it is draining: it gets no new work.
    pub(super) fn on_pool_draining(&mut self, member: &MemberId) {
        if self.pools.set_draining(member, &self.weights) {
            info!(pool = %member, "pool is draining; it gets no new work");
        }
    }

    /// A draining pool hands back attempts it will not finish: re-queued
    /// without counting as failures.
    pub(super) fn on_hand_back(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        member: MemberId,
        attempts: Vec<(TaskId, AssignmentEpoch)>,
    ) {
        info!(pool = %member, attempts = attempts.len(), "draining pool handed back unfinished attempts");
        let now = UnixMillis::now();
        self.apply_and_release(
            myself,
            Command::HandBack {
                member,
                attempts,
                now,
            },
        );
        self.schedule_dispatch(myself);
    }

    /// The grace after a restart is over: nodes that did not re-register are
    /// treated as gone.
    pub(super) fn on_recovery_deadline(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        self.recovering_until = None;
        self.on_view_changed(myself);
    }

    /// Re-queues the attempts of nodes that are gone.
    pub(super) fn on_view_changed(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let view = self.view.borrow().clone();
        let now = UnixMillis::now();
        let recovering = self
            .recovering_until
            .is_some_and(|until| Instant::now() < until);
        let mut lost: BTreeSet<MemberId> = BTreeSet::new();
        for member in self
            .pools
            .members()
            .into_iter()
            .chain(self.book.members_with_work().cloned().collect::<Vec<_>>())
        {
            if view.is_alive(&member) {
                continue;
            }
            match view.member_named(&member.name) {
                // Seen and gone (down, left, or replaced by a newer incarnation).
                Some(info) if info.member != member || info.state != MemberState::Up => {
                    lost.insert(member);
                }
                // Not seen since a restart: wait for it to re-register.
                _ if recovering => {}
                _ => {
                    lost.insert(member);
                }
            }
        }
        for member in lost {
            let attempts = self.book.running_total_on(&member);
            let info = view
                .member_named(&member.name)
                .filter(|info| info.member == member);
            let left = info.is_some_and(|info| info.state == MemberState::Left);
            if left {
                info!(peer = %member, attempts, "node left; re-queueing anything it still held");
            } else {
                warn!(peer = %member, attempts, "node is gone; re-queueing its tasks");
            }
            if let Some(info) = info {
                metrics::histogram!("herd_failover_requeue_seconds")
                    .record(now.since(info.state_since).as_secs_f64());
            }
            self.pools.remove(&member, &self.weights);
            self.scaling.forget_pool(&member);
            // A node that left on purpose handed back everything it knew of;
            // what it still holds here was sent while it was leaving and never
            // ran: give it back without counting an attempt.
            let command = if left {
                Command::HandBack {
                    attempts: self.book.running_attempts_on(&member),
                    member,
                    now,
                }
            } else {
                Command::MemberLost { member, now }
            };
            self.apply_and_release(myself, command);
        }
        self.schedule_dispatch(myself);
    }
}
