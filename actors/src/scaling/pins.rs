//! Weights around pins: some types held at weights an operator chose, the
//! others sharing what is left. Used when an operator sets a weight
//! (`PUT /v1/agents/{type}`) and when a new orchestrator takes over the
//! pins recorded in the task book, so both share out the rest alike.

use std::collections::BTreeMap;

use herd_protocol::AgentType;

use super::weight_floor;

/// The pins leave the other types too little (or, with no other type, do
/// not add up to everything).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoRoom {
    /// What the pins leave: one minus their sum.
    pub room: f64,
    /// The least each type must keep.
    pub floor: f64,
}

/// `weights` with each type of `pinned` at its pinned weight and every
/// other type sharing what those leave in proportion to its weight in
/// `weights` (equally when they are all zero), none below
/// [`weight_floor`]; renormalized to sum to one. Pins on types that
/// `weights` does not hold are ignored.
///
/// Guarantees: the result holds exactly the types of `weights`, sums to one
/// and, unless a floor had to be raised, keeps every pin exactly. Fails when
/// the pins leave less than the floor for each other type, or leave
/// anything over with no other type to take it.
pub fn share_around_pins(
    weights: &BTreeMap<AgentType, f64>,
    pinned: &BTreeMap<AgentType, f64>,
) -> Result<BTreeMap<AgentType, f64>, NoRoom> {
    let floor = weight_floor(weights.len());
    let pinned_total: f64 = pinned
        .iter()
        .filter(|(t, _)| weights.contains_key(*t))
        .map(|(_, w)| w)
        .sum();
    let free: Vec<&AgentType> = weights
        .keys()
        .filter(|t| !pinned.contains_key(*t))
        .collect();
    let room = 1.0 - pinned_total;
    if room < floor * free.len() as f64 - 1e-12 || (free.is_empty() && room.abs() > 1e-9) {
        return Err(NoRoom { room, floor });
    }
    let free_total: f64 = free.iter().map(|t| weights[*t]).sum();
    let mut shared: BTreeMap<AgentType, f64> = weights
        .iter()
        .map(|(t, w)| {
            let weight = match pinned.get(t) {
                Some(pin) => *pin,
                None if free_total > 0.0 => (room * w / free_total).max(floor),
                None => (room / free.len() as f64).max(floor),
            };
            (t.clone(), weight)
        })
        .collect();
    // Rounding of the floor clamp: renormalize gently.
    let total: f64 = shared.values().sum();
    for weight in shared.values_mut() {
        *weight /= total;
    }
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, f64)]) -> BTreeMap<AgentType, f64> {
        pairs.iter().map(|(t, w)| (AgentType::new(t), *w)).collect()
    }

    #[test]
    fn the_free_types_share_what_the_pins_leave_in_proportion() {
        let shared = share_around_pins(
            &weights(&[("a", 0.25), ("b", 0.5), ("c", 0.25)]),
            &weights(&[("a", 0.7)]),
        )
        .unwrap();
        assert!((shared[&AgentType::new("a")] - 0.7).abs() < 1e-12);
        assert!((shared[&AgentType::new("b")] - 0.2).abs() < 1e-12);
        assert!((shared[&AgentType::new("c")] - 0.1).abs() < 1e-12);
    }

    #[test]
    fn pins_that_leave_too_little_say_how_much_is_left() {
        let refused = share_around_pins(
            &weights(&[("a", 0.5), ("b", 0.5)]),
            &weights(&[("a", 0.99)]),
        )
        .unwrap_err();
        assert!((refused.room - 0.01).abs() < 1e-12);
        assert!((refused.floor - 0.05).abs() < 1e-12);
        // Every type pinned: they must add up to everything.
        assert!(
            share_around_pins(
                &weights(&[("a", 0.5), ("b", 0.5)]),
                &weights(&[("a", 0.6), ("b", 0.3)]),
            )
            .is_err()
        );
    }

    #[test]
    fn pins_on_types_not_held_are_ignored() {
        let shared = share_around_pins(
            &weights(&[("a", 0.5), ("b", 0.5)]),
            &weights(&[("gone", 0.9)]),
        )
        .unwrap();
        assert_eq!(shared, weights(&[("a", 0.5), ("b", 0.5)]));
    }
}
