//! This node's replica group (raft replication): learning it from the
//! replica's log, greeting peers with it, and leaving when an older group
//! is in sight (the rules are in [`replica_groups`](super::replica_groups)).

use herd_protocol::Mailbox;
use herd_protocol::messages::replica::ReplicaGroupId;
use ractor::ActorRef;
use tokio::sync::watch;
use tracing::{info, warn};

use super::actor::{MembershipLocal, MembershipMsg, MembershipState};
use super::replica_groups::older_group;
use crate::runtime::FatalError;

/// Tells membership each time the replica's log names its group; ends when
/// the replica or membership is gone.
pub(super) fn forward(
    mut group: watch::Receiver<Option<ReplicaGroupId>>,
    membership: ActorRef<MembershipMsg>,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        while group.changed().await.is_ok() {
            let Some(named) = group.borrow_and_update().clone() else {
                continue;
            };
            let told = membership.cast(Mailbox::Local(MembershipLocal::ReplicaGroup(named)));
            if told.is_err() {
                return;
            }
        }
    })
    .abort_handle()
}

impl MembershipState {
    /// This node's replica belongs to `group`: greet every peer again with
    /// it (a leader takes in only replicas of its own group, and a younger
    /// group's nodes learn of this one), drop a claim of another group, and
    /// leave if an older group is already in sight.
    pub(super) fn learn_own_group(&mut self, group: ReplicaGroupId) {
        if self.greeting.replica_group.as_ref() == Some(&group) {
            return;
        }
        info!(%group, "this node's replica belongs to a named replica group");
        self.greeting.replica_group = Some(group.clone());
        self.view.local.replica_group = Some(group);
        self.forget_unfollowed_claim();
        self.publish();
        self.greet_everyone();
        self.leave_if_younger_group();
    }

    /// A peer came in sight with its replica's group (or named it since).
    pub(super) fn on_peer_groups_changed(&mut self) {
        self.forget_unfollowed_claim();
        self.leave_if_younger_group();
    }

    /// A claim held from a group this node no longer follows is dropped
    /// (its term says nothing about the followed group's terms).
    pub(super) fn forget_unfollowed_claim(&mut self) {
        let Some(held) = self.view.leader.as_ref() else {
            return;
        };
        if !self.view.follows_claim(held.group.as_ref()) {
            info!(leader = %held.member, term = held.term, "dropping the leadership claim of a replica group this node does not follow");
            self.view.leader = None;
        }
    }

    /// Stops this node (exit 2, once) if its replica's group is younger
    /// than a live peer's. Nodes of the older group never stop here.
    pub(super) fn leave_if_younger_group(&mut self) {
        self.leave_if_younger_than(None);
    }

    /// [`Self::leave_if_younger_group`], counting the group a leader's
    /// claim names (`claimed`) as in sight too.
    pub(super) fn leave_if_younger_than(&mut self, claimed: Option<&ReplicaGroupId>) {
        if self.leaving_younger_group {
            return;
        }
        let Some(own) = self.view.local.replica_group.as_ref() else {
            return;
        };
        let Some(older) = older_group(own, self.view.peer_groups().chain(claimed)).cloned() else {
            return;
        };
        warn!(own = %own, older = %older, "this node's replica group is younger than another in the cluster; the older group is kept");
        self.leaving_younger_group = true;
        let error = FatalError::YoungerReplicaGroup {
            local: self.greeting.member.to_string(),
            own: own.clone(),
            older,
            data_dir: self.config.data_dir.clone(),
        };
        self.fail(error);
    }
}
