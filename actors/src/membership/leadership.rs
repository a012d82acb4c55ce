//! Leadership claims (raft replication): which node runs the orchestrator.
//!
//! The node whose replica leads the task book's group claims its term to
//! every peer, and to each peer it greets later; a node that stops leading
//! withdraws its claim. Every node keeps the claim of the highest term and
//! names its claimant the orchestrator while the claimant is alive
//! ([`ClusterView::elect_orchestrator`](super::ClusterView::elect_orchestrator)).
//! Raft elects at most one leader per term, so nodes that heard the same
//! claims agree; one that missed a withdrawal learns the next leader's
//! claim, whose term is higher.
//!
//! Claims name the claimant's replica group. Terms of different groups say
//! nothing about each other, so a node keeps only claims of the group it
//! follows (its own replica's, else the oldest in sight: see
//! [`replica_groups`](super::replica_groups)); a claim of an older group
//! than its own replica's makes it leave.

use herd_protocol::messages::membership::MembershipCast;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId};
use tracing::info;

use super::actor::MembershipState;
use super::view::LeaderClaim;

impl MembershipState {
    /// This node leads `term` (or stopped leading it): keep the claim and
    /// tell every peer.
    pub(super) fn claim_leadership(&mut self, term: u64, leading: bool) {
        let claim = LeaderClaim {
            member: self.greeting.member.clone(),
            term,
            leading,
            group: self.greeting.replica_group.clone(),
        };
        self.own_claim = Some(claim.clone());
        for membership in self.peer_memberships().values() {
            let _ = membership.cast(Mailbox::Cast(cast_of(&claim)));
        }
        self.on_leader_claim(claim);
    }

    /// Tells a newly greeted peer that this node leads, if it does.
    pub(super) fn share_leadership(&self, member: &MemberId) {
        let Some(claim) = self.own_claim.as_ref().filter(|claim| claim.leading) else {
            return;
        };
        let session = self
            .view
            .peers
            .get(&member.name)
            .filter(|peer| &peer.member == member && peer.state == MemberState::Up)
            .and_then(|peer| peer.session);
        if let Some(membership) = session.and_then(|session| self.peer_membership(session)) {
            let _ = membership.cast(Mailbox::Cast(cast_of(claim)));
        }
    }

    /// True when this node runs the cluster's orchestrator: the single one,
    /// or the leader's.
    pub(super) fn runs_orchestrator(&self) -> bool {
        self.greeting.orchestrator_since.is_some()
            || self.own_claim.as_ref().is_some_and(|claim| claim.leading)
    }

    /// A claim from a peer (or this node): kept if it is of the group this
    /// node follows and supersedes the one held.
    pub(super) fn on_leader_claim(&mut self, claim: LeaderClaim) {
        self.leave_if_younger_than(claim.group.as_ref());
        if !self.view.follows_claim(claim.group.as_ref()) {
            if let Some(group) = &claim.group {
                info!(leader = %claim.member, term = claim.term, %group, "ignoring the leadership claim of a replica group this node does not follow");
            }
            return;
        }
        self.forget_unfollowed_claim();
        if !LeaderClaim::supersedes(&claim, self.view.leader.as_ref()) {
            return;
        }
        if self.view.leader.as_ref() != Some(&claim) {
            info!(leader = %claim.member, term = claim.term, leading = claim.leading, "task book leadership claim");
        }
        self.view.leader = Some(claim);
        self.publish();
    }
}

fn cast_of(claim: &LeaderClaim) -> MembershipCast {
    MembershipCast::Leader {
        member: claim.member.clone(),
        term: claim.term,
        leading: claim.leading,
        group: claim.group.clone(),
    }
}
