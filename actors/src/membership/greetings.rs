//! Who may join: greetings, refusals, and this node's own incarnation.

use std::time::{Duration, Instant};

use herd_protocol::messages::membership::{Greeting, MembershipCast, Refusal, Role};
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Incarnation, Mailbox, MemberId, UnixMillis};
use ractor::ActorRef;
use ractor_cluster::NodeId;
use tracing::{debug, error, info, warn};

use super::actor::{MembershipMsg, MembershipState};
use super::view::MemberInfo;
use crate::runtime::FatalError;

impl MembershipState {
    pub(super) fn greet(&self, peer: ActorRef<MembershipMsg>) {
        if let Err(error) = peer.cast(Mailbox::Cast(MembershipCast::Hello(self.greeting.clone()))) {
            debug!(%error, "could not greet a peer");
        }
    }

    /// Greets every peer whose membership actor this node knows.
    pub(super) fn greet_everyone(&self) {
        for cell in
            ractor::pg::get_members(&herd_protocol::messages::groups::MEMBERSHIP.to_string())
        {
            if !cell.get_id().is_local() {
                self.greet(cell.into());
            }
        }
    }

    pub(super) fn on_hello(&mut self, greeting: Greeting) {
        let local = self.greeting.member.clone();
        if greeting.member == local || self.leaving {
            return;
        }
        let session = self.session_of(&greeting.member.name, &greeting.cluster_addr);
        if greeting.protocol_version != herd_protocol::PROTOCOL_VERSION {
            error!(peer = %greeting.member, theirs = greeting.protocol_version, ours = herd_protocol::PROTOCOL_VERSION, "refusing a peer that speaks another protocol version; run the same herd release on every node");
            self.refuse(
                &greeting.member,
                session,
                Refusal::ProtocolVersion {
                    ours: herd_protocol::PROTOCOL_VERSION,
                    theirs: greeting.protocol_version,
                },
                true,
            );
            return;
        }
        if let Some(refusal) = self.replication_mismatch(&greeting) {
            self.refuse(&greeting.member, session, refusal, true);
            return;
        }
        // Two processes with this node's name: both apply the same rule, so
        // exactly one stays — the one that started first.
        if greeting.member.name == local.name {
            if greeting.member.incarnation > local.incarnation {
                error!(refused = %greeting.member, addr = %greeting.cluster_addr, "refusing a second node named {}; node names must be unique", local.name);
                self.refuse(
                    &greeting.member,
                    session,
                    Refusal::DuplicateName {
                        existing: local,
                        address: self.greeting.cluster_addr.clone(),
                    },
                    true,
                );
            } else {
                self.fail(FatalError::DuplicateName {
                    name: local.name.to_string(),
                    existing: greeting.member.to_string(),
                    address: greeting.cluster_addr.clone(),
                });
            }
            return;
        }
        // The name belongs to a live node elsewhere: the greeter is a second
        // node with that name, not a restart (a restart comes back at the
        // same address, and one on a new address waits until the old one
        // is suspect or down). Taking it for a rejoin would re-queue the real
        // node's tasks and make the two displace each other in turn.
        if let Some(holder) = self.view.peers.get(&greeting.member.name).filter(|known| {
            known.state == MemberState::Up
                && known.member != greeting.member
                && known.cluster_addr != greeting.cluster_addr
        }) {
            let (existing, address) = (holder.member.clone(), holder.cluster_addr.clone());
            error!(refused = %greeting.member, addr = %greeting.cluster_addr, %existing, existing_addr = %address, "refusing a second node named {}: node names must be unique", greeting.member.name);
            self.refuse(
                &greeting.member,
                session,
                Refusal::DuplicateName { existing, address },
                true,
            );
            return;
        }
        if self.refused.contains(&greeting.member) {
            self.refuse(
                &greeting.member,
                session,
                Refusal::DuplicateName {
                    existing: greeting.member.clone(),
                    address: greeting.cluster_addr.clone(),
                },
                true,
            );
            return;
        }
        // The orchestrator re-queued the tasks of every incarnation it declared
        // down; such an incarnation must come back as a new one, so that
        // nothing it still holds is mistaken for current work.
        if self.runs_orchestrator() && self.declared_down.contains(&greeting.member) {
            info!(peer = %greeting.member, "a node declared down is back; asking it to rejoin under a new incarnation");
            self.refuse(
                &greeting.member,
                session,
                Refusal::DeclaredDown {
                    member: greeting.member.clone(),
                },
                false,
            );
            return;
        }
        let now = UnixMillis::now();
        match self.view.peers.get(&greeting.member.name) {
            Some(known) if known.member.incarnation > greeting.member.incarnation => {
                debug!(peer = %greeting.member, "ignoring a greeting from an older incarnation");
                return;
            }
            Some(known) if known.member == greeting.member && known.state == MemberState::Up => {
                // A repeated greeting (both sides greet, and a node greets
                // again once its replica's group is named): refresh the
                // session and the group.
                if let Some(peer) = self.view.peers.get_mut(&greeting.member.name) {
                    peer.session = session.or(peer.session);
                    peer.replica_group = greeting.replica_group.clone();
                }
                self.on_peer_groups_changed();
                self.publish();
                return;
            }
            Some(known) if known.member != greeting.member => {
                info!(old = %known.member, new = %greeting.member, "peer rejoined with a new incarnation");
            }
            _ => {}
        }
        info!(peer = %greeting.member, roles = ?greeting.roles, addr = %greeting.cluster_addr, "peer joined");
        self.dialer
            .add(&greeting.cluster_addr, false, Instant::now());
        // Whether this node watches the newcomer is the ring's call, at the
        // next heartbeat tick.
        self.view.peers.insert(
            greeting.member.name.clone(),
            MemberInfo::from_greeting(&greeting, session, now),
        );
        self.enforce_single_orchestrator();
        self.on_peer_groups_changed();
        self.publish();
    }

    /// Refuses every up orchestrator but the senior one; stops this node if
    /// it is the junior.
    fn enforce_single_orchestrator(&mut self) {
        let Some(senior) = self.view.elect_orchestrator() else {
            return;
        };
        let juniors: Vec<MemberInfo> = self
            .view
            .up_members()
            .filter(|info| info.orchestrator_since.is_some() && info.member != senior)
            .cloned()
            .collect();
        for junior in juniors {
            if junior.member == self.greeting.member {
                self.fail(FatalError::SecondOrchestrator {
                    local: junior.member.to_string(),
                    existing: senior.to_string(),
                });
            } else {
                error!(refused = %junior.member, keeps = %senior, "refusing a second orchestrator; this release supports exactly one");
                self.refuse(
                    &junior.member,
                    junior.session,
                    Refusal::SecondOrchestrator {
                        existing: senior.clone(),
                    },
                    true,
                );
            }
        }
    }

    /// Tells a peer why it is refused; with `close`, also closes its session
    /// and keeps it out.
    fn refuse(&mut self, member: &MemberId, session: Option<NodeId>, reason: Refusal, close: bool) {
        if let Some(node_id) = session {
            if let Some(peer) = self.peer_membership(node_id) {
                let _ = peer.cast(Mailbox::Cast(MembershipCast::Refused {
                    by: self.greeting.member.clone(),
                    reason,
                }));
            }
            if close {
                // Let the refusal reach the peer before the link closes.
                self.close_session(
                    node_id,
                    Duration::from_millis(200),
                    "refused by herd membership",
                );
            }
        }
        if close {
            self.refused.insert(member.clone());
            // Only this incarnation: another node may hold the name.
            if let Some(peer) = self
                .view
                .peers
                .get_mut(&member.name)
                .filter(|peer| &peer.member == member)
            {
                peer.state = MemberState::Left;
                peer.session = None;
                peer.state_since = UnixMillis::now();
                self.detectors.remove(member);
                self.unreachability.forget(member);
            }
            self.publish();
        }
    }

    pub(super) fn on_refused(&mut self, by: MemberId, reason: Refusal) {
        match reason {
            Refusal::SecondOrchestrator { existing }
                if self.greeting.orchestrator_since.is_some()
                    && existing != self.greeting.member =>
            {
                self.fail(FatalError::SecondOrchestrator {
                    local: self.greeting.member.to_string(),
                    existing: existing.to_string(),
                });
            }
            Refusal::DuplicateName { existing, address }
                if existing.name == self.greeting.member.name =>
            {
                self.fail(FatalError::DuplicateName {
                    name: existing.name.to_string(),
                    existing: existing.to_string(),
                    address,
                });
            }
            Refusal::ProtocolVersion { ours, theirs } => {
                self.fail(FatalError::ProtocolVersion {
                    peer: by.to_string(),
                    theirs: ours,
                    ours: theirs,
                });
            }
            Refusal::ReplicationMismatch {
                existing,
                existing_mode,
            } => self.fail(FatalError::ReplicationMismatch {
                local: self.greeting.member.to_string(),
                local_mode: replication_mode(&self.greeting).to_string(),
                existing: existing.to_string(),
                existing_mode,
            }),
            Refusal::DeclaredDown { member } if member == self.greeting.member => {
                self.rejoin_as_new_incarnation(&by)
            }
            other => warn!(by = %by, reason = ?other, "a peer refused this node"),
        }
    }

    /// Two orchestrator-role nodes in different replication modes would keep
    /// two task books: the one that started later (the higher incarnation)
    /// is refused, by the other; both sides apply the same rule.
    fn replication_mismatch(&self, greeting: &Greeting) -> Option<Refusal> {
        let ours = replication_mode(&self.greeting);
        let theirs = replication_mode(greeting);
        let both_orchestrators = self.greeting.roles.contains(&Role::Orchestrator)
            && greeting.roles.contains(&Role::Orchestrator);
        if !both_orchestrators || ours == theirs {
            return None;
        }
        if greeting.member.incarnation <= self.greeting.member.incarnation {
            // The peer started first: it refuses this node.
            return None;
        }
        error!(refused = %greeting.member, theirs, ours, "refusing an orchestrator-role node in another replication mode; set the same --replication on every node");
        Some(Refusal::ReplicationMismatch {
            existing: self.greeting.member.clone(),
            existing_mode: ours.to_string(),
        })
    }

    /// The orchestrator declared this incarnation down and re-queued its
    /// tasks: take a new incarnation and greet everyone again.
    fn rejoin_as_new_incarnation(&mut self, by: &MemberId) {
        let old = self.greeting.member.clone();
        let now = UnixMillis::now();
        let incarnation = Incarnation(now.0.max(old.incarnation.0 + 1));
        let new = MemberId {
            name: old.name.clone(),
            incarnation,
        };
        warn!(old = %old, new = %new, orchestrator = %by, "this node was declared down while unreachable; rejoining under a new incarnation (its old attempts were re-queued)");
        metrics::counter!("herd_rejoins_total").increment(1);
        self.greeting.member = new.clone();
        self.unreachability.set_local(new.clone());
        self.view.local.member = new;
        self.view.local.state_since = now;
        self.publish();
        self.greet_everyone();
        // A leader's claim names its incarnation: claim again under the new
        // one, or every node would keep a claim by an incarnation that is
        // gone and see no orchestrator.
        if let Some(claim) = self.own_claim.clone().filter(|claim| claim.leading) {
            self.claim_leadership(claim.term, true);
        }
    }
}

/// A greeting's replication mode: an orchestrator-role node with a replica
/// runs `raft`, any other `single`.
fn replication_mode(greeting: &Greeting) -> &'static str {
    if greeting.replica_id.is_some() {
        "raft"
    } else {
        "single"
    }
}
