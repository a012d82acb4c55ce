//! Unreachability reports between nodes, and the verdicts they lead to.
//!
//! The rules live in `unreachability` (pure); this side sends this node's
//! reports to every live peer, takes its peers' reports, confirms reports
//! about members it has already declared down (so a node that missed the
//! first reports reaches the same verdict), and declares down what the
//! quorum says — or, when this node hears from nobody, everything.

use std::time::{Duration, Instant};

use herd_protocol::messages::membership::MembershipCast;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId, NodeName, UnixMillis};
use tracing::{debug, warn};

use super::actor::MembershipState;
use super::unreachability::{Announcement, is_cut_off};
use super::watch_ring::WatchRing;

impl MembershipState {
    /// Sends this node's new, re-sent or withdrawn reports to every live peer.
    pub(super) fn announce(&self, announcements: Vec<Announcement>) {
        if announcements.is_empty() {
            return;
        }
        let by = self.greeting.member.clone();
        let messages: Vec<MembershipCast> = announcements
            .into_iter()
            .map(|announcement| match announcement {
                Announcement::Unreachable { subject, silence } => MembershipCast::Unreachable {
                    subject,
                    by: by.clone(),
                    silence_ms: silence.as_millis() as u64,
                },
                Announcement::Reachable { subject } => MembershipCast::Reachable {
                    subject,
                    by: by.clone(),
                },
            })
            .collect();
        let memberships = self.peer_memberships();
        let live_sessions = self
            .view
            .peers
            .values()
            .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect))
            .filter_map(|peer| peer.session);
        for node_id in live_sessions {
            if let Some(membership) = memberships.get(&node_id) {
                for message in &messages {
                    let _ = membership.cast(Mailbox::Cast(message.clone()));
                }
            }
        }
    }

    /// A peer reports `subject` unreachable (or re-sends its report).
    pub(super) fn on_unreachable(&mut self, subject: MemberId, by: MemberId, silence: Duration) {
        if by == self.greeting.member || subject == self.greeting.member {
            // This node hears the report, so it is not cut off from `by`;
            // only the link the other way is in doubt, and `by`'s other
            // subjects' watchers decide about that.
            if subject == self.greeting.member {
                debug!(by = %by, "a peer reports this node unreachable");
            }
            return;
        }
        let Some(peer) = self
            .view
            .peers
            .get(&subject.name)
            .filter(|peer| peer.member == subject)
        else {
            return;
        };
        match peer.state {
            MemberState::Down => self.confirm_down(&subject, peer.state_since, &by),
            MemberState::Up | MemberState::Suspect => {
                let now = Instant::now();
                self.unreachability.record(subject, by, silence, now);
                // Decide now rather than at the next tick.
                let ring = self.watch_ring();
                self.apply_quorum(&ring, now);
            }
            MemberState::Left => {}
        }
    }

    /// A peer withdraws its report about `subject`.
    pub(super) fn on_reachable(&mut self, subject: MemberId, by: MemberId) {
        self.unreachability.retract(&subject, &by);
    }

    /// `by` reports a member this node has declared down: answer with this
    /// node's own report, so that `by` (which may have joined after the
    /// first reports went round) gets its quorum.
    fn confirm_down(&self, subject: &MemberId, down_since: UnixMillis, by: &MemberId) {
        let Some(session) = self
            .view
            .peers
            .get(&by.name)
            .filter(|peer| &peer.member == by)
            .and_then(|peer| peer.session)
        else {
            return;
        };
        if let Some(membership) = self.peer_membership(session) {
            let _ = membership.cast(Mailbox::Cast(MembershipCast::Unreachable {
                subject: subject.clone(),
                by: self.greeting.member.clone(),
                silence_ms: UnixMillis::now().since(down_since).as_millis() as u64,
            }));
        }
    }

    /// Declares down every live member that enough distinct live watchers
    /// report unreachable.
    pub(super) fn apply_quorum(&mut self, ring: &WatchRing, now: Instant) {
        let verdicts: Vec<(NodeName, usize, usize, Duration)> = self
            .unreachability
            .subjects()
            .filter(|subject| **subject != self.greeting.member && self.view.is_alive(subject))
            .filter_map(|subject| {
                let watchers = ring.watchers_of(&subject.name).len();
                let alive = |member: &MemberId| self.view.is_alive(member);
                self.unreachability
                    .is_down(subject, watchers, alive)
                    .then(|| {
                        (
                            subject.name.clone(),
                            self.unreachability.reporters(subject, alive),
                            watchers,
                            self.unreachability.silence(subject, now),
                        )
                    })
            })
            .collect();
        for (name, reporters, watchers, silence) in verdicts {
            self.declare_down(
                &name,
                &format!("{reporters} of its {watchers} watchers report it unreachable"),
                silence,
            );
        }
    }

    /// When none of this node's subjects answers and none of its watchers
    /// has been heard for `max_silence`, no report can reach it: it is the
    /// one cut off. It declares its peers down itself, which closes their
    /// sessions, and redials them with backoff until the cut heals; the
    /// others meanwhile declare it down by quorum, and on its return it
    /// rejoins under a new incarnation.
    pub(super) fn check_cut_off(&mut self, subjects: usize, unreachable: usize, now: Instant) {
        let inbound_silence = now.saturating_duration_since(self.last_heartbeat_in);
        let max_silence = self.config.cluster.failure_detector.max_silence;
        if !is_cut_off(subjects, unreachable, inbound_silence, max_silence) {
            return;
        }
        warn!(
            subjects,
            silence_ms = inbound_silence.as_millis() as u64,
            "this node hears from none of its peers: it is cut off from the cluster; declaring its peers down and redialing"
        );
        let live: Vec<NodeName> = self
            .view
            .peers
            .values()
            .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect))
            .map(|peer| peer.member.name.clone())
            .collect();
        for name in live {
            self.declare_down(&name, "this node is cut off from it", inbound_silence);
        }
    }
}
