//! Transitive discovery over cluster TLS.
//!
//! Without TLS, ractor_cluster's transitive mode connects each node to the
//! peers of its peers. It dials them in plain text, which a TLS cluster
//! port refuses, so with cluster TLS that mode is off and herd does the
//! same job: once a peer's greeting is accepted, this node tells it where
//! its other peers listen, and the receiver adds those addresses to its
//! dial schedule (dialing them over TLS like any seed). Both sides greet,
//! so both learn; a node joining later is told by whoever it reaches.

use std::time::Instant;

use herd_protocol::messages::membership::{MAX_PEER_ADDRESS_LEN, MAX_SHARED_PEERS, MembershipCast};
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId};
use tracing::debug;

use super::actor::MembershipState;

impl MembershipState {
    /// With cluster TLS, sends `member` (just greeted, up and connected) the
    /// addresses of this node's other up peers.
    pub(super) fn share_peers(&self, member: &MemberId) {
        if self.cluster_tls.is_none() {
            return;
        }
        let Some(session) = self
            .view
            .peers
            .get(&member.name)
            .filter(|peer| &peer.member == member && peer.state == MemberState::Up)
            .and_then(|peer| peer.session)
        else {
            return;
        };
        let addresses: Vec<String> = self
            .view
            .peers
            .values()
            .filter(|peer| peer.member.name != member.name && peer.state == MemberState::Up)
            .map(|peer| peer.cluster_addr.clone())
            .take(MAX_SHARED_PEERS)
            .collect();
        if addresses.is_empty() {
            return;
        }
        if let Some(membership) = self.peer_membership(session) {
            let _ = membership.cast(Mailbox::Cast(MembershipCast::Peers { addresses }));
        }
    }

    /// A peer said where its peers listen: dial them (already connected
    /// addresses are skipped by the dialer).
    pub(super) fn on_peers(&mut self, addresses: Vec<String>) {
        if self.cluster_tls.is_none() || self.leaving {
            return;
        }
        let own = self.config.advertise_addr();
        let now = Instant::now();
        for address in addresses.into_iter().take(MAX_SHARED_PEERS) {
            if address == own || address.len() > MAX_PEER_ADDRESS_LEN || !address.contains(':') {
                continue;
            }
            debug!(%address, "learned a peer's address");
            self.dialer.add(&address, false, now);
        }
    }
}
