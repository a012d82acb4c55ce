//! Which seeds and peers to dial, and when.
//!
//! ractor_cluster neither retries a failed connection nor reconnects a lost
//! one, so herd keeps a dial schedule per address: dial at once, then back
//! off exponentially (with jitter, so restarted nodes do not dial in
//! lockstep) while the address stays unreachable, and start over once a
//! session with it authenticates. Pure: callers pass the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The dial schedule of one address.
#[derive(Clone, Debug)]
pub struct DialTarget {
    /// Whether it came from the seed list (counts for initial discovery).
    pub is_seed: bool,
    /// When the next dial may start.
    pub next_at: Instant,
    /// The delay after the next failure.
    pub backoff: Duration,
    /// A dial is under way.
    pub in_flight: bool,
    /// Dials since the last success.
    pub failures: u32,
    /// At least one dial finished (for initial discovery).
    pub tried: bool,
}

/// Dial schedules for every address worth connecting to.
#[derive(Clone, Debug)]
pub struct Dialer {
    targets: BTreeMap<String, DialTarget>,
    initial: Duration,
    max: Duration,
}

impl Dialer {
    /// A dialer with the given backoff bounds and the seed addresses.
    pub fn new(seeds: &[String], initial: Duration, max: Duration, now: Instant) -> Self {
        let mut dialer = Dialer {
            targets: BTreeMap::new(),
            initial,
            max,
        };
        for seed in seeds {
            dialer.add(seed, true, now);
        }
        dialer
    }

    /// Adds an address (a peer's advertised address) if new.
    pub fn add(&mut self, address: &str, is_seed: bool, now: Instant) {
        self.targets
            .entry(address.to_string())
            .or_insert(DialTarget {
                is_seed,
                next_at: now,
                backoff: self.initial,
                in_flight: false,
                failures: 0,
                tried: false,
            });
    }

    /// Addresses due for a dial now, marked in flight. `connected` says which
    /// addresses already have a live session (they are skipped).
    pub fn due(&mut self, now: Instant, connected: impl Fn(&str) -> bool) -> Vec<String> {
        let mut due = Vec::new();
        for (address, target) in &mut self.targets {
            if connected(address) {
                target.tried = true;
                continue;
            }
            if !target.in_flight && target.next_at <= now {
                target.in_flight = true;
                due.push(address.clone());
            }
        }
        due
    }

    /// A dial ended. `jitter` in [0, 1) spreads retries. Even a successful TCP
    /// connect waits out the backoff: only an authenticated session resets it.
    pub fn finished(&mut self, address: &str, succeeded: bool, jitter: f64, now: Instant) {
        let (initial, max) = (self.initial, self.max);
        if let Some(target) = self.targets.get_mut(address) {
            target.in_flight = false;
            target.tried = true;
            if !succeeded {
                target.failures += 1;
            }
            let delay = target.backoff.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5);
            target.next_at = now + delay.min(max);
            target.backoff = (target.backoff * 2).clamp(initial, max);
        }
    }

    /// A session with `address` authenticated: the next loss redials at once.
    pub fn connected(&mut self, address: &str, now: Instant) {
        if let Some(target) = self.targets.get_mut(address) {
            target.backoff = self.initial;
            target.failures = 0;
            target.tried = true;
            target.next_at = now;
        }
    }

    /// True once every seed was dialed at least once (or is connected).
    pub fn seeds_tried(&self) -> bool {
        self.targets
            .values()
            .filter(|target| target.is_seed)
            .all(|target| target.tried)
    }

    /// Consecutive failures of `address`.
    pub fn failures(&self, address: &str) -> u32 {
        self.targets
            .get(address)
            .map_or(0, |target| target.failures)
    }

    /// The earliest time something becomes due.
    #[cfg(test)]
    pub fn next_due(&self) -> Option<Instant> {
        self.targets
            .values()
            .filter(|target| !target.in_flight)
            .map(|target| target.next_at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_dials_back_off_exponentially_up_to_the_cap() {
        let start = Instant::now();
        let mut dialer = Dialer::new(
            &["a:1".into()],
            Duration::from_millis(100),
            Duration::from_millis(1000),
            start,
        );
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let due = dialer.due(now, |_| false);
            assert_eq!(due, vec!["a:1".to_string()]);
            assert!(
                dialer.due(now, |_| false).is_empty(),
                "no second dial while one is in flight"
            );
            dialer.finished("a:1", false, 0.0, now);
            let next = dialer.next_due().unwrap();
            delays.push((next - now).as_millis());
            now = next;
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(dialer.failures("a:1"), 6);
    }

    #[test]
    fn connected_addresses_are_skipped_and_reset() {
        let now = Instant::now();
        let mut dialer = Dialer::new(
            &["a:1".into(), "b:1".into()],
            Duration::from_millis(100),
            Duration::from_secs(5),
            now,
        );
        assert!(!dialer.seeds_tried());
        assert_eq!(
            dialer.due(now, |address| address == "a:1"),
            vec!["b:1".to_string()]
        );
        dialer.finished("b:1", false, 0.5, now);
        assert!(dialer.seeds_tried());
        dialer.connected("b:1", now);
        assert_eq!(
            dialer.due(now, |_| false),
            vec!["a:1".to_string(), "b:1".to_string()]
        );
    }
}
