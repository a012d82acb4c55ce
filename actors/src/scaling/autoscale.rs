//! How many worker slots the cluster runs (seed 004 "Scaling Patterns",
//! seed 000's scale-up step).
//!
//! Utilization is `(busy slots + queued tasks) / slots`: it exceeds 1 when
//! work waits. Above `scale_up_threshold` the pool grows by 10 % or one slot,
//! whichever is more. Below `scale_down_threshold` *continuously* for the
//! stabilization window it shrinks to what the load needs at mid-band
//! utilization, and the window starts again. The total always stays within
//! `min..=max` and within what the nodes can host.

use std::time::Duration;

/// Autoscaler settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscaleParams {
    /// Fewest slots.
    pub min_workers: u32,
    /// Most slots.
    pub max_workers: u32,
    /// Grow above this utilization.
    pub scale_up_threshold: f64,
    /// Shrink below this utilization (held for `stabilization`).
    pub scale_down_threshold: f64,
    /// How long utilization must stay low before shrinking.
    pub stabilization: Duration,
}

/// What the cluster looks like at one decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoscaleInput {
    /// Slots on nodes that take work.
    pub slots: u32,
    /// Slots running an attempt.
    pub busy: u32,
    /// Tasks waiting for a slot.
    pub queued: u64,
    /// Most slots the nodes that take work may host together.
    pub capacity: u32,
    /// Time since the autoscaler started (monotonic).
    pub now: Duration,
}

/// Why the total is what it is.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleVerdict {
    /// Slots to run.
    pub target: u32,
    /// Utilization that led to it.
    pub utilization: f64,
    /// For the log and the decision record.
    pub reason: String,
}

/// The autoscaler's memory: since when utilization has been low.
#[derive(Clone, Debug, Default)]
pub struct Autoscaler {
    low_since: Option<Duration>,
}

impl Autoscaler {
    /// Decides the slot total. Guarantees: `min(min_workers, capacity) ≤
    /// target ≤ min(max_workers, capacity)`, and a shrink only after the
    /// window.
    pub fn decide(&mut self, params: &AutoscaleParams, input: AutoscaleInput) -> ScaleVerdict {
        let ceiling = params.max_workers.min(input.capacity);
        let floor = params.min_workers.min(ceiling);
        let work = f64::from(input.busy) + input.queued as f64;
        let utilization = if input.slots == 0 {
            if work > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            work / f64::from(input.slots)
        };
        let within = |target: u32| target.clamp(floor, ceiling);

        if utilization > params.scale_up_threshold {
            self.low_since = None;
            let step = (f64::from(input.slots) * 0.1).ceil().max(1.0) as u32;
            let target = within(input.slots.saturating_add(step));
            let reason = if target > input.slots {
                format!(
                    "utilization {} above {:.2}: +{} slot(s)",
                    percent(utilization),
                    params.scale_up_threshold,
                    target - input.slots
                )
            } else {
                format!(
                    "utilization {} above {:.2}, but at the limit of {ceiling} slots (max_workers {}, node capacity {})",
                    percent(utilization),
                    params.scale_up_threshold,
                    params.max_workers,
                    input.capacity
                )
            };
            return ScaleVerdict {
                target,
                utilization,
                reason,
            };
        }
        if utilization < params.scale_down_threshold {
            let since = *self.low_since.get_or_insert(input.now);
            let held = input.now.saturating_sub(since);
            if held >= params.stabilization {
                self.low_since = Some(input.now);
                let midpoint = (params.scale_up_threshold + params.scale_down_threshold) / 2.0;
                let needed = (work / midpoint.max(0.01)).ceil() as u32;
                let target = within(needed.min(input.slots));
                return ScaleVerdict {
                    target,
                    utilization,
                    reason: format!(
                        "utilization {} below {:.2} for {} s: sized for the load",
                        percent(utilization),
                        params.scale_down_threshold,
                        held.as_secs()
                    ),
                };
            }
            return ScaleVerdict {
                target: within(input.slots),
                utilization,
                reason: format!(
                    "utilization {} below {:.2} for {} of {} s",
                    percent(utilization),
                    params.scale_down_threshold,
                    held.as_secs(),
                    params.stabilization.as_secs()
                ),
            };
        }
        self.low_since = None;
        ScaleVerdict {
            target: within(input.slots),
            utilization,
            reason: format!("utilization {} within band", percent(utilization)),
        }
    }
}

fn percent(utilization: f64) -> String {
    if utilization.is_finite() {
        format!("{:.0} %", utilization * 100.0)
    } else {
        "∞ (no slots)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> AutoscaleParams {
        AutoscaleParams {
            min_workers: 2,
            max_workers: 40,
            scale_up_threshold: 0.75,
            scale_down_threshold: 0.25,
            stabilization: Duration::from_secs(10),
        }
    }

    fn input(slots: u32, busy: u32, queued: u64, at_s: u64) -> AutoscaleInput {
        AutoscaleInput {
            slots,
            busy,
            queued,
            capacity: 100,
            now: Duration::from_secs(at_s),
        }
    }

    #[test]
    fn grows_by_ten_percent_or_one() {
        let mut scaler = Autoscaler::default();
        assert_eq!(scaler.decide(&params(), input(4, 4, 10, 0)).target, 5);
        assert_eq!(scaler.decide(&params(), input(25, 25, 10, 1)).target, 28);
    }

    #[test]
    fn never_beyond_max_or_node_capacity() {
        let mut scaler = Autoscaler::default();
        assert_eq!(scaler.decide(&params(), input(40, 40, 99, 0)).target, 40);
        let capped = AutoscaleInput {
            capacity: 6,
            ..input(6, 6, 99, 1)
        };
        let verdict = scaler.decide(&params(), capped);
        assert_eq!(verdict.target, 6);
        assert!(
            verdict.reason.contains("node capacity 6"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn shrinks_only_after_the_window_of_low_utilization() {
        let mut scaler = Autoscaler::default();
        assert_eq!(scaler.decide(&params(), input(20, 0, 0, 0)).target, 20);
        assert_eq!(scaler.decide(&params(), input(20, 0, 0, 9)).target, 20);
        // A busy moment restarts the window.
        assert_eq!(scaler.decide(&params(), input(20, 10, 0, 9)).target, 20);
        assert_eq!(scaler.decide(&params(), input(20, 0, 0, 10)).target, 20);
        assert_eq!(scaler.decide(&params(), input(20, 0, 0, 19)).target, 20);
        assert_eq!(scaler.decide(&params(), input(20, 0, 0, 20)).target, 2);
        // The next shrink needs a new window.
        assert_eq!(scaler.decide(&params(), input(20, 1, 0, 21)).target, 20);
    }

    #[test]
    fn below_min_grows_back_to_min() {
        let mut scaler = Autoscaler::default();
        assert_eq!(scaler.decide(&params(), input(1, 0, 0, 0)).target, 2);
    }

    proptest! {
        #[test]
        fn target_always_within_bounds_and_capacity(
            min in 1u32..100, span in 0u32..900, slots in 0u32..1200, busy in 0u32..1200,
            queued in 0u64..10_000, capacity in 1u32..1200, steps in 1usize..20,
        ) {
            let params = AutoscaleParams {
                min_workers: min,
                max_workers: min + span,
                scale_up_threshold: 0.75,
                scale_down_threshold: 0.25,
                stabilization: Duration::from_secs(3),
            };
            let mut scaler = Autoscaler::default();
            let mut slots = slots;
            for step in 0..steps {
                let verdict = scaler.decide(&params, AutoscaleInput {
                    slots,
                    busy: busy.min(slots),
                    queued,
                    capacity,
                    now: Duration::from_secs(step as u64),
                });
                let ceiling = params.max_workers.min(capacity);
                prop_assert!(verdict.target <= ceiling);
                prop_assert!(verdict.target >= params.min_workers.min(ceiling));
                // Growth is at most 10 % or one slot (unless climbing to the floor).
                if verdict.target > slots && slots >= params.min_workers.min(ceiling) {
                    prop_assert!(verdict.target - slots <= ((slots as f64 * 0.1).ceil() as u32).max(1));
                }
                slots = verdict.target;
            }
        }
    }
}
