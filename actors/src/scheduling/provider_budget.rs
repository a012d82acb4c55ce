//! One LLM provider's cluster-wide budget, as the orchestrator holds it.
//!
//! A provider limits requests and tokens per minute and calls in flight for
//! the whole account, whichever node calls. The orchestrator therefore grants
//! every call (a task of an `llm` agent type is dispatched only with a grant)
//! and keeps, per provider:
//!
//! - the calls started in the last 60 s (a sliding window, so no 60 s window
//!   ever holds more than `requests_per_minute` calls or `tokens_per_minute`
//!   tokens; a call's tokens are estimated when granted and replaced by what
//!   the provider counted once the call ends),
//! - the calls in flight (released when the call or its attempt ends),
//! - what the provider said about its own limits (`Retry-After` pauses it;
//!   `x-ratelimit-remaining-*` caps grants until the reset),
//! - a circuit breaker fed by 5xx answers, timeouts and refused connections.
//!
//! Pure: callers pass the time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use herd_config::CircuitSettings;
use herd_protocol::messages::provider::{ProviderCallStatus, RateLimitHint};
use herd_protocol::{AssignmentEpoch, FailureKind, TaskId};

use super::circuit::{CircuitBreaker, CircuitState};

/// The span over which per-minute limits are kept: a minute, plus a second
/// for the time between a grant here and the call's arrival at the provider,
/// which counts by its own clock (a call granted just over a minute after
/// another may otherwise arrive just under a minute after it).
pub const WINDOW: Duration = Duration::from_secs(61);

/// Longest pause after a 429 that carried no `Retry-After` (the pause
/// doubles with each such 429 in a row, from one second).
const MAX_UNSPECIFIED_PAUSE: Duration = Duration::from_secs(60);

/// A call's identity: the attempt that makes it.
pub type CallKey = (TaskId, AssignmentEpoch);

/// A provider's limits; `None` means the provider sets none.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetLimits {
    /// Calls started in any 60 s window.
    pub requests_per_minute: Option<u32>,
    /// Tokens used in any 60 s window.
    pub tokens_per_minute: Option<u64>,
    /// Calls in flight at once.
    pub max_concurrent: Option<u32>,
    /// How long a task may wait for this provider before falling back.
    pub max_wait: Duration,
}

/// Why a provider can grant no call now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shortage {
    /// Its circuit is open (it has been failing); trials from `until`.
    CircuitOpen {
        /// When trial calls are admitted.
        until: Option<Instant>,
    },
    /// It said to wait (`Retry-After`, or a 429).
    Paused {
        /// When it may be called again.
        until: Instant,
    },
    /// Its own headers said no requests (or tokens) remain until a reset.
    ProviderAllowance {
        /// The reset.
        until: Instant,
    },
    /// `requests_per_minute` calls started in the last minute.
    RequestsPerMinute {
        /// When the oldest of them leaves the window.
        until: Instant,
    },
    /// `tokens_per_minute` would be exceeded.
    TokensPerMinute {
        /// When enough tokens leave the window.
        until: Instant,
    },
    /// `max_concurrent` calls are in flight.
    Concurrency,
}

impl Shortage {
    /// When the shortage ends, if that can be known (calls in flight end
    /// when they end).
    pub fn until(self) -> Option<Instant> {
        match self {
            Shortage::CircuitOpen { until } => until,
            Shortage::Paused { until }
            | Shortage::ProviderAllowance { until }
            | Shortage::RequestsPerMinute { until }
            | Shortage::TokensPerMinute { until } => Some(until),
            Shortage::Concurrency => None,
        }
    }

    /// A few words for task views and logs.
    pub fn describe(self, now: Instant) -> String {
        let wait = |until: Instant| {
            let seconds = until.saturating_duration_since(now).as_secs_f64();
            format!("{seconds:.1} s")
        };
        match self {
            Shortage::CircuitOpen { until } => match until {
                Some(until) => format!(
                    "its circuit is open after repeated failures; trial calls in {}",
                    wait(until)
                ),
                None => "its circuit is open after repeated failures".to_string(),
            },
            Shortage::Paused { until } => {
                format!("it asked to wait (Retry-After); {} left", wait(until))
            }
            Shortage::ProviderAllowance { until } => {
                format!(
                    "its own rate-limit headers say none remain; reset in {}",
                    wait(until)
                )
            }
            Shortage::RequestsPerMinute { until } => format!(
                "requests_per_minute is used up; room again in {}",
                wait(until)
            ),
            Shortage::TokensPerMinute { until } => {
                format!(
                    "tokens_per_minute is used up; room again in {}",
                    wait(until)
                )
            }
            Shortage::Concurrency => "max_concurrent calls are in flight".to_string(),
        }
    }
}

/// Calls and tokens already promised in the current dispatch round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    /// Calls.
    pub calls: u32,
    /// Their estimated tokens.
    pub tokens: u64,
}

/// How much of a provider's budget is in use (for metrics, the health
/// report and `/v1/cluster`).
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetUsage {
    /// Calls started in the last minute.
    pub requests_last_minute: u64,
    /// Tokens used (or estimated, for calls not yet ended) in the last minute.
    pub tokens_last_minute: u64,
    /// Calls in flight.
    pub in_flight: u32,
    /// The largest of requests, tokens and calls in flight over their limits
    /// (0.0–1.0; 1.0 while paused; 0.0 without limits).
    pub in_use: f64,
    /// Time left of a pause the provider asked for.
    pub paused_for: Duration,
    /// The circuit's state.
    pub circuit: CircuitState,
}

/// One provider's budget. See the module documentation.
#[derive(Clone, Debug)]
pub struct ProviderBudget {
    limits: BudgetLimits,
    /// Calls of the last minute in start order, and their tokens by key.
    order: VecDeque<(Instant, CallKey)>,
    started: HashMap<CallKey, u64>,
    window_tokens: u64,
    in_flight: std::collections::HashSet<CallKey>,
    paused_until: Option<Instant>,
    unspecified_pauses: u32,
    request_allowance: Option<(u64, Instant)>,
    token_allowance: Option<(u64, Instant)>,
    circuit: CircuitBreaker,
    /// Tokens a call typically uses (moving average of what the provider
    /// counted); the estimate reserved when a call is granted.
    typical_tokens: f64,
}

impl ProviderBudget {
    /// A budget with nothing used; `first_estimate` is the token estimate
    /// for calls until the provider has counted some.
    pub fn new(limits: BudgetLimits, circuit: CircuitSettings, first_estimate: u64) -> Self {
        ProviderBudget {
            limits,
            order: VecDeque::new(),
            started: HashMap::new(),
            window_tokens: 0,
            in_flight: std::collections::HashSet::new(),
            paused_until: None,
            unspecified_pauses: 0,
            request_allowance: None,
            token_allowance: None,
            circuit: CircuitBreaker::new(circuit),
            typical_tokens: first_estimate.max(1) as f64,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &BudgetLimits {
        &self.limits
    }

    /// The tokens reserved for one call.
    pub fn estimate(&self) -> u64 {
        self.typical_tokens.ceil() as u64
    }

    fn prune(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.order.pop_front();
            if let Some(tokens) = self.started.remove(&key) {
                self.window_tokens -= tokens;
            }
        }
        if self.paused_until.is_some_and(|until| until <= now) {
            self.paused_until = None;
        }
        if self
            .request_allowance
            .is_some_and(|(_, until)| until <= now)
        {
            self.request_allowance = None;
        }
        if self.token_allowance.is_some_and(|(_, until)| until <= now) {
            self.token_allowance = None;
        }
    }

    /// How many calls may start now beyond `reserved`, or why none may.
    pub fn room(&mut self, now: Instant, reserved: Reserved) -> Result<u32, Shortage> {
        self.prune(now);
        let estimate = self.estimate();
        let mut room = u64::from(u32::MAX);
        let admissible = self.circuit.admissible(now);
        if admissible <= u64::from(reserved.calls) {
            return Err(Shortage::CircuitOpen {
                until: self.circuit.reopens_at(),
            });
        }
        room = room.min(admissible - u64::from(reserved.calls));
        if let Some(until) = self.paused_until {
            return Err(Shortage::Paused { until });
        }
        if let Some((remaining, until)) = self.request_allowance {
            let left = remaining.saturating_sub(u64::from(reserved.calls));
            if left == 0 {
                return Err(Shortage::ProviderAllowance { until });
            }
            room = room.min(left);
        }
        if let Some((remaining, until)) = self.token_allowance {
            let left = remaining.saturating_sub(reserved.tokens) / estimate;
            if left == 0 {
                return Err(Shortage::ProviderAllowance { until });
            }
            room = room.min(left);
        }
        if let Some(limit) = self.limits.requests_per_minute {
            let used = self.order.len() as u64 + u64::from(reserved.calls);
            let left = u64::from(limit).saturating_sub(used);
            if left == 0 {
                // With the window empty, this round's own reservations fill it.
                let until = self
                    .order
                    .front()
                    .map_or(now + WINDOW, |(at, _)| *at + WINDOW);
                return Err(Shortage::RequestsPerMinute { until });
            }
            room = room.min(left);
        }
        if let Some(limit) = self.limits.tokens_per_minute {
            let used = self.window_tokens + reserved.tokens;
            let left = limit.saturating_sub(used) / estimate;
            if left == 0 {
                return Err(Shortage::TokensPerMinute {
                    until: self.tokens_free_at(used + estimate - limit.min(used + estimate), now),
                });
            }
            room = room.min(left);
        }
        if let Some(limit) = self.limits.max_concurrent {
            let used = self.in_flight.len() as u64 + u64::from(reserved.calls);
            let left = u64::from(limit).saturating_sub(used);
            if left == 0 {
                return Err(Shortage::Concurrency);
            }
            room = room.min(left);
        }
        Ok(room as u32)
    }

    /// When at least `needed` tokens will have left the window.
    fn tokens_free_at(&self, needed: u64, now: Instant) -> Instant {
        let mut freed = 0;
        for (at, key) in &self.order {
            freed += self.started.get(key).copied().unwrap_or(0);
            if freed >= needed {
                return *at + WINDOW;
            }
        }
        self.order
            .back()
            .map_or(now + WINDOW, |(at, _)| *at + WINDOW)
    }

    /// True if waiting out `shortage` is better than falling back: it ends
    /// within `max_wait`, or it is calls in flight (which end soon).
    pub fn worth_waiting(&self, shortage: Shortage, now: Instant) -> bool {
        match shortage {
            Shortage::CircuitOpen { .. } => false,
            Shortage::Concurrency => true,
            other => other
                .until()
                .is_none_or(|until| until.saturating_duration_since(now) <= self.limits.max_wait),
        }
    }

    /// Records a granted call.
    pub fn grant(&mut self, key: CallKey, now: Instant) {
        let tokens = self.estimate();
        self.order.push_back((now, key));
        if let Some(previous) = self.started.insert(key, tokens) {
            self.window_tokens -= previous;
        }
        self.window_tokens += tokens;
        self.in_flight.insert(key);
        self.circuit.admitted(1);
        if let Some((remaining, _)) = &mut self.request_allowance {
            *remaining = remaining.saturating_sub(1);
        }
        if let Some((remaining, _)) = &mut self.token_allowance {
            *remaining = remaining.saturating_sub(tokens);
        }
    }

    /// A granted call ended as the calling node reports: its tokens replace
    /// the estimate, the provider's hints apply at once, and the circuit
    /// learns whether the provider is well. Returns the circuit's new state
    /// when it changed.
    pub fn call_ended(
        &mut self,
        key: CallKey,
        status: ProviderCallStatus,
        tokens: u64,
        hint: &RateLimitHint,
        now: Instant,
    ) -> Option<CircuitState> {
        self.in_flight.remove(&key);
        if let Some(estimated) = self.started.get_mut(&key) {
            self.window_tokens = self.window_tokens - *estimated + tokens;
            *estimated = tokens;
        }
        if status == ProviderCallStatus::Ok && tokens > 0 {
            // A moving average over roughly the last 20 calls.
            self.typical_tokens += (tokens as f64 - self.typical_tokens) / 20.0;
        }
        self.apply_hint(status, hint, now);
        match status {
            ProviderCallStatus::Ok => self.circuit.record(None, now),
            ProviderCallStatus::Unavailable => {
                self.circuit.record(Some(FailureKind::Retryable), now)
            }
            // Limits, refused keys and bad requests say nothing about
            // whether the provider is up.
            _ => None,
        }
    }

    fn apply_hint(&mut self, status: ProviderCallStatus, hint: &RateLimitHint, now: Instant) {
        let pause = |ms: u64| now + Duration::from_millis(ms);
        let mut pause_until = hint.retry_after_ms.map(pause);
        if status == ProviderCallStatus::RateLimited {
            if pause_until.is_none() {
                // A 429 without Retry-After: back off 1 s, 2 s, 4 s … 60 s.
                let seconds = 1u64 << self.unspecified_pauses.min(6);
                pause_until = Some(now + Duration::from_secs(seconds).min(MAX_UNSPECIFIED_PAUSE));
                self.unspecified_pauses += 1;
            }
        } else if status == ProviderCallStatus::Ok {
            self.unspecified_pauses = 0;
        }
        if let Some(until) = pause_until {
            self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        }
        if let (Some(remaining), Some(reset)) = (hint.remaining_requests, hint.reset_requests_ms) {
            self.request_allowance = Some((remaining, pause(reset)));
        }
        if let (Some(remaining), Some(reset)) = (hint.remaining_tokens, hint.reset_tokens_ms) {
            self.token_allowance = Some((remaining, pause(reset)));
        }
    }

    /// Keeps only the calls in flight for which `still_running` holds (the
    /// task book is the truth about which attempts run).
    pub fn retain_in_flight(&mut self, mut still_running: impl FnMut(CallKey) -> bool) {
        self.in_flight.retain(|key| still_running(*key));
    }

    /// How much is in use now.
    pub fn usage(&mut self, now: Instant) -> BudgetUsage {
        self.prune(now);
        let ratio = |used: u64, limit: Option<u64>| {
            limit.map_or(0.0, |limit| used as f64 / limit.max(1) as f64)
        };
        let paused_for = self
            .paused_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let in_use = if paused_for > Duration::ZERO {
            1.0
        } else {
            ratio(
                self.order.len() as u64,
                self.limits.requests_per_minute.map(u64::from),
            )
            .max(ratio(self.window_tokens, self.limits.tokens_per_minute))
            .max(ratio(
                self.in_flight.len() as u64,
                self.limits.max_concurrent.map(u64::from),
            ))
            .min(1.0)
        };
        BudgetUsage {
            requests_last_minute: self.order.len() as u64,
            tokens_last_minute: self.window_tokens,
            in_flight: self.in_flight.len() as u32,
            in_use,
            paused_for,
            circuit: self.circuit.state(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(rpm: Option<u32>, tpm: Option<u64>, concurrent: Option<u32>) -> BudgetLimits {
        BudgetLimits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            max_concurrent: concurrent,
            max_wait: Duration::from_secs(5),
        }
    }

    fn circuit() -> CircuitSettings {
        CircuitSettings {
            failures: 3,
            recovery: Duration::from_secs(10),
            half_open_trials: 1,
        }
    }

    fn key(n: u128) -> CallKey {
        (TaskId(n), AssignmentEpoch(n as u64))
    }

    #[test]
    fn requests_per_minute_holds_over_a_sliding_window() {
        let start = Instant::now();
        let mut budget = ProviderBudget::new(limits(Some(3), None, None), circuit(), 10);
        assert_eq!(budget.room(start, Reserved::default()), Ok(3));
        for n in 0..3 {
            budget.grant(key(n), start + Duration::from_secs(n as u64 * 10));
        }
        let at = start + Duration::from_secs(30);
        assert_eq!(
            budget.room(at, Reserved::default()),
            Err(Shortage::RequestsPerMinute {
                until: start + WINDOW
            })
        );
        // The first call leaves the window a minute (and the margin) after
        // it started.
        assert_eq!(budget.room(start + WINDOW, Reserved::default()), Ok(1));
    }

    #[test]
    fn reservations_of_the_current_round_count() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(Some(10), None, Some(4)), circuit(), 10);
        assert_eq!(
            budget.room(
                now,
                Reserved {
                    calls: 3,
                    tokens: 30
                }
            ),
            Ok(1)
        );
        assert_eq!(
            budget.room(
                now,
                Reserved {
                    calls: 4,
                    tokens: 40
                }
            ),
            Err(Shortage::Concurrency)
        );
    }

    #[test]
    fn tokens_are_estimated_then_settled_to_what_the_provider_counted() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(None, Some(1000), None), circuit(), 400);
        assert_eq!(budget.room(now, Reserved::default()), Ok(2));
        budget.grant(key(1), now);
        budget.grant(key(2), now);
        assert!(matches!(
            budget.room(now, Reserved::default()),
            Err(Shortage::TokensPerMinute { .. })
        ));
        // The calls used far less than estimated: room comes back at once.
        for n in [1, 2] {
            budget.call_ended(
                key(n),
                ProviderCallStatus::Ok,
                50,
                &RateLimitHint::default(),
                now,
            );
        }
        assert_eq!(budget.usage(now).tokens_last_minute, 100);
        assert!(budget.room(now, Reserved::default()).unwrap() >= 2);
    }

    #[test]
    fn concurrency_is_released_when_the_call_or_its_attempt_ends() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(None, None, Some(2)), circuit(), 10);
        budget.grant(key(1), now);
        budget.grant(key(2), now);
        assert_eq!(
            budget.room(now, Reserved::default()),
            Err(Shortage::Concurrency)
        );
        // The node reported the first call; the second's attempt ended
        // without a report (its node was lost).
        budget.call_ended(
            key(1),
            ProviderCallStatus::Ok,
            5,
            &RateLimitHint::default(),
            now,
        );
        assert_eq!(budget.room(now, Reserved::default()), Ok(1));
        budget.retain_in_flight(|_| false);
        assert_eq!(budget.room(now, Reserved::default()), Ok(2));
    }

    #[test]
    fn retry_after_pauses_the_provider_at_once() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(Some(100), None, None), circuit(), 10);
        budget.grant(key(1), now);
        let hint = RateLimitHint {
            retry_after_ms: Some(2000),
            ..RateLimitHint::default()
        };
        budget.call_ended(key(1), ProviderCallStatus::RateLimited, 0, &hint, now);
        let paused = Shortage::Paused {
            until: now + Duration::from_secs(2),
        };
        assert_eq!(budget.room(now, Reserved::default()), Err(paused));
        assert_eq!(budget.usage(now).in_use, 1.0);
        assert_eq!(
            budget.room(now + Duration::from_millis(1999), Reserved::default()),
            Err(paused)
        );
        assert_eq!(
            budget.room(now + Duration::from_secs(2), Reserved::default()),
            Ok(99)
        );
    }

    #[test]
    fn a_429_without_retry_after_backs_off_exponentially() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(None, None, None), circuit(), 10);
        let none = RateLimitHint::default();
        budget.call_ended(key(1), ProviderCallStatus::RateLimited, 0, &none, now);
        assert_eq!(
            budget.room(now, Reserved::default()),
            Err(Shortage::Paused {
                until: now + Duration::from_secs(1)
            })
        );
        let later = now + Duration::from_secs(1);
        budget.call_ended(key(2), ProviderCallStatus::RateLimited, 0, &none, later);
        assert_eq!(
            budget.room(later, Reserved::default()),
            Err(Shortage::Paused {
                until: later + Duration::from_secs(2)
            })
        );
    }

    #[test]
    fn remaining_headers_cap_grants_until_the_reset() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(Some(1000), None, None), circuit(), 10);
        let hint = RateLimitHint {
            remaining_requests: Some(2),
            reset_requests_ms: Some(500),
            ..RateLimitHint::default()
        };
        budget.grant(key(1), now);
        budget.call_ended(key(1), ProviderCallStatus::Ok, 10, &hint, now);
        assert_eq!(budget.room(now, Reserved::default()), Ok(2));
        budget.grant(key(2), now);
        budget.grant(key(3), now);
        assert_eq!(
            budget.room(now, Reserved::default()),
            Err(Shortage::ProviderAllowance {
                until: now + Duration::from_millis(500)
            })
        );
        assert!(
            budget
                .room(now + Duration::from_millis(500), Reserved::default())
                .unwrap()
                > 2
        );
    }

    #[test]
    fn failures_open_the_circuit_and_waiting_is_not_worth_it() {
        let now = Instant::now();
        let mut budget = ProviderBudget::new(limits(None, None, None), circuit(), 10);
        let none = RateLimitHint::default();
        for n in 0..3 {
            budget.grant(key(n), now);
            budget.call_ended(key(n), ProviderCallStatus::Unavailable, 0, &none, now);
        }
        let shortage = budget.room(now, Reserved::default()).unwrap_err();
        assert!(matches!(shortage, Shortage::CircuitOpen { .. }));
        assert!(!budget.worth_waiting(shortage, now));
        // Recovery: one trial call is admitted.
        assert_eq!(
            budget.room(now + Duration::from_secs(10), Reserved::default()),
            Ok(1)
        );
    }

    #[test]
    fn short_shortages_are_waited_out_long_ones_are_not() {
        let now = Instant::now();
        let budget = ProviderBudget::new(limits(Some(1), None, None), circuit(), 10);
        let soon = Shortage::RequestsPerMinute {
            until: now + Duration::from_secs(5),
        };
        let late = Shortage::RequestsPerMinute {
            until: now + Duration::from_secs(6),
        };
        assert!(budget.worth_waiting(soon, now));
        assert!(!budget.worth_waiting(late, now));
        assert!(budget.worth_waiting(Shortage::Concurrency, now));
    }

    proptest! {
        /// Whatever the order of grants, endings and time steps, granting
        /// only what `room` allows never puts more than the limits into any
        /// 60 s window or in flight.
        #[test]
        fn granting_within_room_never_exceeds_the_limits(
            steps in proptest::collection::vec((0u64..3_000, 0u32..5, 0u32..4, 0u64..200), 1..200),
        ) {
            let start = Instant::now();
            let mut budget = ProviderBudget::new(limits(Some(20), Some(3_000), Some(6)), circuit(), 100);
            let mut now = start;
            let mut next = 0u128;
            let mut running: VecDeque<CallKey> = VecDeque::new();
            let mut starts: Vec<Instant> = Vec::new();
            for (advance_ms, wanted, ending, tokens) in steps {
                now += Duration::from_millis(advance_ms);
                for _ in 0..ending {
                    if let Some(key) = running.pop_front() {
                        budget.call_ended(key, ProviderCallStatus::Ok, tokens, &RateLimitHint::default(), now);
                    }
                }
                let room = budget.room(now, Reserved::default()).unwrap_or(0);
                for _ in 0..wanted.min(room) {
                    next += 1;
                    budget.grant(key(next), now);
                    running.push_back(key(next));
                    starts.push(now);
                }
                let in_window = starts.iter().filter(|at| now.duration_since(**at) < WINDOW).count();
                prop_assert!(in_window <= 20, "{in_window} calls in one window");
                prop_assert!(running.len() <= 6);
            }
        }
    }
}
