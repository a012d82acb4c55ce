//! A circuit breaker per agent type.
//!
//! After `failures` consecutive failed attempts the circuit opens: tasks of
//! that type stay queued (they do not fail) while the dependency recovers.
//! After `recovery` it is half-open: `half_open_trials` tasks may run; if
//! they all succeed it closes, if any fails it opens again. Fatal errors and
//! lost nodes say nothing about the dependency and are not counted. Pure:
//! callers pass the time.

use std::time::{Duration, Instant};

use herd_config::CircuitSettings;
use herd_protocol::FailureKind;
use serde::Serialize;

/// Where a circuit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Tasks flow.
    Closed,
    /// Tasks wait.
    Open,
    /// A few trial tasks may run.
    HalfOpen,
}

impl CircuitState {
    /// The name used in the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// One agent type's breaker.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    settings: CircuitSettings,
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trials_admitted: u32,
    trials_succeeded: u32,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: CircuitSettings) -> Self {
        CircuitBreaker {
            settings,
            state: CircuitState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            trials_admitted: 0,
            trials_succeeded: 0,
        }
    }

    /// The state at `now` (an open circuit turns half-open once its recovery
    /// time has passed).
    pub fn state(&mut self, now: Instant) -> CircuitState {
        if self.state == CircuitState::Open
            && self
                .opened_at
                .is_some_and(|at| now.duration_since(at) >= self.settings.recovery)
        {
            self.state = CircuitState::HalfOpen;
            self.trials_admitted = 0;
            self.trials_succeeded = 0;
        }
        self.state
    }

    /// How many more tasks may be dispatched now (`u64::MAX` when closed).
    pub fn admissible(&mut self, now: Instant) -> u64 {
        match self.state(now) {
            CircuitState::Closed => u64::MAX,
            CircuitState::Open => 0,
            CircuitState::HalfOpen => u64::from(
                self.settings
                    .half_open_trials
                    .saturating_sub(self.trials_admitted),
            ),
        }
    }

    /// Records that `count` tasks were dispatched.
    pub fn admitted(&mut self, count: u64) {
        if self.state == CircuitState::HalfOpen {
            self.trials_admitted = self
                .trials_admitted
                .saturating_add(count.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// Records how an attempt ended; returns the new state if it changed.
    pub fn record(&mut self, failure: Option<FailureKind>, now: Instant) -> Option<CircuitState> {
        if self.settings.failures == 0 {
            return None;
        }
        let counts = match failure {
            None => false,
            Some(FailureKind::Retryable | FailureKind::Timeout | FailureKind::Crash) => true,
            Some(FailureKind::Fatal | FailureKind::NodeLost) => return None,
        };
        let before = self.state(now);
        match (before, counts) {
            (CircuitState::Closed, false) => self.consecutive_failures = 0,
            (CircuitState::Closed, true) => {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.settings.failures {
                    self.open(now);
                }
            }
            (CircuitState::HalfOpen, false) => {
                self.trials_succeeded += 1;
                if self.trials_succeeded >= self.settings.half_open_trials {
                    self.state = CircuitState::Closed;
                    self.consecutive_failures = 0;
                    self.opened_at = None;
                }
            }
            (CircuitState::HalfOpen, true) => self.open(now),
            // Attempts dispatched before the circuit opened may still end.
            (CircuitState::Open, _) => {}
        }
        (self.state != before).then_some(self.state)
    }

    fn open(&mut self, now: Instant) {
        self.state = CircuitState::Open;
        self.opened_at = Some(now);
        self.consecutive_failures = 0;
        self.trials_admitted = 0;
        self.trials_succeeded = 0;
    }

    /// When an open circuit will admit trials.
    pub fn reopens_at(&self) -> Option<Instant> {
        match self.state {
            CircuitState::Open => self.opened_at.map(|at| at + self.settings.recovery),
            _ => None,
        }
    }

    /// The recovery time (for messages).
    pub fn recovery(&self) -> Duration {
        self.settings.recovery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CircuitSettings {
            failures: 5,
            recovery: Duration::from_secs(60),
            half_open_trials: 3,
        })
    }

    #[test]
    fn five_failures_open_it_and_tasks_wait() {
        let mut circuit = breaker();
        let now = Instant::now();
        for _ in 0..4 {
            assert_eq!(circuit.record(Some(FailureKind::Retryable), now), None);
        }
        // A success in between resets the count.
        circuit.record(None, now);
        for _ in 0..4 {
            circuit.record(Some(FailureKind::Timeout), now);
        }
        assert_eq!(circuit.state(now), CircuitState::Closed);
        assert_eq!(
            circuit.record(Some(FailureKind::Crash), now),
            Some(CircuitState::Open)
        );
        assert_eq!(circuit.admissible(now + Duration::from_secs(59)), 0);
        assert_eq!(circuit.reopens_at(), Some(now + Duration::from_secs(60)));
    }

    #[test]
    fn half_open_admits_three_trials_and_closes_when_they_succeed() {
        let mut circuit = breaker();
        let now = Instant::now();
        for _ in 0..5 {
            circuit.record(Some(FailureKind::Retryable), now);
        }
        let later = now + Duration::from_secs(60);
        assert_eq!(circuit.state(later), CircuitState::HalfOpen);
        assert_eq!(circuit.admissible(later), 3);
        circuit.admitted(2);
        assert_eq!(circuit.admissible(later), 1);
        circuit.admitted(1);
        assert_eq!(circuit.admissible(later), 0);
        circuit.record(None, later);
        circuit.record(None, later);
        assert_eq!(circuit.record(None, later), Some(CircuitState::Closed));
        assert_eq!(circuit.admissible(later), u64::MAX);
    }

    #[test]
    fn a_failed_trial_opens_it_again_and_fatal_errors_do_not_count() {
        let mut circuit = breaker();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(circuit.record(Some(FailureKind::Fatal), now), None);
        }
        for _ in 0..5 {
            circuit.record(Some(FailureKind::Retryable), now);
        }
        let later = now + Duration::from_secs(61);
        assert_eq!(circuit.state(later), CircuitState::HalfOpen);
        assert_eq!(
            circuit.record(Some(FailureKind::Retryable), later),
            Some(CircuitState::Open)
        );
        assert_eq!(circuit.admissible(later + Duration::from_secs(59)), 0);
    }

    #[test]
    fn zero_failures_disables_the_breaker() {
        let mut circuit = CircuitBreaker::new(CircuitSettings {
            failures: 0,
            ..CircuitSettings::default()
        });
        let now = Instant::now();
        for _ in 0..100 {
            circuit.record(Some(FailureKind::Retryable), now);
        }
        assert_eq!(circuit.state(now), CircuitState::Closed);
    }
}
