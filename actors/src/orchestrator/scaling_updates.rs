//! Operators' runtime changes to the scaling loop: `PUT /v1/agents/{type}`
//! (a weight, pinned or not) and `PUT /v1/scaling` (pool bounds and
//! thresholds). A refused update changes nothing and says why in an
//! [`UpdateRejection`].

use std::collections::BTreeMap;

use std::ops::RangeInclusive;

use herd_protocol::AgentType;
use herd_protocol::limits::{
    MAX_WORKERS_RANGE, MIN_WORKERS_RANGE, SCALE_THRESHOLD_RANGE, WEIGHT_RANGE,
};
use herd_protocol::messages::scaling::{AgentUpdate, ScalingUpdate, UpdateRejection};
use tracing::info;

use super::scaling_control::ScalingControl;
use crate::scaling::weight_floor;

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
            let pinned_others: f64 = weights
                .iter()
                .filter(|(t, _)| *t != agent_type && self.pinned.contains(*t))
                .map(|(_, w)| w)
                .sum();
            let free: Vec<AgentType> = weights
                .keys()
                .filter(|t| *t != agent_type && !self.pinned.contains(*t))
                .cloned()
                .collect();
            let weight = weight.max(floor);
            let room = 1.0 - weight - pinned_others;
            if room < floor * free.len() as f64 - 1e-12 || (free.is_empty() && room.abs() > 1e-9) {
                return Err(UpdateRejection::NoRoomForOthers {
                    weight,
                    room,
                    floor,
                    pinned: pinned_others,
                });
            }
            let free_total: f64 = free.iter().map(|t| weights[t]).sum();
            for t in &free {
                let share = if free_total > 0.0 {
                    weights[t] / free_total
                } else {
                    1.0 / free.len() as f64
                };
                weights.insert(t.clone(), (room * share).max(floor));
            }
            weights.insert(agent_type.clone(), weight);
            // Rounding of the floor clamp: renormalize gently.
            let total: f64 = weights.values().sum();
            for w in weights.values_mut() {
                *w /= total;
            }
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
        Ok(())
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
}
