//! Restart intensity: how quickly a failing worker slot may be restarted.
//!
//! Like Erlang/OTP's `intensity`/`period`: up to `max_restarts` restarts
//! within `period` happen at once; beyond that each further restart waits,
//! doubling from `initial_delay` up to `max_delay`, so a handler that crashes
//! on every task cannot spin a CPU.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One slot's restart history and policy.
#[derive(Clone, Debug)]
pub struct RestartIntensity {
    max_restarts: usize,
    period: Duration,
    initial_delay: Duration,
    max_delay: Duration,
    recent: VecDeque<Instant>,
    delay: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity::new(
            5,
            Duration::from_secs(10),
            Duration::from_millis(100),
            Duration::from_secs(30),
        )
    }
}

impl RestartIntensity {
    /// A policy allowing `max_restarts` immediate restarts per `period`.
    pub fn new(
        max_restarts: usize,
        period: Duration,
        initial_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        RestartIntensity {
            max_restarts,
            period,
            initial_delay,
            max_delay,
            recent: VecDeque::new(),
            delay: initial_delay,
        }
    }

    /// Records a failure at `now`; returns how long to wait before restarting.
    pub fn next_delay(&mut self, now: Instant) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.period)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() <= self.max_restarts {
            self.delay = self.initial_delay;
            return Duration::ZERO;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max_delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_quick_restarts_then_exponential_backoff_capped_at_thirty_seconds() {
        let mut intensity = RestartIntensity::default();
        let start = Instant::now();
        let delays: Vec<u64> = (0..14)
            .map(|i| {
                intensity
                    .next_delay(start + Duration::from_millis(i))
                    .as_millis() as u64
            })
            .collect();
        assert_eq!(&delays[..5], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &delays[5..],
            &[100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600]
        );
        assert_eq!(
            intensity.next_delay(start + Duration::from_millis(20)),
            Duration::from_secs(30)
        );
        // After a quiet period, restarts are immediate again.
        assert_eq!(
            intensity.next_delay(start + Duration::from_secs(60)),
            Duration::ZERO
        );
    }
}
