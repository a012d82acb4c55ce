//! The stuck rule: when a pool that does not answer is declared stuck.
//!
//! A monitor pings each pool it watches with a deadline ([`PING_DEADLINE`]),
//! at most one ping in flight per pool, a new one every [`PROBE_INTERVAL`].
//! [`MISSES_TO_STUCK`] consecutive pings without an answer in time make the
//! pool stuck; any answer in time clears the count. One slow answer never
//! condemns a pool: a pool whose mailbox is merely busy answers well within
//! the deadline (its handlers never block), and the node itself is known to
//! be alive from membership's heartbeats, so the silence is the actor's.
//! This module decides; it sends nothing and keeps no clock.

use std::time::Duration;

/// How often a monitor probes each pool it watches.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may take before it counts as missed.
pub const PING_DEADLINE: Duration = Duration::from_secs(2);
/// Consecutive missed pings that make a pool stuck.
pub const MISSES_TO_STUCK: u32 = 3;

/// What one probe result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The pool answered in time.
    Responsive,
    /// The pool missed this many pings in a row, fewer than the threshold.
    Missed(u32),
    /// The pool missed [`MISSES_TO_STUCK`] pings in a row: restart it.
    Stuck,
}

/// The probe history of one pool actor (a restarted pool is a new actor
/// and starts with a fresh probe).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    consecutive_misses: u32,
    in_flight: bool,
}

impl Probe {
    /// True if a ping may be sent now (none is in flight).
    pub fn may_ping(&self) -> bool {
        !self.in_flight
    }

    /// Records that a ping was sent.
    pub fn sent(&mut self) {
        debug_assert!(!self.in_flight, "one ping in flight per pool");
        self.in_flight = true;
    }

    /// Records a ping's fate: answered within the deadline or not.
    pub fn answered(&mut self, in_time: bool) -> Verdict {
        self.in_flight = false;
        if in_time {
            self.consecutive_misses = 0;
            return Verdict::Responsive;
        }
        self.consecutive_misses += 1;
        if self.consecutive_misses >= MISSES_TO_STUCK {
            Verdict::Stuck
        } else {
            Verdict::Missed(self.consecutive_misses)
        }
    }

    /// Starts counting afresh (after a restart was requested or refused).
    pub fn reset(&mut self) {
        *self = Probe::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_consecutive_misses_make_a_pool_stuck() {
        let mut probe = Probe::default();
        let mut verdicts = Vec::new();
        for _ in 0..3 {
            assert!(probe.may_ping());
            probe.sent();
            assert!(!probe.may_ping(), "one ping in flight at a time");
            verdicts.push(probe.answered(false));
        }
        assert_eq!(
            verdicts,
            [Verdict::Missed(1), Verdict::Missed(2), Verdict::Stuck]
        );
    }

    #[test]
    fn an_answer_in_time_clears_the_misses() {
        let mut probe = Probe::default();
        probe.sent();
        probe.answered(false);
        probe.sent();
        probe.answered(false);
        probe.sent();
        assert_eq!(probe.answered(true), Verdict::Responsive);
        probe.sent();
        assert_eq!(probe.answered(false), Verdict::Missed(1));
    }

    #[test]
    fn a_reset_starts_counting_afresh() {
        let mut probe = Probe::default();
        for _ in 0..3 {
            probe.sent();
            probe.answered(false);
        }
        probe.reset();
        assert!(probe.may_ping());
        probe.sent();
        assert_eq!(probe.answered(false), Verdict::Missed(1));
    }

    #[test]
    fn detection_takes_about_three_deadlines() {
        // With a ping in flight at most once per pool, a silent pool is stuck
        // after MISSES_TO_STUCK deadlines (plus up to one interval each).
        let worst = (PING_DEADLINE + PROBE_INTERVAL) * MISSES_TO_STUCK;
        assert!(worst <= Duration::from_secs(10), "{worst:?}");
    }
}
