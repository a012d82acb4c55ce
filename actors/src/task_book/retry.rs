//! When a failed attempt may run again.
//!
//! Defaults follow the workflow retry pattern (seed 000): exponential backoff
//! from 1 s, doubling, capped at 300 s, plus up to 1 s of jitter. The jitter is
//! derived from the task id and attempt number rather than drawn at random, so
//! the task book stays deterministic (replaying a journal schedules the same
//! retries) while retries of many tasks still spread out.

use std::time::Duration;

use herd_protocol::{RetrySpec, TaskId};
use serde::{Deserialize, Serialize};

/// The shape of the delay between attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Backoff {
    /// `initial × factor^(n-1)`, capped at `max`.
    Exponential {
        /// Delay before the second attempt.
        initial: Duration,
        /// Growth per attempt.
        factor: f64,
        /// Cap.
        max: Duration,
    },
    /// The same delay every time.
    Linear {
        /// The delay.
        delay: Duration,
    },
}

/// How long to wait before retrying.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay shape.
    pub backoff: Backoff,
    /// Up to this much extra delay, spread across tasks.
    pub jitter: Duration,
}

impl Default for RetryPolicy {
    /// [`herd_protocol::defaults::DEFAULT_RETRY`], with its second of jitter.
    fn default() -> Self {
        RetryPolicy::from(&herd_protocol::defaults::DEFAULT_RETRY)
    }
}

impl From<&RetrySpec> for RetryPolicy {
    /// Exponential specs get the default second of jitter; linear ones none
    /// (a linear policy asks for a fixed delay).
    fn from(spec: &RetrySpec) -> Self {
        let delays = herd_protocol::limits::RETRY_DELAY_S_RANGE;
        let seconds = |s: f64| Duration::from_secs_f64(s.clamp(*delays.start(), *delays.end()));
        match spec {
            RetrySpec::Exponential {
                initial_s,
                factor,
                max_s,
            } => RetryPolicy {
                backoff: Backoff::Exponential {
                    initial: seconds(*initial_s),
                    factor: *factor,
                    max: seconds(*max_s),
                },
                jitter: Duration::from_secs(1),
            },
            RetrySpec::Linear { delay_s } => RetryPolicy {
                backoff: Backoff::Linear {
                    delay: seconds(*delay_s),
                },
                jitter: Duration::ZERO,
            },
        }
    }
}

impl RetryPolicy {
    /// No delay at all (used by tests that drive retries directly).
    #[cfg(test)]
    pub fn immediate() -> Self {
        RetryPolicy {
            backoff: Backoff::Linear {
                delay: Duration::ZERO,
            },
            jitter: Duration::ZERO,
        }
    }

    /// Delay after the `failed_attempts`-th failure of `task` (1-based).
    pub fn delay(&self, task: TaskId, failed_attempts: u32) -> Duration {
        let base = match &self.backoff {
            Backoff::Exponential {
                initial,
                factor,
                max,
            } => {
                let exponent = failed_attempts.saturating_sub(1).min(64) as i32;
                let scaled = initial.as_secs_f64() * factor.powi(exponent);
                Duration::from_secs_f64(scaled.min(max.as_secs_f64()))
            }
            Backoff::Linear { delay } => *delay,
        };
        base + self.jitter.mul_f64(unit_fraction(task, failed_attempts))
    }
}

/// A well-mixed value in [0, 1) determined by the task and attempt.
fn unit_fraction(task: TaskId, attempt: u32) -> f64 {
    // splitmix64 finaliser
    let mut x = (task.0 as u64)
        ^ ((task.0 >> 64) as u64)
        ^ (attempt as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_from_one_second_and_caps_at_five_minutes() {
        let policy = RetryPolicy {
            jitter: Duration::ZERO,
            ..RetryPolicy::default()
        };
        let task = TaskId(42);
        let delays: Vec<u64> = (1..=11).map(|n| policy.delay(task, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn jitter_is_bounded_deterministic_and_spread() {
        let policy = RetryPolicy::default();
        let delays: Vec<Duration> = (0..200).map(|n| policy.delay(TaskId(n), 1)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(1) && *d < Duration::from_secs(2))
        );
        assert_eq!(policy.delay(TaskId(7), 3), policy.delay(TaskId(7), 3));
        let distinct: std::collections::BTreeSet<_> =
            delays.iter().map(|d| d.as_millis()).collect();
        assert!(
            distinct.len() > 150,
            "jitter should spread retries, got {} distinct",
            distinct.len()
        );
    }
}
