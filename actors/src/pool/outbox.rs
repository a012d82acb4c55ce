//! The pool's report outbox: finished attempts kept until the orchestrator
//! acknowledges them.
//!
//! Every report gets the next sequence number (from 1 up, across all
//! incarnations of this node), and the orchestrator acknowledges a batch by
//! its last number, meaning "everything through n". Reports leave in
//! sequence order and stay until acknowledged; when the registration they
//! were sent to is lost, every unacknowledged one goes out again to the next
//! (the orchestrator recognises the ones it has already applied). So a
//! report is only ever dropped when [`MAX_UNACKED_REPORTS`] are waiting.
//!
//! Plain bookkeeping: the pool actor does the sending.

use std::collections::VecDeque;

use herd_protocol::{AssignmentEpoch, MemberId, TaskId, TaskReport};

/// Reports kept until acknowledged; beyond this the oldest are dropped (their
/// tasks are then retried when the orchestrator notices).
pub(super) const MAX_UNACKED_REPORTS: usize = 100_000;

#[derive(Debug)]
struct OutboxEntry {
    sequence: u64,
    member: MemberId,
    report: TaskReport,
}

/// Reports of one incarnation with consecutive sequence numbers: what one
/// `Reports` message to the orchestrator carries.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReportRun {
    /// The incarnation the attempts were assigned to.
    pub member: MemberId,
    /// The sequence number of the first report; the others follow by one.
    pub first_sequence: u64,
    /// The reports, in sequence order.
    pub reports: Vec<TaskReport>,
}

impl ReportRun {
    /// Splits the run into the batches `chunk` cuts its reports into (to
    /// keep each under the frame limit), numbering each batch from where the
    /// previous one ended, so the orchestrator's "acknowledged through the
    /// end of this batch" stays exact.
    pub(super) fn split(
        self,
        chunk: impl FnOnce(Vec<TaskReport>) -> Vec<Vec<TaskReport>>,
    ) -> Vec<ReportRun> {
        let mut first_sequence = self.first_sequence;
        chunk(self.reports)
            .into_iter()
            .map(|reports| {
                let batch = ReportRun {
                    member: self.member.clone(),
                    first_sequence,
                    reports,
                };
                first_sequence += batch.reports.len() as u64;
                batch
            })
            .collect()
    }
}

/// Reports not yet acknowledged by the orchestrator, in sequence order.
///
/// Guarantees: reports leave [`ReportOutbox::take_unsent`] in the order they
/// were pushed, each exactly once per registration; a report leaves the
/// outbox only when acknowledged or, once [`MAX_UNACKED_REPORTS`] are
/// waiting, as the oldest when another is pushed.
#[derive(Debug)]
pub(super) struct ReportOutbox {
    /// Unacknowledged reports, oldest first; their sequence numbers are
    /// consecutive (reports are only removed from the front).
    entries: VecDeque<OutboxEntry>,
    /// How many of the newest entries the current registration has not been
    /// sent. Sending is in order, so the unsent ones are always a suffix.
    unsent: usize,
    next_sequence: u64,
}

impl Default for ReportOutbox {
    fn default() -> Self {
        ReportOutbox {
            entries: VecDeque::new(),
            unsent: 0,
            next_sequence: 1,
        }
    }
}

impl ReportOutbox {
    /// Queues a report of an attempt assigned to `member` under the next
    /// sequence number. Returns the oldest report if the outbox was full and
    /// had to drop it.
    pub(super) fn push(&mut self, member: MemberId, report: TaskReport) -> Option<TaskReport> {
        let dropped = if self.entries.len() >= MAX_UNACKED_REPORTS {
            let dropped = self.entries.pop_front();
            self.unsent = self.unsent.min(self.entries.len());
            dropped.map(|entry| entry.report)
        } else {
            None
        };
        self.entries.push_back(OutboxEntry {
            sequence: self.next_sequence,
            member,
            report,
        });
        self.next_sequence += 1;
        self.unsent += 1;
        dropped
    }

    /// Whether some reports wait to be sent to the current registration.
    pub(super) fn has_unsent(&self) -> bool {
        self.unsent > 0
    }

    /// The reports not yet sent to the current registration, oldest first,
    /// as runs of one incarnation each; they count as sent from now on.
    pub(super) fn take_unsent(&mut self) -> Vec<ReportRun> {
        let first_unsent = self.entries.len() - self.unsent;
        self.unsent = 0;
        let mut runs: Vec<ReportRun> = Vec::new();
        for entry in self.entries.range(first_unsent..) {
            match runs.last_mut() {
                Some(run)
                    if run.member == entry.member
                        && run.first_sequence + run.reports.len() as u64 == entry.sequence =>
                {
                    run.reports.push(entry.report.clone())
                }
                _ => runs.push(ReportRun {
                    member: entry.member.clone(),
                    first_sequence: entry.sequence,
                    reports: vec![entry.report.clone()],
                }),
            }
        }
        runs
    }

    /// Forgets every report through sequence number `through`: the
    /// orchestrator has applied them durably.
    pub(super) fn ack(&mut self, through: u64) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.sequence <= through)
        {
            self.entries.pop_front();
        }
        self.unsent = self.unsent.min(self.entries.len());
    }

    /// Marks every unacknowledged report unsent: the registration they went
    /// to is gone, and what was in flight to it may be lost.
    pub(super) fn resend_all(&mut self) {
        self.unsent = self.entries.len();
    }

    /// The attempts of `member` whose reports are not acknowledged, so that a
    /// registration tells the orchestrator they are accounted for.
    pub(super) fn unacked_of<'a>(
        &'a self,
        member: &'a MemberId,
    ) -> impl Iterator<Item = (TaskId, AssignmentEpoch)> + 'a {
        self.entries
            .iter()
            .filter(move |entry| &entry.member == member)
            .map(|entry| (entry.report.task_id, entry.report.epoch))
    }

    /// Whether every report has been acknowledged.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many reports are not acknowledged.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{FailureKind, Incarnation, NodeName, Outcome, UnixMillis, WorkerId};
    use proptest::prelude::*;

    fn incarnation(number: u64) -> MemberId {
        MemberId {
            name: NodeName::parse("node-a").unwrap(),
            incarnation: Incarnation(number),
        }
    }

    /// A report told apart from the others by its task id.
    fn report(id: u128) -> TaskReport {
        TaskReport {
            task_id: TaskId(id),
            epoch: AssignmentEpoch(1),
            worker: WorkerId(0),
            outcome: Outcome::Failed {
                kind: FailureKind::Crash,
                message: String::new(),
            },
            started_at: UnixMillis(0),
            finished_at: UnixMillis(0),
        }
    }

    fn run(member: MemberId, first_sequence: u64, ids: &[u128]) -> ReportRun {
        ReportRun {
            member,
            first_sequence,
            reports: ids.iter().map(|id| report(*id)).collect(),
        }
    }

    /// An outbox holding, unsent, a report `id` of incarnation `member` for
    /// each `(member, id)`.
    fn pushed(reports: &[(u64, u128)]) -> ReportOutbox {
        let mut outbox = ReportOutbox::default();
        for (member, id) in reports {
            outbox.push(incarnation(*member), report(*id));
        }
        outbox
    }

    /// An outbox that has sent reports `1..=count` of incarnation 1.
    fn sent(count: u128) -> ReportOutbox {
        let mut outbox = ReportOutbox::default();
        for id in 1..=count {
            outbox.push(incarnation(1), report(id));
        }
        outbox.take_unsent();
        outbox
    }

    #[test]
    fn pushed_reports_are_numbered_from_one_and_sent_once() {
        let mut outbox = ReportOutbox::default();
        assert!(!outbox.has_unsent());
        for id in 1..=3 {
            assert_eq!(outbox.push(incarnation(1), report(id)), None);
        }
        assert!(outbox.has_unsent());
        assert_eq!(
            outbox.take_unsent(),
            vec![run(incarnation(1), 1, &[1, 2, 3])]
        );
        assert!(!outbox.has_unsent());
        assert_eq!(outbox.take_unsent(), vec![]);
        assert_eq!(outbox.len(), 3, "sent is not acknowledged");
    }

    #[test]
    fn unsent_reports_are_grouped_by_incarnation() {
        let mut outbox = pushed(&[(1, 1), (1, 2), (2, 3), (1, 4)]);
        assert_eq!(
            outbox.take_unsent(),
            vec![
                run(incarnation(1), 1, &[1, 2]),
                run(incarnation(2), 3, &[3]),
                run(incarnation(1), 4, &[4]),
            ]
        );
    }

    #[test]
    fn only_reports_pushed_since_the_last_take_are_unsent() {
        let mut outbox = sent(1);
        outbox.push(incarnation(1), report(2));
        assert_eq!(outbox.take_unsent(), vec![run(incarnation(1), 2, &[2])]);
    }

    #[test]
    fn an_ack_forgets_reports_through_its_sequence() {
        let mut outbox = sent(4);
        outbox.ack(2);
        assert_eq!(outbox.len(), 2);
        outbox.resend_all();
        assert_eq!(outbox.take_unsent(), vec![run(incarnation(1), 3, &[3, 4])]);
        outbox.ack(1);
        assert_eq!(outbox.len(), 2, "an older ack changes nothing");
        outbox.ack(4);
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_ack_of_reports_marked_for_resending_leaves_only_the_rest_unsent() {
        let mut outbox = sent(3);
        outbox.resend_all();
        // An ack the old registration sent before it went away.
        outbox.ack(2);
        assert_eq!(outbox.take_unsent(), vec![run(incarnation(1), 3, &[3])]);
    }

    #[test]
    fn resend_all_sends_every_unacknowledged_report_again_in_order() {
        let mut outbox = sent(2);
        outbox.push(incarnation(2), report(3));
        outbox.resend_all();
        assert_eq!(
            outbox.take_unsent(),
            vec![
                run(incarnation(1), 1, &[1, 2]),
                run(incarnation(2), 3, &[3])
            ]
        );
    }

    #[test]
    fn unacked_of_lists_the_attempts_of_one_incarnation() {
        let mut outbox = pushed(&[(1, 1), (2, 2), (1, 3)]);
        outbox.ack(1);
        let unacked: Vec<_> = outbox.unacked_of(&incarnation(1)).collect();
        assert_eq!(unacked, vec![(TaskId(3), AssignmentEpoch(1))]);
    }

    #[test]
    fn a_run_is_split_into_batches_numbered_where_the_previous_ended() {
        let batches = run(incarnation(1), 5, &[1, 2, 3, 4, 5])
            .split(|reports| reports.chunks(2).map(<[_]>::to_vec).collect());
        assert_eq!(
            batches,
            vec![
                run(incarnation(1), 5, &[1, 2]),
                run(incarnation(1), 7, &[3, 4]),
                run(incarnation(1), 9, &[5]),
            ]
        );
    }

    #[test]
    fn a_full_outbox_drops_its_oldest_report() {
        // Half of them went out before the orchestrator became unreachable.
        let sent_before = MAX_UNACKED_REPORTS / 2;
        let mut outbox = sent(sent_before as u128);
        for id in sent_before as u128 + 1..=MAX_UNACKED_REPORTS as u128 {
            assert_eq!(outbox.push(incarnation(1), report(id)), None);
        }
        let newest = MAX_UNACKED_REPORTS as u128 + 1;
        assert_eq!(outbox.push(incarnation(1), report(newest)), Some(report(1)));
        assert_eq!(outbox.len(), MAX_UNACKED_REPORTS);
        let unsent = outbox.take_unsent();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].first_sequence, sent_before as u64 + 1);
        assert_eq!(
            unsent[0].reports.len(),
            MAX_UNACKED_REPORTS - sent_before + 1
        );
        assert_eq!(unsent[0].reports.last(), Some(&report(newest)));
        outbox.resend_all();
        assert_eq!(
            outbox.take_unsent()[0].first_sequence,
            2,
            "the dropped report is never sent again"
        );
    }

    #[test]
    fn a_full_outbox_with_everything_unsent_keeps_sending_all_it_holds() {
        let mut outbox = ReportOutbox::default();
        for id in 1..=MAX_UNACKED_REPORTS as u128 + 1 {
            outbox.push(incarnation(1), report(id));
        }
        let unsent = outbox.take_unsent();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].first_sequence, 2);
        assert_eq!(unsent[0].reports.len(), MAX_UNACKED_REPORTS);
    }

    // ---- the delivery property -------------------------------------------
    //
    // A model of the pool's side (this outbox, flushed the way the actor
    // flushes it), the cluster transport and the orchestrator's side.
    //
    // The transport is the one ractor_cluster gives: one ordered connection
    // between the pool and the orchestrator; a message is lost only with the
    // connection, and everything sent on it after that is lost too (the pool's
    // reference to the orchestrator is dead from then on, and the pool
    // re-registers when it notices). Acks may additionally be lost one by one.
    //
    // The orchestrator, like `on_reports`, acknowledges every batch through
    // `first_sequence + count - 1`, but only once what it applied is
    // journaled; a restart loses what was in flight to it and what it had
    // applied but not yet journaled. It skips reports it already holds (it
    // recognises them by task and epoch).

    #[derive(Debug, Clone)]
    enum Step {
        /// A worker finishes an attempt of incarnation `member`.
        Finish { member: u64 },
        /// The pool flushes, cutting runs into batches of `batch_size`.
        Flush { batch_size: usize },
        /// The oldest batch in flight reaches the orchestrator.
        DeliverBatch,
        /// The oldest batch in flight is lost, and the connection with it.
        LoseBatch,
        /// The orchestrator's journal catches up; the acks go out.
        Journal,
        /// The oldest ack in flight reaches the pool.
        DeliverAck,
        /// The oldest ack in flight is lost.
        LoseAck,
        /// The orchestrator restarts (or fails over) from its journal.
        RestartOrchestrator,
        /// The pool drops its registration: it noticed the connection or the
        /// orchestrator is gone, or this node got a new incarnation.
        Deregister,
        /// The pool, registered anew (over a new connection if the old one
        /// is dead), is welcomed.
        Welcome,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..=2).prop_map(|member| Step::Finish { member }),
            3 => (1usize..=3).prop_map(|batch_size| Step::Flush { batch_size }),
            4 => Just(Step::DeliverBatch),
            1 => Just(Step::LoseBatch),
            2 => Just(Step::Journal),
            3 => Just(Step::DeliverAck),
            1 => Just(Step::LoseAck),
            1 => Just(Step::RestartOrchestrator),
            1 => Just(Step::Deregister),
            2 => Just(Step::Welcome),
        ]
    }

    #[derive(Default)]
    struct ModelOrchestrator {
        /// Reports applied and journaled, with their sequence numbers.
        journaled: Vec<(u64, MemberId, TaskReport)>,
        /// Reports applied since the last journal write.
        applied: Vec<(u64, MemberId, TaskReport)>,
        /// Acks held back until the journal catches up.
        held_acks: Vec<u64>,
    }

    impl ModelOrchestrator {
        fn applied_through(&self) -> u64 {
            self.applied
                .last()
                .or(self.journaled.last())
                .map_or(0, |(sequence, _, _)| *sequence)
        }

        fn receive(&mut self, batch: ReportRun) -> Result<(), TestCaseError> {
            let applied_through = self.applied_through();
            // Its ack would cover the reports it never saw.
            prop_assert!(
                batch.first_sequence <= applied_through + 1,
                "batch from {} after only {} applied: a report was skipped",
                batch.first_sequence,
                applied_through
            );
            let count = batch.reports.len() as u64;
            for (sequence, report) in (batch.first_sequence..).zip(batch.reports) {
                if sequence > applied_through {
                    self.applied.push((sequence, batch.member.clone(), report));
                }
            }
            if count > 0 {
                self.held_acks.push(batch.first_sequence + count - 1);
            }
            Ok(())
        }

        fn journal(&mut self) -> Vec<u64> {
            self.journaled.append(&mut self.applied);
            std::mem::take(&mut self.held_acks)
        }

        fn restart(&mut self) {
            self.applied.clear();
            self.held_acks.clear();
        }
    }

    struct Cluster {
        outbox: ReportOutbox,
        /// What the pool finished, in order.
        finished: Vec<(MemberId, TaskReport)>,
        /// The pool holds a welcomed registration (it flushes only then).
        registered: bool,
        /// The connection the registration uses still works.
        connected: bool,
        batches_in_flight: VecDeque<ReportRun>,
        acks_in_flight: VecDeque<u64>,
        orchestrator: ModelOrchestrator,
    }

    impl Cluster {
        fn new() -> Self {
            Cluster {
                outbox: ReportOutbox::default(),
                finished: Vec::new(),
                registered: true,
                connected: true,
                batches_in_flight: VecDeque::new(),
                acks_in_flight: VecDeque::new(),
                orchestrator: ModelOrchestrator::default(),
            }
        }

        fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
            match step {
                Step::Finish { member } => {
                    let report = report(self.finished.len() as u128 + 1);
                    self.finished.push((incarnation(member), report.clone()));
                    prop_assert_eq!(self.outbox.push(incarnation(member), report), None);
                }
                Step::Flush { batch_size } => self.flush(batch_size),
                Step::DeliverBatch => {
                    if let Some(batch) = self.batches_in_flight.pop_front() {
                        self.orchestrator.receive(batch)?;
                    }
                }
                Step::LoseBatch => {
                    if !self.batches_in_flight.is_empty() {
                        self.batches_in_flight.clear();
                        self.connected = false;
                    }
                }
                Step::Journal => {
                    let acks = self.orchestrator.journal();
                    if self.connected {
                        self.acks_in_flight.extend(acks);
                    }
                }
                Step::DeliverAck => {
                    if let Some(through) = self.acks_in_flight.pop_front() {
                        self.outbox.ack(through);
                    }
                }
                Step::LoseAck => {
                    self.acks_in_flight.pop_front();
                }
                Step::RestartOrchestrator => {
                    self.orchestrator.restart();
                    self.batches_in_flight.clear();
                    self.connected = false;
                }
                Step::Deregister => self.deregister(),
                Step::Welcome => self.welcome(),
            }
            self.check_nothing_forgotten_early()
        }

        /// As the actor's `flush`: nothing goes out before the welcome.
        fn flush(&mut self, batch_size: usize) {
            if !self.registered {
                return;
            }
            for run in self.outbox.take_unsent() {
                let batches =
                    run.split(|reports| reports.chunks(batch_size).map(<[_]>::to_vec).collect());
                if self.connected {
                    self.batches_in_flight.extend(batches);
                }
            }
        }

        /// As the actor's `refresh_registration` dropping a registration.
        fn deregister(&mut self) {
            self.outbox.resend_all();
            self.registered = false;
        }

        /// As the actor's `on_welcome`; a welcome after the connection died
        /// came over a new one.
        fn welcome(&mut self) {
            if !self.registered {
                self.registered = true;
                self.connected = true;
            }
        }

        /// The pool forgets a report only after the orchestrator journaled it.
        fn check_nothing_forgotten_early(&self) -> Result<(), TestCaseError> {
            let forgotten = self.finished.len() - self.outbox.len();
            prop_assert!(
                forgotten <= self.orchestrator.journaled.len(),
                "{} reports left the outbox but only {} are journaled",
                forgotten,
                self.orchestrator.journaled.len()
            );
            Ok(())
        }

        /// Lets everything in flight arrive, journals it and acknowledges it,
        /// with nothing more lost. A pool whose connection died notices at its
        /// next housekeeping and registers again.
        fn settle(&mut self) -> Result<(), TestCaseError> {
            if !self.connected {
                self.deregister();
            }
            self.welcome();
            self.flush(2);
            while let Some(batch) = self.batches_in_flight.pop_front() {
                self.orchestrator.receive(batch)?;
            }
            self.acks_in_flight.extend(self.orchestrator.journal());
            while let Some(through) = self.acks_in_flight.pop_front() {
                self.outbox.ack(through);
            }
            self.check_nothing_forgotten_early()
        }

        /// What the orchestrator must have journaled: everything finished,
        /// numbered in order.
        fn expected_journal(&self) -> Vec<(u64, MemberId, TaskReport)> {
            (1..)
                .zip(self.finished.iter().cloned())
                .map(|(sequence, (member, report))| (sequence, member, report))
                .collect()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Across any interleaving of reports, flushes, lost batches, lost
        /// acks, orchestrator restarts and re-registrations, every report
        /// reaches the orchestrator's journal exactly once, in the order the
        /// pool finished them, without a gap the orchestrator's cumulative
        /// ack could skip; the pool forgets none before it is journaled, and
        /// after a registration with nothing lost it holds none.
        #[test]
        fn every_report_reaches_the_orchestrator_in_order(
            steps in proptest::collection::vec(step(), 0..120)
        ) {
            let mut cluster = Cluster::new();
            for step in steps {
                cluster.run(step)?;
            }
            cluster.settle()?;
            prop_assert_eq!(&cluster.orchestrator.journaled, &cluster.expected_journal());
            // A lone lost ack leaves its (journaled) reports in the outbox
            // until a later ack covers them or the pool registers again.
            cluster.deregister();
            cluster.settle()?;
            prop_assert!(cluster.outbox.is_empty(), "{} reports never acknowledged", cluster.outbox.len());
            prop_assert_eq!(&cluster.orchestrator.journaled, &cluster.expected_journal());
        }
    }
}
