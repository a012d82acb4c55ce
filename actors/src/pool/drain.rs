//! Where a drain stands: who asked for it, whether the running attempts have
//! settled, whether it is over.
//!
//! A drain goes through three stages: under way (running attempts may
//! finish within the grace period), settled (none runs any more; the last
//! reports wait for their acknowledgements) and finished (every requester has
//! been answered). Plain bookkeeping: the pool actor acts on what it says.

use tokio::sync::oneshot;

/// A drain of the pool, from its first request on.
///
/// Guarantees: it settles once and finishes once, in that order; every
/// request from this node is answered exactly once, at the finish or at once
/// if it comes later; the node is told at most once, and only if the
/// orchestrator asked for the drain before it finished.
#[derive(Debug)]
pub(super) struct Drain {
    done: Vec<oneshot::Sender<()>>,
    /// Running attempts ended or were handed back; waiting for acks.
    settled: bool,
    /// Drained: later requests are answered at once.
    finished: bool,
    /// The node must be told (drain requested by the orchestrator).
    requested_remotely: bool,
}

/// What a drain that has just finished owes its requesters.
#[derive(Debug)]
pub(super) struct FinishedDrain {
    /// Requests from this node, each to be answered.
    pub done: Vec<oneshot::Sender<()>>,
    /// The orchestrator asked for the drain: the node must learn it may stop.
    pub tell_node: bool,
}

impl Drain {
    /// A drain asked for by this node, answered on `done` when drained, or
    /// (without `done`) by the orchestrator.
    pub(super) fn new(done: Option<oneshot::Sender<()>>) -> Self {
        Drain {
            requested_remotely: done.is_none(),
            done: done.into_iter().collect(),
            settled: false,
            finished: false,
        }
    }

    /// Adds another request for the same drain; answers it at once if the
    /// drain is already over.
    pub(super) fn join(&mut self, done: Option<oneshot::Sender<()>>) {
        if self.finished {
            if let Some(done) = done {
                let _ = done.send(());
            }
            return;
        }
        self.requested_remotely |= done.is_none();
        self.done.extend(done);
    }

    /// Whether no attempt runs any more, so only acknowledgements are awaited.
    pub(super) fn is_settled(&self) -> bool {
        self.settled
    }

    /// Settles the drain if no attempt runs any more. True only the time it
    /// settles: then the pool sends its last reports and waits for their acks.
    pub(super) fn settle(&mut self, attempts_running: bool) -> bool {
        if self.settled || attempts_running {
            return false;
        }
        self.settled = true;
        true
    }

    /// Ends the drain. `None` if it had already ended.
    pub(super) fn finish(&mut self) -> Option<FinishedDrain> {
        if self.finished {
            return None;
        }
        debug_assert!(self.settled, "a drain finishes only once settled");
        self.finished = true;
        Some(FinishedDrain {
            done: std::mem::take(&mut self.done),
            tell_node: std::mem::take(&mut self.requested_remotely),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(done: Option<oneshot::Sender<()>>) -> Drain {
        let mut drain = Drain::new(done);
        assert!(drain.settle(false));
        drain
    }

    #[test]
    fn a_drain_settles_only_once_no_attempt_runs() {
        let mut drain = Drain::new(None);
        assert!(!drain.settle(true));
        assert!(!drain.is_settled());
        assert!(drain.settle(false));
        assert!(drain.is_settled());
        assert!(!drain.settle(false), "settling happens once");
    }

    #[test]
    fn a_local_drain_answers_its_requester_and_does_not_tell_the_node() {
        let (done, mut answered) = oneshot::channel();
        let mut drain = settled(Some(done));
        let finished = drain.finish().expect("first finish");
        assert!(!finished.tell_node);
        assert_eq!(finished.done.len(), 1);
        for done in finished.done {
            done.send(()).unwrap();
        }
        assert!(answered.try_recv().is_ok());
    }

    #[test]
    fn a_drain_the_orchestrator_asked_for_tells_the_node_once() {
        let mut drain = settled(None);
        assert!(drain.finish().expect("first finish").tell_node);
        assert!(drain.finish().is_none(), "finishing happens once");
    }

    #[test]
    fn requests_during_a_drain_are_answered_when_it_finishes() {
        let (first, _first_answer) = oneshot::channel();
        let (second, mut second_answer) = oneshot::channel();
        let mut drain = Drain::new(Some(first));
        drain.join(Some(second));
        drain.join(None);
        assert!(
            second_answer.try_recv().is_err(),
            "not answered before the finish"
        );
        assert!(drain.settle(false));
        let finished = drain.finish().expect("first finish");
        assert_eq!(finished.done.len(), 2);
        assert!(finished.tell_node, "the orchestrator joined the drain");
    }

    #[test]
    fn a_request_after_the_drain_finished_is_answered_at_once() {
        let mut drain = settled(None);
        drain.finish();
        let (late, mut answered) = oneshot::channel();
        drain.join(Some(late));
        assert!(answered.try_recv().is_ok());
        drain.join(None);
        assert!(drain.finish().is_none(), "the node is not told again");
    }
}
