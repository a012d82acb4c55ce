//! Pure capacity decisions: how worker slots are shared among agent types
//! (rebalancing by demand) and how many slots the cluster runs (autoscaling).
//! No actors, no I/O: the orchestrator feeds measurements in and applies what
//! comes out (see `orchestrator::scaling_control`).
//!
//! - [`demand`]: per-type measurements over each interval (arrivals, service
//!   time, success rate, quality), smoothed.
//! - [`rebalance`]: moves weights toward demand in bounded steps.
//! - [`pins`]: weights around the ones an operator pinned.
//! - [`autoscale`]: grows and shrinks the slot total between its bounds.
//! - [`capacity`]: how many slots a node may host and how a total is spread.

pub mod autoscale;
pub mod capacity;
pub mod demand;
pub mod pins;
pub mod rebalance;

pub use autoscale::{AutoscaleInput, AutoscaleParams, Autoscaler};
pub use capacity::{node_capacity, spread_slots};
pub use demand::{DemandTracker, TypeDemand};
pub use pins::{NoRoom, share_around_pins};
pub use rebalance::{RebalanceInput, initial_weights, rebalance, weight_floor};
