//! Heartbeats to the peers this node watches, and declaring a peer down.
//!
//! Each tick this node works out its subjects on the ring of live members
//! (`watch_ring`), heartbeats them, and judges each with its own
//! phi-accrual detector. Its verdicts are opinions: a subject past the
//! threshold is reported unreachable to every node (`reporting`), and is
//! declared down only when enough watchers agree. A closed connection needs
//! no opinion and is declared down at once (`connections`).

use std::time::{Duration, Instant};

use herd_protocol::messages::membership::MembershipCast;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::{Mailbox, MemberId, NodeName, UnixMillis};
use tracing::{info, warn};

use ractor::ActorRef;

use super::actor::{MembershipLocal, MembershipMsg, MembershipState};
use super::failure_detector::PhiAccrualDetector;
use super::unreachability::Announcement;
use super::watch_ring::WatchRing;

/// Heartbeat send times kept for round-trip measurements.
const RTT_WINDOW: usize = 1024;

impl MembershipState {
    /// Heartbeats this node's subjects, judges them, and declares down the
    /// members enough watchers report unreachable.
    pub(super) fn heartbeat_tick(&mut self, myself: &ActorRef<MembershipMsg>) {
        if self.leaving {
            return;
        }
        let now = Instant::now();
        self.excuse_own_pause(now);
        let ring = self.watch_ring();
        let mut announcements = Vec::new();
        let subjects = self.sync_subjects(&ring, now, &mut announcements);
        self.send_heartbeats(&subjects, now);
        announcements.extend(self.unreachability.due_resends(now));
        self.unreachability.expire(now);
        self.judge(myself, &ring, &subjects, now, announcements);
    }

    /// A subject is due to cross its detector's threshold between two
    /// ticks: judge it at that moment rather than up to a tick later.
    pub(super) fn judge_tick(&mut self, myself: &ActorRef<MembershipMsg>) {
        self.judge_at = None;
        if self.leaving {
            return;
        }
        let now = Instant::now();
        self.excuse_own_pause(now);
        let ring = self.watch_ring();
        let subjects: Vec<MemberId> = ring
            .subjects_of(&self.view.local.member.name)
            .into_iter()
            .filter_map(|name| self.view.peers.get(name))
            .map(|peer| peer.member.clone())
            .filter(|member| self.detectors.contains_key(member))
            .collect();
        self.judge(myself, &ring, &subjects, now, Vec::new());
    }

    /// Judges each subject with its detector, announces what changed,
    /// declares down what the quorum says, checks whether this node is cut
    /// off, and arranges to judge again when a subject is due to cross the
    /// threshold before the next tick.
    fn judge(
        &mut self,
        myself: &ActorRef<MembershipMsg>,
        ring: &WatchRing,
        subjects: &[MemberId],
        now: Instant,
        mut announcements: Vec<Announcement>,
    ) {
        let mut unreachable = 0;
        for subject in subjects {
            let Some(detector) = self.detectors.get(subject) else {
                continue;
            };
            let silence = detector.silence(now);
            let down = detector.is_down(now);
            let suspect = down || detector.is_suspect(now);
            unreachable += usize::from(down);
            if let Some(announcement) = self.unreachability.judge(subject, down, silence, now) {
                if down {
                    warn!(peer = %subject, silence_ms = silence.as_millis() as u64, "peer does not answer heartbeats; reporting it unreachable");
                    metrics::counter!("herd_unreachable_reports_total").increment(1);
                } else {
                    info!(peer = %subject, "peer answers heartbeats again; withdrawing the unreachable report");
                }
                announcements.push(announcement);
            }
            self.mark_suspect(subject, suspect);
        }
        self.announce(announcements);
        self.apply_quorum(ring, now);
        self.check_cut_off(subjects.len(), unreachable, now);
        self.schedule_judgement(myself, subjects, now);
    }

    /// Schedules [`Self::judge_tick`] for the earliest moment a subject not
    /// yet reported would become unreachable, if that comes before the next
    /// tick. Healthy subjects are due far later, so an idle cluster
    /// schedules nothing.
    fn schedule_judgement(
        &mut self,
        myself: &ActorRef<MembershipMsg>,
        subjects: &[MemberId],
        now: Instant,
    ) {
        let next_tick = now + self.config.cluster.failure_detector.heartbeat_interval;
        let Some(earliest) = subjects
            .iter()
            .filter(|subject| !self.unreachability.has_reported(subject))
            .filter_map(|subject| self.detectors.get(subject))
            .map(|detector| detector.unreachable_at())
            .filter(|at| *at > now && *at < next_tick)
            .min()
        else {
            return;
        };
        if self.judge_at.is_some_and(|scheduled| scheduled <= earliest) {
            return;
        }
        self.judge_at = Some(earliest);
        // A millisecond past the crossing, so the detector agrees.
        let delay = earliest - now + Duration::from_millis(1);
        myself.send_after(delay, || Mailbox::Local(MembershipLocal::Judge));
    }

    /// The ring of live members (up or suspect, this node included).
    pub(super) fn watch_ring(&self) -> WatchRing {
        let live = self
            .view
            .peers
            .values()
            .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect))
            .map(|peer| &peer.member.name)
            .chain(std::iter::once(&self.view.local.member.name));
        WatchRing::new(live, self.config.cluster.watchers)
    }

    /// A tick far later than the interval means this node itself did not
    /// run (SIGSTOP, a starved CPU, a long GC-like stall of the runtime):
    /// the answers its subjects sent meanwhile are still queued, unread.
    /// That time is not counted as their silence, nor as its watchers'.
    fn excuse_own_pause(&mut self, now: Instant) {
        let settings = &self.config.cluster.failure_detector;
        let gap = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let slack = settings
            .heartbeat_interval
            .max(settings.acceptable_pause / 2);
        if gap <= settings.heartbeat_interval + slack {
            return;
        }
        let pause = gap - settings.heartbeat_interval;
        warn!(
            pause_ms = pause.as_millis() as u64,
            "this node did not run for a while; not counting the pause as its peers' silence"
        );
        for detector in self.detectors.values_mut() {
            detector.excuse(pause, now);
        }
        self.last_heartbeat_in = (self.last_heartbeat_in + pause).min(now);
    }

    /// Starts watching this node's subjects on `ring` and stops watching
    /// the others (withdrawing any report about them). Returns the subjects.
    fn sync_subjects(
        &mut self,
        ring: &WatchRing,
        now: Instant,
        announcements: &mut Vec<Announcement>,
    ) -> Vec<MemberId> {
        let subjects: Vec<MemberId> = ring
            .subjects_of(&self.view.local.member.name)
            .into_iter()
            .filter_map(|name| self.view.peers.get(name))
            .map(|peer| peer.member.clone())
            .collect();
        let no_longer: Vec<MemberId> = self
            .detectors
            .keys()
            .chain(self.unreachability.own_reports())
            .filter(|member| !subjects.contains(member))
            .cloned()
            .collect();
        for member in no_longer {
            self.detectors.remove(&member);
            announcements.extend(self.unreachability.withdraw(&member));
            // Suspicion was this node's own; it has no evidence any more.
            self.mark_suspect(&member, false);
        }
        for subject in &subjects {
            self.detectors.entry(subject.clone()).or_insert_with(|| {
                PhiAccrualDetector::new(self.config.cluster.failure_detector.clone(), now)
            });
        }
        subjects
    }

    fn send_heartbeats(&mut self, subjects: &[MemberId], now: Instant) {
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
        let memberships = self.peer_memberships();
        for subject in subjects {
            if let Some(membership) = self
                .view
                .peers
                .get(&subject.name)
                .and_then(|peer| peer.session)
                .and_then(|node_id| memberships.get(&node_id))
            {
                let _ = membership.cast(Mailbox::Cast(beat.clone()));
            }
        }
    }

    /// Marks `member` suspect (late, by this node's own detector) or up again.
    fn mark_suspect(&mut self, member: &MemberId, suspect: bool) {
        let Some(peer) = self
            .view
            .peers
            .get_mut(&member.name)
            .filter(|peer| &peer.member == member)
        else {
            return;
        };
        match (peer.state, suspect) {
            (MemberState::Up, true) => {
                warn!(peer = %peer.member, "peer is late answering heartbeats; suspect");
                peer.state = MemberState::Suspect;
            }
            (MemberState::Suspect, false) => {
                info!(peer = %peer.member, "peer answers again");
                peer.state = MemberState::Up;
            }
            _ => return,
        }
        self.publish();
    }

    /// Records that `from` is alive, if it is the incarnation this node knows.
    fn heard_from(&mut self, from: &MemberId) -> bool {
        let current = self.view.peers.get(&from.name).is_some_and(|peer| {
            &peer.member == from && matches!(peer.state, MemberState::Up | MemberState::Suspect)
        });
        if current && let Some(detector) = self.detectors.get_mut(from) {
            detector.heard(Instant::now());
        }
        current
    }

    /// A watcher's heartbeat: answer it, even before this node has taken
    /// the watcher's greeting (while a cluster forms, a greeting can lag its
    /// sender's first heartbeats by seconds, and the watcher must not take
    /// that for silence).
    pub(super) fn on_heartbeat(&mut self, from: MemberId, sequence: u64) {
        self.heard_from(&from);
        self.last_heartbeat_in = Instant::now();
        let session = self
            .view
            .peers
            .get(&from.name)
            .filter(|peer| peer.member == from)
            .and_then(|peer| peer.session)
            .or_else(|| self.authenticated_session_named(&from.name));
        if let Some(membership) = session.and_then(|node_id| self.peer_membership(node_id)) {
            let _ = membership.cast(Mailbox::Cast(MembershipCast::HeartbeatAck {
                from: self.greeting.member.clone(),
                sequence,
            }));
        }
    }

    /// A subject's answer.
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
        self.detectors.remove(&member);
        self.unreachability.forget(&member);
        self.declared_down.insert(member);
        if let Some(node_id) = session {
            // Stopping the session makes ractor drop the peer's actors and
            // groups here, and tells the peer (if it can hear) at once.
            self.close_session(node_id, Duration::ZERO, "declared down by herd membership");
        }
        self.publish();
    }
}
