//! The orchestrator: the task book, the pools it schedules onto, and the
//! requests of every node's API.
//!
//! The actor (`actor.rs`) only routes messages; each concept has a module:
//!
//! | module | what it does |
//! |---|---|
//! | `state` | what the orchestrator holds; recovery at start |
//! | `journaled` | every command recorded before the book applies it; effects released once durable (`durability`) |
//! | `requests` | the API's requests: submit, cancel, wait, retry, status, updates, drains |
//! | `membership_sync` | pool registrations, drains and hand-backs, view changes (lost nodes) |
//! | `reports` | finished attempts from the pools, acknowledged once durable |
//! | `dispatch` | spreading pending work over free slots ([`crate::scheduling`] decides) |
//! | `effects` | carrying out the book's effects: stops, waiters, metrics, retry ticks |
//! | `scaling_control`, `scaling_updates` | the scaling loop ([`crate::scaling`] decides) and operator updates |
//! | `health_report` | seed 004's SystemHealthReport |
//! | `status` | the cluster summary of `GET /v1/cluster` |
//! | `tenants` | per-tenant figures: the summary's `tenants` and the `herd_tenant_*` gauges |
//! | `traces` | the orchestrator's spans of a task's trace |
//! | `process_groups` | finding the orchestrator and pools through ractor's process groups |
//! | `pools`, `circuits` | the registered pools and their slot quotas; per-type circuit breakers |
//! | `provider_budgets` | LLM providers' cluster-wide budgets: grants at dispatch, nodes' call reports ([`crate::scheduling::provider_budget`] decides) |

mod actor;
mod circuits;
mod dispatch;
mod durability;
mod effects;
mod health_report;
mod journaled;
mod membership_sync;
mod pools;
mod process_groups;
mod provider_budgets;
mod reports;
mod requests;
mod scaling_control;
mod scaling_updates;
mod state;
mod status;
mod tenants;
mod traces;

use herd_protocol::Mailbox;

pub use actor::{
    AgentTypeEntry, Orchestrator, OrchestratorArgs, OrchestratorLocal, OrchestratorProtocol,
    ReplicatedStart,
};
pub use effects::clear_book_gauges;
pub use process_groups::find_orchestrator;
pub(crate) use process_groups::{find_in_group, find_supervisor};
pub use provider_budgets::LlmRoute;
pub use scaling_control::{PoolSnapshot, ScalingControl};

/// The orchestrator's mailbox type.
pub type OrchestratorMsg = Mailbox<OrchestratorProtocol>;
