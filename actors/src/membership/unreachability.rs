//! Reports of unreachability and the quorum that turns them into "down".
//!
//! A watcher whose failure detector finds a subject silent past the
//! threshold does not declare it down by itself: it reports it unreachable
//! to every node (this node's own reports are recorded here too). A node
//! declares a member down once [`reports_needed`] distinct live reporters
//! stand against that incarnation — two, or one when the member has a
//! single watcher (a two-node cluster) — so one slow, paused or cut-off
//! watcher can never take a healthy node down on its own.
//!
//! Reports are soft state. A reporter re-sends its standing reports every
//! [`RESEND_INTERVAL`] and withdraws a report when heartbeats resume or the
//! subject stops being its to watch; a received report not refreshed within
//! [`REPORT_TTL`] lapses, so a lost withdrawal, a reporter that vanished or
//! a ring that moved cannot leave a stale report behind. A report counts
//! whoever sent it, as long as the reporter is alive in the receiver's view:
//! while views differ, the receiver's idea of who watches whom may be off by
//! a member, and the reporter is the one that knows what it watches.
//!
//! Pure: callers pass the time and say who is alive; nothing here sends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herd_protocol::MemberId;

/// Distinct reporters that declare a member down when it has at least that
/// many watchers.
pub const QUORUM: usize = 2;

/// How often a standing report is sent again.
pub const RESEND_INTERVAL: Duration = Duration::from_secs(1);

/// How long a received report counts without being sent again: three
/// re-sends, so one or two late ones do not make it lapse.
pub const REPORT_TTL: Duration = Duration::from_secs(3);

/// Reports needed to declare down a member that has `watchers` watchers:
/// [`QUORUM`], or all of them if there are fewer (at least one).
pub fn reports_needed(watchers: usize) -> usize {
    watchers.clamp(1, QUORUM)
}

/// One received report.
#[derive(Clone, Debug)]
struct Report {
    /// When it was received (or last re-sent).
    received: Instant,
    /// How long the reporter had heard nothing from the subject when it
    /// sent it.
    silence: Duration,
}

/// This node's standing report about one subject.
#[derive(Clone, Debug)]
struct OwnReport {
    last_sent: Instant,
    silence: Duration,
}

/// What this node should tell every peer about its own reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announcement {
    /// "I find `subject` unreachable; silent for `silence`."
    Unreachable {
        /// Whom.
        subject: MemberId,
        /// How long this node has heard nothing from it.
        silence: Duration,
    },
    /// "I no longer find `subject` unreachable."
    Reachable {
        /// Whom.
        subject: MemberId,
    },
}

/// One node's book of unreachability reports: its own and those received.
#[derive(Debug)]
pub struct Unreachability {
    local: MemberId,
    /// Reports per subject incarnation, per reporter.
    received: HashMap<MemberId, HashMap<MemberId, Report>>,
    /// This node's standing reports.
    own: HashMap<MemberId, OwnReport>,
}

impl Unreachability {
    /// An empty book for the node `local`.
    pub fn new(local: MemberId) -> Self {
        Unreachability {
            local,
            received: HashMap::new(),
            own: HashMap::new(),
        }
    }

    /// This node took a new incarnation: its standing reports (about others)
    /// stay, under its new name.
    pub fn set_local(&mut self, local: MemberId) {
        for reporters in self.received.values_mut() {
            if let Some(report) = reporters.remove(&self.local) {
                reporters.insert(local.clone(), report);
            }
        }
        self.local = local;
    }

    /// This node's own detector judged `subject`: `silence` since it last
    /// heard from it, `unreachable` if past the threshold. Returns what to
    /// announce, if this changes its report.
    pub fn judge(
        &mut self,
        subject: &MemberId,
        unreachable: bool,
        silence: Duration,
        now: Instant,
    ) -> Option<Announcement> {
        match (unreachable, self.own.contains_key(subject)) {
            (true, false) => {
                self.own.insert(
                    subject.clone(),
                    OwnReport {
                        last_sent: now,
                        silence,
                    },
                );
                self.record(subject.clone(), self.local.clone(), silence, now);
                Some(Announcement::Unreachable {
                    subject: subject.clone(),
                    silence,
                })
            }
            (true, true) => {
                if let Some(own) = self.own.get_mut(subject) {
                    own.silence = silence;
                }
                None
            }
            (false, true) => self.withdraw(subject),
            (false, false) => None,
        }
    }

    /// Withdraws this node's report about `subject` (heartbeats resumed, or
    /// it is no longer this node's to watch); returns what to announce.
    pub fn withdraw(&mut self, subject: &MemberId) -> Option<Announcement> {
        self.own.remove(subject)?;
        self.retract(subject, &self.local.clone());
        Some(Announcement::Reachable {
            subject: subject.clone(),
        })
    }

    /// True if this node's own report about `subject` stands.
    pub fn has_reported(&self, subject: &MemberId) -> bool {
        self.own.contains_key(subject)
    }

    /// The subjects of this node's standing reports.
    pub fn own_reports(&self) -> impl Iterator<Item = &MemberId> {
        self.own.keys()
    }

    /// Standing reports due to be sent again; marks them sent. Also keeps
    /// this node's own copy of each from lapsing.
    pub fn due_resends(&mut self, now: Instant) -> Vec<Announcement> {
        let mut due = Vec::new();
        for (subject, own) in &mut self.own {
            if now.saturating_duration_since(own.last_sent) >= RESEND_INTERVAL {
                own.last_sent = now;
                due.push(Announcement::Unreachable {
                    subject: subject.clone(),
                    silence: own.silence,
                });
            }
        }
        for announcement in &due {
            if let Announcement::Unreachable { subject, silence } = announcement {
                self.record(subject.clone(), self.local.clone(), *silence, now);
            }
        }
        due
    }

    /// `by` reports `subject` unreachable (or re-sends its report).
    pub fn record(&mut self, subject: MemberId, by: MemberId, silence: Duration, now: Instant) {
        self.received.entry(subject).or_default().insert(
            by,
            Report {
                received: now,
                silence,
            },
        );
    }

    /// `by` withdraws its report about `subject`.
    pub fn retract(&mut self, subject: &MemberId, by: &MemberId) {
        if let Some(reporters) = self.received.get_mut(subject) {
            reporters.remove(by);
            if reporters.is_empty() {
                self.received.remove(subject);
            }
        }
    }

    /// `subject` was declared down or left: its reports are settled.
    pub fn forget(&mut self, subject: &MemberId) {
        self.received.remove(subject);
        self.own.remove(subject);
    }

    /// Drops received reports not refreshed within [`REPORT_TTL`].
    pub fn expire(&mut self, now: Instant) {
        self.received.retain(|_, reporters| {
            reporters
                .retain(|_, report| now.saturating_duration_since(report.received) < REPORT_TTL);
            !reporters.is_empty()
        });
    }

    /// Distinct reporters alive in this node's view (`is_alive`) that stand
    /// against `subject`.
    pub fn reporters(&self, subject: &MemberId, is_alive: impl Fn(&MemberId) -> bool) -> usize {
        self.received.get(subject).map_or(0, |reporters| {
            reporters
                .keys()
                .filter(|by| **by == self.local || is_alive(by))
                .count()
        })
    }

    /// True when `subject`, which has `watchers` watchers, is to be declared
    /// down: enough distinct live reporters stand against it.
    pub fn is_down(
        &self,
        subject: &MemberId,
        watchers: usize,
        is_alive: impl Fn(&MemberId) -> bool,
    ) -> bool {
        self.reporters(subject, is_alive) >= reports_needed(watchers)
    }

    /// The longest silence the reporters saw, aged by the time since each
    /// report arrived: how long `subject` has likely been silent.
    pub fn silence(&self, subject: &MemberId, now: Instant) -> Duration {
        self.received
            .get(subject)
            .into_iter()
            .flat_map(HashMap::values)
            .map(|report| report.silence + now.saturating_duration_since(report.received))
            .max()
            .unwrap_or_default()
    }

    /// Subjects anyone reports, for the quorum check.
    pub fn subjects(&self) -> impl Iterator<Item = &MemberId> {
        self.received.keys()
    }
}

/// True when this node is cut off from the cluster and must act alone: it
/// watches someone, every subject it watches is past the detector's
/// threshold, and it has received no heartbeat from any watcher for
/// `max_silence`. No report can reach it then, so it cannot wait for a
/// quorum; it closes its sessions and redials until the cut heals (the
/// other side declares it down by quorum meanwhile).
pub fn is_cut_off(
    subjects: usize,
    unreachable_subjects: usize,
    inbound_silence: Duration,
    max_silence: Duration,
) -> bool {
    subjects > 0 && unreachable_subjects == subjects && inbound_silence >= max_silence
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{Incarnation, NodeName};
    use proptest::prelude::*;

    fn member(name: &str, incarnation: u64) -> MemberId {
        MemberId {
            name: NodeName::parse(name).unwrap(),
            incarnation: Incarnation(incarnation),
        }
    }

    fn everyone_alive(_: &MemberId) -> bool {
        true
    }

    #[test]
    fn two_reporters_are_needed_unless_the_member_has_a_single_watcher() {
        assert_eq!(reports_needed(5), 2);
        assert_eq!(reports_needed(2), 2);
        assert_eq!(reports_needed(1), 1);
        assert_eq!(reports_needed(0), 1);
        let now = Instant::now();
        let subject = member("n5", 1);
        let mut book = Unreachability::new(member("n1", 1));
        book.record(
            subject.clone(),
            member("n3", 1),
            Duration::from_secs(2),
            now,
        );
        assert!(!book.is_down(&subject, 5, everyone_alive));
        assert!(
            book.is_down(&subject, 1, everyone_alive),
            "a two-node cluster"
        );
        book.record(
            subject.clone(),
            member("n3", 1),
            Duration::from_secs(2),
            now,
        );
        assert!(
            !book.is_down(&subject, 5, everyone_alive),
            "the same reporter twice"
        );
        book.record(
            subject.clone(),
            member("n4", 1),
            Duration::from_secs(2),
            now,
        );
        assert!(book.is_down(&subject, 5, everyone_alive));
        assert!(
            !book.is_down(&member("n5", 2), 5, everyone_alive),
            "reports name one incarnation"
        );
    }

    #[test]
    fn this_nodes_own_report_counts_once_and_is_withdrawn_when_the_subject_answers() {
        let now = Instant::now();
        let subject = member("n2", 1);
        let mut book = Unreachability::new(member("n1", 1));
        let second = Duration::from_secs(1);
        assert_eq!(book.judge(&subject, false, second, now), None);
        assert!(matches!(
            book.judge(&subject, true, second, now),
            Some(Announcement::Unreachable { .. })
        ));
        assert_eq!(book.judge(&subject, true, second, now), None, "said once");
        assert_eq!(book.reporters(&subject, everyone_alive), 1);
        assert!(book.is_down(&subject, 1, everyone_alive));
        assert_eq!(
            book.judge(&subject, false, Duration::ZERO, now),
            Some(Announcement::Reachable {
                subject: subject.clone()
            })
        );
        assert_eq!(book.reporters(&subject, everyone_alive), 0);
    }

    #[test]
    fn reports_from_members_not_alive_here_do_not_count() {
        let now = Instant::now();
        let subject = member("n5", 1);
        let mut book = Unreachability::new(member("n1", 1));
        book.record(subject.clone(), member("n3", 1), Duration::ZERO, now);
        book.record(subject.clone(), member("n4", 1), Duration::ZERO, now);
        let n4_is_down = |by: &MemberId| by.name.as_str() != "n4";
        assert!(!book.is_down(&subject, 5, n4_is_down));
    }

    #[test]
    fn reports_lapse_unless_sent_again_and_standing_ones_are_sent_again() {
        let start = Instant::now();
        let subject = member("n5", 1);
        let mut book = Unreachability::new(member("n1", 1));
        book.record(subject.clone(), member("n3", 1), Duration::ZERO, start);
        book.judge(&subject, true, Duration::from_secs(2), start);
        assert_eq!(book.reporters(&subject, everyone_alive), 2);
        assert!(book.due_resends(start + RESEND_INTERVAL / 2).is_empty());
        let later = start + RESEND_INTERVAL;
        assert_eq!(book.due_resends(later).len(), 1);
        book.expire(start + REPORT_TTL);
        assert_eq!(
            book.reporters(&subject, everyone_alive),
            1,
            "n3's lapsed; this node's own was refreshed when re-sent"
        );
        assert_eq!(
            book.silence(&subject, later + Duration::from_secs(1)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn a_node_cut_off_from_everyone_acts_alone_but_not_one_that_still_hears_its_watchers() {
        let cap = Duration::from_millis(2500);
        assert!(is_cut_off(2, 2, cap, cap));
        assert!(!is_cut_off(2, 2, cap / 2, cap), "a watcher still speaks");
        assert!(!is_cut_off(2, 1, cap, cap), "a subject still answers");
        assert!(!is_cut_off(0, 0, cap, cap), "alone: nothing to judge");
    }

    #[derive(Clone, Debug)]
    enum Step {
        Judge { subject: usize, unreachable: bool },
        Resend,
        Expire,
        Advance(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..4, any::<bool>()).prop_map(|(subject, unreachable)| Step::Judge {
                subject,
                unreachable
            }),
            Just(Step::Resend),
            Just(Step::Expire),
            (0u64..5_000).prop_map(Step::Advance),
        ]
    }

    proptest! {
        /// However one watcher's judgements of its subjects come and go (a
        /// slow or paused watcher that finds everyone silent), and however
        /// its reports reach another node, no subject with two or more
        /// watchers is ever declared down on the strength of that watcher
        /// alone — neither on the watcher itself nor on a node receiving
        /// its reports.
        #[test]
        fn one_watcher_alone_never_declares_a_member_with_two_watchers_down(
            steps in proptest::collection::vec(step(), 1..60),
            watchers in 2usize..8,
        ) {
            let slow = member("n9", 1);
            let subjects: Vec<MemberId> =
                (0..4).map(|i| member(&format!("s{i}"), 1)).collect();
            let mut watcher = Unreachability::new(slow.clone());
            let mut receiver = Unreachability::new(member("n1", 1));
            let mut now = Instant::now();
            for step in steps {
                let announcements = match step {
                    Step::Judge { subject, unreachable } => watcher
                        .judge(&subjects[subject], unreachable, Duration::from_secs(3), now)
                        .into_iter()
                        .collect(),
                    Step::Resend => watcher.due_resends(now),
                    Step::Expire => {
                        watcher.expire(now);
                        receiver.expire(now);
                        Vec::new()
                    }
                    Step::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        Vec::new()
                    }
                };
                for announcement in announcements {
                    match announcement {
                        Announcement::Unreachable { subject, silence } => {
                            receiver.record(subject, slow.clone(), silence, now)
                        }
                        Announcement::Reachable { subject } => receiver.retract(&subject, &slow),
                    }
                }
                for subject in &subjects {
                    prop_assert!(!watcher.is_down(subject, watchers, everyone_alive));
                    prop_assert!(!receiver.is_down(subject, watchers, everyone_alive));
                    prop_assert!(receiver.reporters(subject, everyone_alive) <= 1);
                }
            }
        }

        /// A second, independent reporter is enough, and a withdrawal by
        /// either one undoes it.
        #[test]
        fn two_reporters_declare_down_and_a_withdrawal_undoes_it(watchers in 2usize..8) {
            let now = Instant::now();
            let subject = member("s0", 1);
            let mut receiver = Unreachability::new(member("n1", 1));
            receiver.record(subject.clone(), member("w1", 1), Duration::ZERO, now);
            prop_assert!(!receiver.is_down(&subject, watchers, everyone_alive));
            receiver.record(subject.clone(), member("w2", 1), Duration::ZERO, now);
            prop_assert!(receiver.is_down(&subject, watchers, everyone_alive));
            receiver.retract(&subject, &member("w2", 1));
            prop_assert!(!receiver.is_down(&subject, watchers, everyone_alive));
        }
    }
}
