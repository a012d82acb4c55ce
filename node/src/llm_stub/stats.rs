//! What the stub saw and billed, for tests to check herd's behaviour
//! against (did it respect the rate limit, how many calls were in flight,
//! how many tokens were billed). Pure: the caller passes the time. Every
//! collection is bounded, so a long-running stub does not grow.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Most timestamps kept in `arrivals_ms` and `rate_limited_responses`; the
/// oldest are dropped first.
pub const MAX_TIMESTAMPS: usize = 100_000;

/// How many recent seconds `per_second` covers.
pub const PER_SECOND_HORIZON_S: u64 = 600;

/// The window of `max_requests_in_any_60s_window`.
const WINDOW_MS: u64 = 60_000;

/// Chat requests that arrived in one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondCount {
    /// Unix time, seconds.
    pub second: u64,
    /// Chat requests that arrived in it.
    pub requests: u64,
}

/// The stats as served by `GET /stub/stats`. Counts cover chat requests
/// (`POST /v1/chat/completions`) only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Chat requests received, whatever their answer.
    pub requests: u64,
    /// Chat answers sent, by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Prompt tokens over the 200 answers: exactly what the stub billed.
    pub prompt_tokens: u64,
    /// Completion tokens over the 200 answers.
    pub completion_tokens: u64,
    /// Chat requests received and not yet answered.
    pub in_flight: u64,
    /// The most chat requests ever in flight at once.
    pub max_in_flight: u64,
    /// The most chat requests that arrived within any 60 s (arrival times;
    /// refused requests included).
    pub max_requests_in_any_60s_window: u64,
    /// Arrivals per second over the last [`PER_SECOND_HORIZON_S`] seconds,
    /// oldest first; seconds without arrivals are left out.
    pub per_second: Vec<SecondCount>,
    /// Unix milliseconds of each chat request's arrival (when its body
    /// had been read), oldest first; the most recent [`MAX_TIMESTAMPS`].
    pub arrivals_ms: Vec<u64>,
    /// Unix milliseconds at which each 429 was sent (the stub's own limit
    /// and injected ones), oldest first; the most recent [`MAX_TIMESTAMPS`].
    pub rate_limited_responses: Vec<u64>,
}

/// The running counters.
#[derive(Debug, Default)]
pub struct Stats {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    in_flight: u64,
    max_in_flight: u64,
    /// Arrivals of the trailing 60 s, one entry per distinct millisecond,
    /// so at most 60,000 entries however busy the stub is.
    window: VecDeque<(u64, u64)>,
    window_total: u64,
    max_in_window: u64,
    per_second: VecDeque<SecondCount>,
    arrivals: VecDeque<u64>,
    rate_limited: VecDeque<u64>,
}

impl Stats {
    /// A chat request arrived at `now_ms`; it is in flight until
    /// [`Stats::depart`].
    pub fn arrive(&mut self, now_ms: u64) {
        self.requests += 1;
        self.in_flight += 1;
        self.max_in_flight = self.max_in_flight.max(self.in_flight);
        push_bounded(&mut self.arrivals, now_ms);

        while let Some(&(at, count)) = self.window.front() {
            if at + WINDOW_MS > now_ms {
                break;
            }
            self.window.pop_front();
            self.window_total -= count;
        }
        match self.window.back_mut() {
            // Callers read the clock before taking the lock, so a request
            // may carry a time a hair older than the last one; count it
            // with that one rather than reorder.
            Some((at, count)) if *at >= now_ms => *count += 1,
            _ => self.window.push_back((now_ms, 1)),
        }
        self.window_total += 1;
        self.max_in_window = self.max_in_window.max(self.window_total);

        let second = now_ms / 1000;
        match self.per_second.back_mut() {
            Some(last) if last.second >= second => last.requests += 1,
            _ => self.per_second.push_back(SecondCount {
                second,
                requests: 1,
            }),
        }
        self.trim_seconds(second);
    }

    /// A chat request left (answered, or the client went away).
    pub fn depart(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// A chat answer with `status` was sent at `now_ms`; `usage` is
    /// `(prompt_tokens, completion_tokens)` of a 200 answer.
    pub fn answered(&mut self, status: u16, now_ms: u64, usage: Option<(u32, u32)>) {
        *self.by_status.entry(status).or_default() += 1;
        if status == 429 {
            push_bounded(&mut self.rate_limited, now_ms);
        }
        if let Some((prompt, completion)) = usage {
            self.prompt_tokens += u64::from(prompt);
            self.completion_tokens += u64::from(completion);
        }
    }

    /// Zeroes everything except the requests in flight right now (they
    /// will still depart); `max_in_flight` restarts from them.
    pub fn reset(&mut self) {
        *self = Stats {
            in_flight: self.in_flight,
            max_in_flight: self.in_flight,
            ..Stats::default()
        };
    }

    /// The stats as of `now_ms`.
    pub fn snapshot(&self, now_ms: u64) -> StatsSnapshot {
        let horizon = (now_ms / 1000).saturating_sub(PER_SECOND_HORIZON_S);
        StatsSnapshot {
            requests: self.requests,
            by_status: self.by_status.clone(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            in_flight: self.in_flight,
            max_in_flight: self.max_in_flight,
            max_requests_in_any_60s_window: self.max_in_window,
            per_second: self
                .per_second
                .iter()
                .filter(|count| count.second > horizon)
                .copied()
                .collect(),
            arrivals_ms: self.arrivals.iter().copied().collect(),
            rate_limited_responses: self.rate_limited.iter().copied().collect(),
        }
    }

    fn trim_seconds(&mut self, now_s: u64) {
        while self
            .per_second
            .front()
            .is_some_and(|count| count.second + PER_SECOND_HORIZON_S <= now_s)
        {
            self.per_second.pop_front();
        }
    }
}

fn push_bounded(times: &mut VecDeque<u64>, at: u64) {
    if times.len() >= MAX_TIMESTAMPS {
        times.pop_front();
    }
    times.push_back(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_minute_is_found_over_arrivals() {
        let mut stats = Stats::default();
        for at in [0, 10_000, 59_999, 60_000, 61_000, 130_000] {
            stats.arrive(at);
            stats.depart();
        }
        let snapshot = stats.snapshot(130_000);
        // (1_000, 61_000] holds 10_000, 59_999, 60_000 and 61_000; 0 and
        // 60_000 are 60 s apart, so no window holds both.
        assert_eq!(snapshot.max_requests_in_any_60s_window, 4);
        assert_eq!(snapshot.requests, 6);
        assert_eq!(snapshot.in_flight, 0);
        assert_eq!(snapshot.arrivals_ms.len(), 6);
    }

    #[test]
    fn in_flight_peaks_are_kept_and_reset_keeps_the_current_ones() {
        let mut stats = Stats::default();
        stats.arrive(1);
        stats.arrive(2);
        stats.arrive(3);
        stats.depart();
        assert_eq!(stats.snapshot(3).max_in_flight, 3);
        stats.reset();
        let snapshot = stats.snapshot(3);
        assert_eq!((snapshot.requests, snapshot.in_flight), (0, 2));
        assert_eq!(snapshot.max_in_flight, 2);
    }

    #[test]
    fn answers_are_billed_and_429s_timed() {
        let mut stats = Stats::default();
        stats.answered(200, 5, Some((7, 3)));
        stats.answered(200, 6, Some((1, 4)));
        stats.answered(429, 7, None);
        stats.answered(500, 8, None);
        let snapshot = stats.snapshot(8);
        assert_eq!((snapshot.prompt_tokens, snapshot.completion_tokens), (8, 7));
        assert_eq!(snapshot.rate_limited_responses, [7]);
        assert_eq!(
            snapshot.by_status,
            BTreeMap::from([(200, 2), (429, 1), (500, 1)])
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let mut stats = Stats::default();
        let mut at = 0;
        for _ in 0..(MAX_TIMESTAMPS + 10) {
            at += 7;
            stats.arrive(at);
            stats.answered(429, at, None);
        }
        let snapshot = stats.snapshot(at);
        assert_eq!(snapshot.arrivals_ms.len(), MAX_TIMESTAMPS);
        assert_eq!(snapshot.rate_limited_responses.len(), MAX_TIMESTAMPS);
        assert_eq!(*snapshot.arrivals_ms.last().unwrap(), at);
        assert!(snapshot.per_second.len() as u64 <= PER_SECOND_HORIZON_S);
        assert!(stats.window.len() <= 60_000);
    }
}
