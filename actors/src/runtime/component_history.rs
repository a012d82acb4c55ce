//! One supervised component's restart history: the restart intensity that
//! decides whether its supervisor restarts it or stops the node, and the
//! record `GET /v1/supervision` shows (restarts, last failure).
//!
//! Like Erlang/OTP's `intensity`/`period`: more than [`MAX_RESTARTS`]
//! failures within [`RESTART_PERIOD`] stop the node (its service manager
//! restarts the process). A restart a monitor *requests* is refused when it
//! would reach that limit, so a monitor can never make a node stop: it
//! reports instead. Pure bookkeeping; the caller passes the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use herd_protocol::UnixMillis;
use herd_protocol::messages::supervision::{ComponentKind, ComponentRecord, FailureRecord};

/// Restarts allowed per component within [`RESTART_PERIOD`].
pub const MAX_RESTARTS: usize = 3;
/// Window for [`MAX_RESTARTS`].
pub const RESTART_PERIOD: Duration = Duration::from_secs(60);

/// What the supervisor does after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Start the component again.
    Restart,
    /// Too many failures within the period: stop the node.
    StopNode,
}

/// The history of one component since the node started.
#[derive(Clone, Debug)]
pub struct ComponentHistory {
    component: ComponentKind,
    recent: VecDeque<Instant>,
    restarts: u32,
    requested_restarts: u32,
    last_failure: Option<FailureRecord>,
    running: bool,
}

impl ComponentHistory {
    /// A component that has never failed, running.
    pub fn new(component: ComponentKind) -> Self {
        ComponentHistory {
            component,
            recent: VecDeque::new(),
            restarts: 0,
            requested_restarts: 0,
            last_failure: None,
            running: true,
        }
    }

    /// Which component.
    pub fn component(&self) -> ComponentKind {
        self.component
    }

    /// Records a failure at `now` (wall clock `at`); says whether to restart.
    pub fn failed(
        &mut self,
        now: Instant,
        at: UnixMillis,
        reason: String,
        requested: bool,
    ) -> AfterFailure {
        self.forget_before(now);
        self.recent.push_back(now);
        self.last_failure = Some(FailureRecord { at, reason });
        self.running = false;
        if self.recent.len() > MAX_RESTARTS {
            return AfterFailure::StopNode;
        }
        self.restarts += 1;
        if requested {
            self.requested_restarts += 1;
        }
        AfterFailure::Restart
    }

    /// Records that the component runs again.
    pub fn restarted(&mut self) {
        self.running = true;
    }

    /// Whether a restart requested by a monitor may happen at `now`: only if
    /// it keeps the component within the restart intensity. Otherwise the
    /// number of restarts within the period.
    pub fn may_restart_on_request(&mut self, now: Instant) -> Result<(), u32> {
        self.forget_before(now);
        if self.recent.len() < MAX_RESTARTS {
            Ok(())
        } else {
            Err(self.recent.len() as u32)
        }
    }

    /// The record the API shows.
    pub fn record(&self) -> ComponentRecord {
        ComponentRecord {
            component: self.component,
            running: self.running,
            restarts: self.restarts,
            requested_restarts: self.requested_restarts,
            last_failure: self.last_failure.clone(),
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= RESTART_PERIOD)
        {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(history: &mut ComponentHistory, now: Instant, requested: bool) -> AfterFailure {
        history.failed(now, UnixMillis(1), "boom".to_string(), requested)
    }

    #[test]
    fn a_fourth_failure_within_a_minute_stops_the_node() {
        let mut history = ComponentHistory::new(ComponentKind::Pool);
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(
                fail(&mut history, start + Duration::from_secs(i), false),
                AfterFailure::Restart
            );
        }
        assert_eq!(
            fail(&mut history, start + Duration::from_secs(3), false),
            AfterFailure::StopNode
        );
        assert_eq!(history.record().restarts, 3);
    }

    #[test]
    fn requested_restarts_stop_before_the_limit_so_a_monitor_never_stops_a_node() {
        let mut history = ComponentHistory::new(ComponentKind::Pool);
        let start = Instant::now();
        for i in 0..3 {
            let now = start + Duration::from_secs(i);
            assert_eq!(history.may_restart_on_request(now), Ok(()));
            assert_eq!(fail(&mut history, now, true), AfterFailure::Restart);
            history.restarted();
        }
        assert_eq!(
            history.may_restart_on_request(start + Duration::from_secs(10)),
            Err(3)
        );
        // A minute after the first, one restart is allowed again.
        assert_eq!(
            history.may_restart_on_request(start + Duration::from_secs(60)),
            Ok(())
        );
        let record = history.record();
        assert_eq!((record.restarts, record.requested_restarts), (3, 3));
        assert!(record.running);
        assert_eq!(record.last_failure.unwrap().reason, "boom");
    }
}
