//! Pure scheduling decisions: how slots are split among agent types, and
//! which pending tasks go to which pool. No actors, no I/O.

pub mod allocation;
pub mod circuit;
pub mod dispatch;
pub mod provider_budget;
pub mod provider_choice;
pub mod slot_credit;

pub use allocation::{Allocation, PoolCapacity, allocate};
pub use dispatch::{DispatchInput, PoolLoad, SlotCredits, plan_dispatch};
pub use slot_credit::SlotCreditMeter;
