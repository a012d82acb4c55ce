//! Leaving on purpose: telling every peer, and marking peers that leave.

use herd_protocol::messages::membership::MembershipCast;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId, UnixMillis};
use tracing::info;

use super::actor::MembershipState;

impl MembershipState {
    /// Tells every peer this node leaves on purpose (after a drain), so they
    /// mark it left instead of waiting to detect it.
    pub(super) fn leave(&mut self, done: tokio::sync::oneshot::Sender<()>) {
        self.leaving = true;
        let leaving = MembershipCast::Leaving {
            member: self.greeting.member.clone(),
        };
        let mut waiting = std::collections::HashSet::new();
        for peer in self.view.peers.values() {
            if let Some(membership) = peer
                .session
                .and_then(|node_id| self.peer_membership(node_id))
                && membership.cast(Mailbox::Cast(leaving.clone())).is_ok()
            {
                waiting.insert(peer.member.name.clone());
            }
        }
        info!(peers = waiting.len(), "leaving the cluster");
        if waiting.is_empty() {
            let _ = done.send(());
        } else {
            self.leave_waiter = Some((done, waiting));
        }
    }

    pub(super) fn on_leaving_ack(&mut self, from: MemberId) {
        let Some((_, waiting)) = self.leave_waiter.as_mut() else {
            return;
        };
        waiting.remove(&from.name);
        if waiting.is_empty()
            && let Some((done, _)) = self.leave_waiter.take()
        {
            let _ = done.send(());
        }
    }

    pub(super) fn on_leaving(&mut self, member: MemberId) {
        let Some(peer) = self
            .view
            .peers
            .get_mut(&member.name)
            .filter(|peer| peer.member == member)
        else {
            return;
        };
        info!(peer = %member, "peer left the cluster");
        let session = peer.session.take();
        peer.state = MemberState::Left;
        peer.state_since = UnixMillis::now();
        if let Some(membership) = session.and_then(|node_id| self.peer_membership(node_id)) {
            let _ = membership.cast(Mailbox::Cast(MembershipCast::LeavingAck {
                from: self.greeting.member.clone(),
            }));
        }
        self.detectors.remove(&member);
        self.unreachability.forget(&member);
        self.publish();
    }
}
