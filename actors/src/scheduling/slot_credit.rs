//! How many attempts a pool may hold per worker slot, by agent type: enough
//! that a slot never idles while the orchestrator commits the report of its
//! last attempt and the assignment that replaces it.
//!
//! A slot that finishes an attempt gets its next one only after a refill:
//! the report travels to the orchestrator, waits for the group being
//! committed, is committed with the replacement's assignment in the next
//! group, and the assignment travels back — about two commit latencies and
//! a round trip. A slot whose attempts run for `run` each therefore needs
//! `1 + refill / run` attempts at hand (one running, the rest in its pool's
//! backlog) to stay busy. The meter estimates both from what it observes
//! (commit latencies, attempts' run times) and gives each type that credit,
//! between the configured floor (`scaling.slot_credit`) and ceiling
//! (`scaling.max_slot_credit`):
//!
//! - a type whose attempts take much longer than a refill keeps the floor,
//!   so long tasks are not hoarded in one pool's backlog while another
//!   pool idles;
//! - a type of short tasks gets up to the ceiling — with a journal or
//!   replicated log, commit latency (an fsync, a quorum round trip) is what
//!   bounds throughput otherwise;
//! - a type never observed keeps the floor (nothing says its tasks are
//!   short);
//! - what waits in a backlog is also bounded by bytes: credit above the
//!   floor is capped so that a slot's backlog holds about
//!   [`BACKLOG_BYTES_PER_SLOT`] of the type's average payload.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_protocol::AgentType;

/// What a refill costs beyond the commit latencies: a pool's report flush,
/// the trip to the orchestrator and the assignment's trip back, with room
/// for a loaded machine.
pub const REFILL_ALLOWANCE: Duration = Duration::from_millis(1);

/// Run time assumed for attempts that finish within the same millisecond
/// (reports carry millisecond timestamps): no-op tasks average about this.
pub const SHORTEST_RUN: Duration = Duration::from_micros(10);

/// Payload bytes per slot that credit above the floor may keep waiting in a
/// pool's backlog (on average).
pub const BACKLOG_BYTES_PER_SLOT: u64 = 256 * 1024;

/// Weight of a new observation in the running averages: recent enough to
/// follow a change of load within a few hundred attempts, smooth enough
/// that one slow commit or attempt does not swing the credit.
const SMOOTHING: f64 = 0.05;

/// An exponentially weighted moving average; `None` until observed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Average(Option<f64>);

impl Average {
    fn observe(&mut self, value: f64) {
        self.0 = Some(match self.0 {
            Some(mean) => mean + SMOOTHING * (value - mean),
            None => value,
        });
    }
}

/// What the meter knows of one agent type.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct TypeObservations {
    /// Seconds an attempt ran (handler start to return).
    run_s: Average,
    /// Bytes of an assigned attempt's payload.
    payload_bytes: Average,
}

/// Observes commits and attempts and says each type's credit. See the
/// module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotCreditMeter {
    floor: u32,
    ceiling: u32,
    commit_s: Average,
    types: BTreeMap<AgentType, TypeObservations>,
}

impl SlotCreditMeter {
    /// A meter giving between `floor` and `ceiling` attempts per slot
    /// (`floor` at least 1; a `ceiling` below it counts as `floor`).
    pub fn new(floor: u32, ceiling: u32) -> Self {
        let floor = floor.max(1);
        SlotCreditMeter {
            floor,
            ceiling: ceiling.max(floor),
            commit_s: Average::default(),
            types: BTreeMap::new(),
        }
    }

    /// The least credit any type gets.
    pub fn floor(&self) -> u32 {
        self.floor
    }

    /// One log entry (or journal write) took `latency` to become durable.
    pub fn observe_commit(&mut self, latency: Duration) {
        self.commit_s.observe(latency.as_secs_f64());
    }

    /// An attempt of `agent_type` ran for `run` (zero: within a
    /// millisecond).
    pub fn observe_run(&mut self, agent_type: &AgentType, run: Duration) {
        self.observations(agent_type)
            .run_s
            .observe(run.as_secs_f64());
    }

    /// An attempt of `agent_type` with `bytes` of payload was assigned.
    pub fn observe_payload(&mut self, agent_type: &AgentType, bytes: usize) {
        self.observations(agent_type)
            .payload_bytes
            .observe(bytes as f64);
    }

    fn observations(&mut self, agent_type: &AgentType) -> &mut TypeObservations {
        if !self.types.contains_key(agent_type) {
            self.types
                .insert(agent_type.clone(), TypeObservations::default());
        }
        self.types.get_mut(agent_type).expect("inserted above")
    }

    /// The refill time the credit covers: two commit latencies and the
    /// allowance.
    pub fn refill(&self) -> Duration {
        let commit = self.commit_s.0.unwrap_or(0.0);
        REFILL_ALLOWANCE + Duration::from_secs_f64(2.0 * commit)
    }

    /// Attempts a pool may hold per slot of `agent_type`: between the
    /// floor and the ceiling, the floor for a type never seen run.
    pub fn credit(&self, agent_type: &AgentType) -> u32 {
        let Some(seen) = self.types.get(agent_type) else {
            return self.floor;
        };
        let Some(run_s) = seen.run_s.0 else {
            return self.floor;
        };
        let run_s = run_s.max(SHORTEST_RUN.as_secs_f64());
        let wanted = 1.0 + (self.refill().as_secs_f64() / run_s).ceil();
        let by_bytes = match seen.payload_bytes.0 {
            Some(bytes) => 1.0 + (BACKLOG_BYTES_PER_SLOT as f64 / bytes.max(1.0)).floor(),
            None => f64::from(self.ceiling),
        };
        let credit = wanted.min(by_bytes).min(f64::from(self.ceiling));
        (credit as u32).max(self.floor)
    }

    /// Every observed type's credit.
    pub fn credits(&self) -> BTreeMap<AgentType, u32> {
        self.types
            .keys()
            .map(|agent_type| (agent_type.clone(), self.credit(agent_type)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo() -> AgentType {
        AgentType::new("echo")
    }

    fn meter_with(commit: Duration, run: Duration, payload: usize) -> SlotCreditMeter {
        meter_within(4, 64, commit, run, payload)
    }

    fn meter_within(
        floor: u32,
        ceiling: u32,
        commit: Duration,
        run: Duration,
        payload: usize,
    ) -> SlotCreditMeter {
        let mut meter = SlotCreditMeter::new(floor, ceiling);
        meter.observe_commit(commit);
        meter.observe_run(&echo(), run);
        meter.observe_payload(&echo(), payload);
        meter
    }

    #[test]
    fn a_type_never_seen_run_keeps_the_floor() {
        let mut meter = SlotCreditMeter::new(4, 64);
        meter.observe_commit(Duration::from_millis(5));
        assert_eq!(meter.credit(&echo()), 4);
        meter.observe_payload(&echo(), 10);
        assert_eq!(
            meter.credit(&echo()),
            4,
            "a payload alone says nothing of run time"
        );
    }

    #[test]
    fn short_tasks_behind_slow_commits_get_the_ceiling() {
        let meter = meter_with(Duration::from_millis(5), Duration::ZERO, 20);
        assert_eq!(meter.credit(&echo()), 64);
    }

    #[test]
    fn long_tasks_keep_the_floor() {
        let meter = meter_with(Duration::from_millis(5), Duration::from_secs(1), 20);
        assert_eq!(meter.credit(&echo()), 4);
    }

    #[test]
    fn credit_covers_the_refill_in_between() {
        // Refill: 1 ms + 2 × 2 ms = 5 ms; attempts of 0.5 ms → 1 + 10.
        let meter = meter_with(Duration::from_millis(2), Duration::from_micros(500), 20);
        assert_eq!(meter.refill(), Duration::from_millis(5));
        assert_eq!(meter.credit(&echo()), 11);
    }

    #[test]
    fn large_payloads_cap_the_credit_above_the_floor() {
        // 256 KiB per slot of 32 KiB payloads: 1 + 8.
        let meter = meter_with(Duration::from_millis(5), Duration::ZERO, 32 * 1024);
        assert_eq!(meter.credit(&echo()), 9);
        // Payloads past the byte budget fall back to the floor, not below.
        let meter = meter_with(Duration::from_millis(5), Duration::ZERO, 1024 * 1024);
        assert_eq!(meter.credit(&echo()), 4);
    }

    #[test]
    fn averages_follow_a_change_of_load() {
        let mut meter = meter_with(Duration::from_millis(5), Duration::ZERO, 20);
        for _ in 0..200 {
            meter.observe_run(&echo(), Duration::from_millis(100));
        }
        assert_eq!(meter.credit(&echo()), 4);
        for _ in 0..200 {
            meter.observe_run(&echo(), Duration::ZERO);
        }
        assert_eq!(meter.credit(&echo()), 64);
    }

    #[test]
    fn bounds_hold_and_a_ceiling_below_the_floor_is_the_floor() {
        let meter = meter_within(2, 8, Duration::from_millis(5), Duration::ZERO, 20);
        assert_eq!(meter.credit(&echo()), 8);
        let meter = meter_within(6, 3, Duration::from_millis(5), Duration::ZERO, 20);
        assert_eq!(meter.credit(&echo()), 6);
        assert_eq!(SlotCreditMeter::new(0, 0).floor(), 1);
    }
}
