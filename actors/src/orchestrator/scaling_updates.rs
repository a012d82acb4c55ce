//! Operators' runtime changes to the scaling loop: `PUT /v1/agents/{type}`
//! (a weight, pinned or not) and `PUT /v1/scaling` (pool bounds and
//! thresholds). A refused update changes nothing and says why in an
//! [`UpdateRejection`].
//!
//! What operators changed is recorded in the task book as
//! [`ScalingOverrides`] ([`ScalingControl::overrides`]) and taken up again
//! by the next orchestrator that starts from the book
//! ([`ScalingControl::resume`]), so pins, weights and bounds survive a
//! failover or a journaled restart. What the loop decides by itself
//! (rebalanced weights, the pool size) is re-derived from the load.

use std::collections::BTreeMap;

use std::ops::RangeInclusive;

use herd_protocol::AgentType;
use herd_protocol::limits::{
    MAX_WORKERS_RANGE, MIN_WORKERS_RANGE, SCALE_THRESHOLD_RANGE, WEIGHT_RANGE,
};
use herd_protocol::messages::scaling::{AgentUpdate, ScalingUpdate, UpdateRejection};
use tracing::{info, warn};

use super::scaling_control::ScalingControl;
use crate::scaling::{NoRoom, initial_weights, share_around_pins, weight_floor};
use crate::task_book::{PoolBounds, ScalingOverrides, WeightOverrides};

impl ScalingControl {
    /// Applies `PUT /v1/agents/{type}` to `weights`. A new weight pins the
    /// type unless `pinned: false` says otherwise; the other unpinned types
    /// are scaled to make room.
    pub fn update_agent(
        &mut self,
        weights: &mut BTreeMap<AgentType, f64>,
        agent_type: &AgentType,
        update: &AgentUpdate,
    ) -> Result<(), UpdateRejection> {
        if !weights.contains_key(agent_type) {
            return Err(UpdateRejection::UnknownAgentType {
                agent_type: agent_type.clone(),
                known: weights.keys().cloned().collect(),
            });
        }
        let floor = weight_floor(weights.len());
        if let Some(weight) = update.weight {
            if !weight.is_finite() || !WEIGHT_RANGE.contains(&weight) {
                return Err(out_of_range(
                    "weight",
                    weight,
                    "a number from ",
                    &WEIGHT_RANGE,
                ));
            }
            let weight = weight.max(floor);
            let mut pins: BTreeMap<AgentType, f64> = weights
                .iter()
                .filter(|(t, _)| *t != agent_type && self.pinned.contains(*t))
                .map(|(t, w)| (t.clone(), *w))
                .collect();
            let pinned_others: f64 = pins.values().sum();
            pins.insert(agent_type.clone(), weight);
            *weights = share_around_pins(weights, &pins).map_err(|NoRoom { room, floor }| {
                UpdateRejection::NoRoomForOthers {
                    weight,
                    room,
                    floor,
                    pinned: pinned_others,
                }
            })?;
            self.base.insert(agent_type.clone(), weight);
            let total: f64 = self.base.values().sum();
            for w in self.base.values_mut() {
                *w /= total;
            }
            if update.pinned != Some(false) {
                self.pinned.insert(agent_type.clone());
            }
        }
        match update.pinned {
            Some(true) => {
                self.pinned.insert(agent_type.clone());
            }
            Some(false) => {
                self.pinned.remove(agent_type);
            }
            None => {}
        }
        self.operator_weights = Some(weights.clone());
        info!(agent_type = %agent_type, weight = weights[agent_type], pinned = self.pinned.contains(agent_type), "agent type updated by an operator");
        Ok(())
    }

    /// Applies `PUT /v1/scaling` (validated with the config's ranges).
    pub fn update_bounds(&mut self, update: &ScalingUpdate) -> Result<(), UpdateRejection> {
        let mut next = self.settings.clone();
        if let Some(v) = update.min_workers {
            if !MIN_WORKERS_RANGE.contains(&v) {
                return Err(out_of_range("min_workers", v, "", &MIN_WORKERS_RANGE));
            }
            next.min_workers = v;
        }
        if let Some(v) = update.max_workers {
            if !MAX_WORKERS_RANGE.contains(&v) {
                return Err(out_of_range("max_workers", v, "", &MAX_WORKERS_RANGE));
            }
            next.max_workers = v;
        }
        for (name, value, slot) in [
            (
                "scale_up_threshold",
                update.scale_up_threshold,
                &mut next.scale_up_threshold,
            ),
            (
                "scale_down_threshold",
                update.scale_down_threshold,
                &mut next.scale_down_threshold,
            ),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || !SCALE_THRESHOLD_RANGE.contains(&v) {
                    return Err(out_of_range(name, v, "", &SCALE_THRESHOLD_RANGE));
                }
                *slot = v;
            }
        }
        if next.min_workers > next.max_workers {
            return Err(UpdateRejection::MinAboveMax {
                min: next.min_workers,
                max: next.max_workers,
            });
        }
        if next.scale_up_threshold <= next.scale_down_threshold {
            return Err(UpdateRejection::ThresholdsCrossed {
                up: next.scale_up_threshold,
                down: next.scale_down_threshold,
            });
        }
        info!(
            min_workers = next.min_workers,
            max_workers = next.max_workers,
            scale_up_threshold = next.scale_up_threshold,
            scale_down_threshold = next.scale_down_threshold,
            "pool bounds updated by an operator"
        );
        self.settings = next;
        self.bounds_overridden = true;
        Ok(())
    }

    /// What operators have changed so far, as the book records it: the
    /// weights as the latest agent update left them, the pins and the base
    /// weights once any agent update succeeded; the pool bounds once any
    /// scaling update did. The whole state, so recording it after each
    /// update makes replaying idempotent. Weights the rebalancer moved
    /// since the latest agent update are not in it.
    pub fn overrides(&self) -> ScalingOverrides {
        ScalingOverrides {
            weights: self
                .operator_weights
                .as_ref()
                .map(|weights| WeightOverrides {
                    weights: weights.clone(),
                    pinned: self.pinned.clone(),
                    base: self.base.clone(),
                }),
            pool_bounds: self.bounds_overridden.then_some(PoolBounds {
                min_workers: self.settings.min_workers,
                max_workers: self.settings.max_workers,
                scale_up_threshold: self.settings.scale_up_threshold,
                scale_down_threshold: self.settings.scale_down_threshold,
            }),
        }
    }

    /// Takes up the overrides a previous orchestrator recorded in the book
    /// (this one starts from its own configuration) and returns the weights
    /// to start from: the recorded ones, pins included. Should the
    /// configured agent types differ from the recorded ones, types no
    /// longer configured are left out, the others keep their configured
    /// base weight, the pinned types keep their weight and the rest share
    /// what is left; pins that no longer fit are dropped with a warning
    /// rather than refusing to start.
    pub fn resume(&mut self, overrides: &ScalingOverrides) -> BTreeMap<AgentType, f64> {
        if let Some(bounds) = overrides.pool_bounds {
            self.settings.min_workers = bounds.min_workers;
            self.settings.max_workers = bounds.max_workers;
            self.settings.scale_up_threshold = bounds.scale_up_threshold;
            self.settings.scale_down_threshold = bounds.scale_down_threshold;
            self.bounds_overridden = true;
            info!(
                min_workers = bounds.min_workers,
                max_workers = bounds.max_workers,
                scale_up_threshold = bounds.scale_up_threshold,
                scale_down_threshold = bounds.scale_down_threshold,
                "pool bounds set by an operator resumed from the task book"
            );
        }
        let Some(recorded) = &overrides.weights else {
            return self.base.clone();
        };
        let base: BTreeMap<AgentType, f64> = self
            .base
            .iter()
            .map(|(t, configured)| {
                let weight = recorded.base.get(t).copied().unwrap_or(*configured);
                (t.clone(), weight)
            })
            .collect();
        self.base = initial_weights(&base);
        self.pinned = recorded
            .pinned
            .iter()
            .filter(|t| self.base.contains_key(*t))
            .cloned()
            .collect();
        let weights = if recorded.weights.keys().eq(self.base.keys()) {
            recorded.weights.clone()
        } else {
            let pins: BTreeMap<AgentType, f64> = self
                .pinned
                .iter()
                .filter_map(|t| Some((t.clone(), *recorded.weights.get(t)?)))
                .collect();
            match share_around_pins(&self.base, &pins) {
                Ok(weights) => {
                    self.pinned = pins.into_keys().collect();
                    weights
                }
                Err(NoRoom { room, floor }) => {
                    warn!(pinned = ?pins, room, floor, "the recorded pinned weights do not fit the configured agent types; starting without pins");
                    self.pinned.clear();
                    self.base.clone()
                }
            }
        };
        info!(weights = ?weights, pinned = ?self.pinned, "agent weights set by an operator resumed from the task book");
        self.operator_weights = Some(weights.clone());
        weights
    }
}

/// `field is value; give {what}{start} to {end}` (`Debug` keeps `0.0` and
/// `1.0` readable as fractions).
fn out_of_range<T: std::fmt::Display + std::fmt::Debug>(
    field: &str,
    value: T,
    what: &str,
    range: &RangeInclusive<T>,
) -> UpdateRejection {
    UpdateRejection::OutOfRange {
        field: field.to_string(),
        value: value.to_string(),
        allowed: format!("{what}{:?} to {:?}", range.start(), range.end()),
    }
}

#[cfg(test)]
mod tests {
    use herd_config::ScalingSettings;

    use super::*;
    use crate::orchestrator::scaling_control::tests::weights;

    #[test]
    fn a_put_weight_pins_the_type_and_the_others_make_room() {
        let mut w = weights();
        let mut control = ScalingControl::new(ScalingSettings::default(), &w);
        let a = AgentType::new("a");
        control
            .update_agent(
                &mut w,
                &a,
                &AgentUpdate {
                    weight: Some(0.7),
                    pinned: None,
                },
            )
            .unwrap();
        assert!((w[&a] - 0.7).abs() < 1e-9);
        assert!((w.values().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((w[&AgentType::new("b")] - 0.1).abs() < 1e-9);
        assert!(control.is_pinned(&a));
    }

    #[test]
    fn invalid_updates_say_what_to_fix_and_change_nothing() {
        let mut w = weights();
        let before = w.clone();
        let mut control = ScalingControl::new(ScalingSettings::default(), &w);
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("zzz"),
                &AgentUpdate {
                    weight: Some(0.5),
                    pinned: None,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown agent type"), "{error}");
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("a"),
                &AgentUpdate {
                    weight: Some(1.5),
                    pinned: None,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("0.0 to 1.0"), "{error}");
        let error = control
            .update_agent(
                &mut w,
                &AgentType::new("a"),
                &AgentUpdate {
                    weight: Some(1.0),
                    pinned: None,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(error.contains("floor"), "{error}");
        assert_eq!(w, before);
        let error = control
            .update_bounds(&ScalingUpdate {
                min_workers: Some(50),
                max_workers: Some(10),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(error.contains("min_workers"), "{error}");
    }

    #[test]
    fn a_loop_resumed_from_the_recorded_overrides_shows_the_same_pins_weights_and_bounds() {
        let mut w = weights();
        let mut leader = ScalingControl::new(ScalingSettings::default(), &w);
        assert_eq!(
            leader.overrides(),
            ScalingOverrides::default(),
            "nothing changed, nothing to record"
        );
        let a = AgentType::new("a");
        let b = AgentType::new("b");
        leader
            .update_agent(
                &mut w,
                &a,
                &AgentUpdate {
                    weight: Some(0.7),
                    pinned: None,
                },
            )
            .unwrap();
        // An unpinned weight: reproduced too, though the rebalancer may move it.
        leader
            .update_agent(
                &mut w,
                &b,
                &AgentUpdate {
                    weight: Some(0.16),
                    pinned: Some(false),
                },
            )
            .unwrap();
        let as_operators_left_them = w.clone();
        // The rebalancer then moves unpinned weights: its decisions are not
        // recorded, not even by a later scaling update.
        let (c, d) = (AgentType::new("c"), AgentType::new("d"));
        let moved = w[&c] / 2.0;
        *w.get_mut(&c).unwrap() -= moved;
        *w.get_mut(&d).unwrap() += moved;
        leader
            .update_bounds(&ScalingUpdate {
                min_workers: Some(3),
                max_workers: Some(30),
                scale_up_threshold: Some(0.9),
                ..Default::default()
            })
            .unwrap();
        let recorded = leader.overrides();

        // The next orchestrator starts from the configuration, then resumes.
        let mut next = ScalingControl::new(ScalingSettings::default(), &weights());
        let resumed = next.resume(&recorded);
        assert_eq!(resumed, as_operators_left_them);
        assert!(next.is_pinned(&a) && !next.is_pinned(&b));
        assert!((resumed[&a] - 0.7).abs() < 1e-9);
        let status = next.status();
        assert_eq!((status.min_workers, status.max_workers), (3, 30));
        assert_eq!(status.scale_up_threshold, 0.9);
        assert_eq!(
            status.scale_down_threshold,
            leader.status().scale_down_threshold
        );
        assert_eq!(next.initial_weights(), leader.initial_weights());
        // It records the same again: a resumed loop's next update carries them on.
        assert_eq!(next.overrides(), recorded);

        // Without overrides: the configuration, and nothing recorded.
        let mut fresh = ScalingControl::new(ScalingSettings::default(), &weights());
        assert_eq!(fresh.resume(&ScalingOverrides::default()), weights());
        assert_eq!(fresh.overrides(), ScalingOverrides::default());
    }

    #[test]
    fn pins_recorded_for_other_agent_types_are_kept_where_they_fit() {
        let mut w = weights();
        let mut leader = ScalingControl::new(ScalingSettings::default(), &w);
        leader
            .update_agent(
                &mut w,
                &AgentType::new("a"),
                &AgentUpdate {
                    weight: Some(0.4),
                    pinned: None,
                },
            )
            .unwrap();
        let recorded = leader.overrides();
        // The next orchestrator is configured without `d` and with `e`.
        let configured: BTreeMap<AgentType, f64> = ["a", "b", "c", "e"]
            .iter()
            .map(|n| (AgentType::new(n), 0.25))
            .collect();
        let mut next = ScalingControl::new(ScalingSettings::default(), &configured);
        let resumed = next.resume(&recorded);
        assert_eq!(
            resumed.keys().collect::<Vec<_>>(),
            configured.keys().collect::<Vec<_>>()
        );
        assert!((resumed[&AgentType::new("a")] - 0.4).abs() < 1e-9);
        assert!(next.is_pinned(&AgentType::new("a")));
        assert!((resumed.values().sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
