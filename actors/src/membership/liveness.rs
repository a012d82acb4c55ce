//! Heartbeats, failure detection and leaving.

use std::time::{Duration, Instant};

use herd_protocol::messages::membership::MembershipCast;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId, NodeName, UnixMillis};
use tracing::{info, warn};

use super::actor::MembershipState;

/// Heartbeat send times kept for round-trip measurements.
const RTT_WINDOW: usize = 1024;

impl MembershipState {
    /// Sends a heartbeat to every live peer and judges the silent ones.
    pub(super) fn heartbeat_tick(&mut self) {
        if self.leaving {
            return;
        }
        let now = Instant::now();
        self.heartbeat_sequence += 1;
        let sequence = self.heartbeat_sequence;
        self.heartbeats_sent.insert(sequence, now);
        if self.heartbeats_sent.len() > RTT_WINDOW {
            self.heartbeats_sent
                .retain(|seq, _| *seq + RTT_WINDOW as u64 > sequence);
        }
        let beat = MembershipCast::Heartbeat {
            from: self.greeting.member.clone(),
            sequence,
        };
        let mut verdicts: Vec<(NodeName, MemberState, Duration)> = Vec::new();
        for peer in self.view.peers.values() {
            if !matches!(peer.state, MemberState::Up | MemberState::Suspect) {
                continue;
            }
            if let Some(membership) = peer
                .session
                .and_then(|node_id| self.peer_membership(node_id))
            {
                let _ = membership.cast(Mailbox::Cast(beat.clone()));
            }
            let Some(detector) = self.detectors.get(&peer.member.name) else {
                continue;
            };
            let verdict = if detector.is_down(now) {
                MemberState::Down
            } else if detector.is_suspect(now) {
                MemberState::Suspect
            } else {
                MemberState::Up
            };
            if verdict != peer.state {
                verdicts.push((peer.member.name.clone(), verdict, detector.silence(now)));
            }
        }
        for (name, verdict, silence) in verdicts {
            match verdict {
                MemberState::Down => {
                    self.declare_down(&name, "it stopped answering heartbeats", silence)
                }
                MemberState::Suspect => {
                    if let Some(peer) = self.view.peers.get_mut(&name) {
                        warn!(peer = %peer.member, silence_ms = silence.as_millis() as u64, "peer is late answering heartbeats; suspect");
                        peer.state = MemberState::Suspect;
                        self.publish();
                    }
                }
                _ => {
                    if let Some(peer) = self.view.peers.get_mut(&name) {
                        info!(peer = %peer.member, "peer answers again");
                        peer.state = MemberState::Up;
                        self.publish();
                    }
                }
            }
        }
    }

    /// Records that `from` is alive, if it is the incarnation this node knows.
    fn heard_from(&mut self, from: &MemberId) -> bool {
        let current = self.view.peers.get(&from.name).is_some_and(|peer| {
            &peer.member == from && matches!(peer.state, MemberState::Up | MemberState::Suspect)
        });
        if current && let Some(detector) = self.detectors.get_mut(&from.name) {
            detector.heard(Instant::now());
        }
        current
    }

    pub(super) fn on_heartbeat(&mut self, from: MemberId, sequence: u64) {
        if !self.heard_from(&from) {
            return;
        }
        let session = self
            .view
            .peers
            .get(&from.name)
            .and_then(|peer| peer.session);
        if let Some(membership) = session.and_then(|node_id| self.peer_membership(node_id)) {
            let _ = membership.cast(Mailbox::Cast(MembershipCast::HeartbeatAck {
                from: self.greeting.member.clone(),
                sequence,
            }));
        }
    }

    pub(super) fn on_heartbeat_ack(&mut self, from: MemberId, sequence: u64) {
        if self.heard_from(&from)
            && let Some(sent) = self.heartbeats_sent.get(&sequence)
        {
            metrics::histogram!("herd_heartbeat_rtt_seconds").record(sent.elapsed().as_secs_f64());
        }
    }

    /// Declares a peer down: its session is closed and every local component
    /// learns at once (the orchestrator re-queues its tasks). `silence` is how
    /// long it had been quiet.
    pub(super) fn declare_down(&mut self, name: &NodeName, why: &str, silence: Duration) {
        let Some(peer) = self.view.peers.get_mut(name) else {
            return;
        };
        if !matches!(peer.state, MemberState::Up | MemberState::Suspect) {
            return;
        }
        warn!(peer = %peer.member, silence_ms = silence.as_millis() as u64, "declaring peer down: {why}");
        metrics::histogram!("herd_failover_detect_seconds").record(silence.as_secs_f64());
        peer.state = MemberState::Down;
        peer.state_since = UnixMillis::now();
        let member = peer.member.clone();
        let session = peer.session.take();
        self.detectors.remove(name);
        self.declared_down.insert(member);
        if let Some(node_id) = session {
            // Stopping the session makes ractor drop the peer's actors and
            // groups here, and tells the peer (if it can hear) at once.
            self.close_session(node_id, Duration::ZERO, "declared down by herd membership");
        }
        self.publish();
    }

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
        self.detectors.remove(&member.name);
        self.publish();
    }
}
