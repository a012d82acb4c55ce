//! The stub's own request limit, behaving like a provider's: at most N
//! admitted requests in any trailing 60 s. Pure: the caller passes the
//! time, in milliseconds on a clock that never goes backwards.

use std::collections::VecDeque;
use std::num::NonZeroU32;

/// The window the limit counts over.
pub const WINDOW_MS: u64 = 60_000;

/// A sliding-window log of admitted requests. Holds at most `limit`
/// timestamps, so memory is bounded by the configured limit.
#[derive(Debug)]
pub struct RateLimiter {
    limit: NonZeroU32,
    admitted: VecDeque<u64>,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; the figures for the `x-ratelimit-*` headers.
    Admitted {
        /// The configured limit.
        limit: u32,
        /// Requests still allowed in the current window.
        remaining: u32,
        /// Until the limit is back to its initial state (every admitted
        /// request has left the window), as OpenAI defines
        /// `x-ratelimit-reset-requests`.
        reset_ms: u64,
    },
    /// Refused: the window is full.
    Limited {
        /// The configured limit.
        limit: u32,
        /// Until the oldest admitted request leaves the window and a slot
        /// frees.
        retry_after_ms: u64,
    },
}

impl RateLimiter {
    /// A limiter allowing `limit` requests per minute.
    pub fn new(limit: NonZeroU32) -> Self {
        RateLimiter {
            limit,
            admitted: VecDeque::new(),
        }
    }

    /// Admits or refuses a request arriving at `now_ms`. Refused requests
    /// do not use a slot, as with real providers.
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        while self
            .admitted
            .front()
            .is_some_and(|&at| at + WINDOW_MS <= now_ms)
        {
            self.admitted.pop_front();
        }
        let limit = self.limit.get();
        if self.admitted.len() >= limit as usize {
            let oldest = self.admitted.front().copied().unwrap_or(now_ms);
            return Admission::Limited {
                limit,
                retry_after_ms: (oldest + WINDOW_MS).saturating_sub(now_ms),
            };
        }
        self.admitted.push_back(now_ms);
        Admission::Admitted {
            limit,
            remaining: limit - self.admitted.len() as u32,
            reset_ms: WINDOW_MS,
        }
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1 so a
/// client never retries in a tight loop.
pub fn retry_after_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// A duration the way OpenAI writes it in `x-ratelimit-reset-*` (Go's
/// duration format): `0s`, `250ms`, `1s`, `1.5s`, `6m0s`, `1h0m0s`.
pub fn openai_duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let fraction = ms % 1000;
    let mut seconds = seconds.to_string();
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        seconds.push('.');
        seconds.push_str(digits.trim_end_matches('0'));
    }
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_slides_with_the_window() {
        let mut limiter = RateLimiter::new(NonZeroU32::new(2).unwrap());
        assert!(matches!(
            limiter.admit(1_000),
            Admission::Admitted { remaining: 1, .. }
        ));
        assert!(matches!(
            limiter.admit(30_000),
            Admission::Admitted { remaining: 0, .. }
        ));
        assert_eq!(
            limiter.admit(40_000),
            Admission::Limited {
                limit: 2,
                retry_after_ms: 21_000
            }
        );
        // The refused request took no slot: the first one leaving frees one.
        assert!(matches!(
            limiter.admit(61_000),
            Admission::Admitted { remaining: 0, .. }
        ));
        assert!(matches!(limiter.admit(61_001), Admission::Limited { .. }));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(0), 1);
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(1_000), 1);
        assert_eq!(retry_after_seconds(1_001), 2);
    }

    #[test]
    fn durations_read_like_openai_headers() {
        assert_eq!(openai_duration(0), "0s");
        assert_eq!(openai_duration(250), "250ms");
        assert_eq!(openai_duration(1_000), "1s");
        assert_eq!(openai_duration(1_500), "1.5s");
        assert_eq!(openai_duration(60_000), "1m0s");
        assert_eq!(openai_duration(360_000), "6m0s");
        assert_eq!(openai_duration(90_250), "1m30.25s");
        assert_eq!(openai_duration(3_600_000), "1h0m0s");
    }
}
