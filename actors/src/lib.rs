//! The embeddable herd runtime.
//!
//! A program starts a node with [`HerdNode::builder`], registers
//! [`TaskHandler`]s per agent type, and submits and queries tasks through
//! the node's [`NodeHandle`]. A process runs one node: ractor's process
//! groups and registry are process-global.
//!
//! - [`runtime`]: the builder, the node, its handle, and why a node stops.
//! - [`handlers`]: the [`TaskHandler`] trait, its input and output, and the
//!   built-in handlers.
//! - [`telemetry`]: switching on task traces and describing the metrics.
//! - [`config`] and [`protocol`]: the configuration model and the task and
//!   message types (re-exported crates).
//!
//! Everything else (the orchestrator, worker pools, membership, the task
//! book, scheduling and scaling logic) is internal.

#![warn(missing_docs)]

pub mod bench;
pub mod handlers;
mod journal;
mod membership;
mod metrics_catalog;
mod monitor;
mod orchestrator;
mod pool;
mod replica;
pub mod runtime;
mod scaling;
mod scheduling;
mod task_book;
mod task_trace;
pub mod telemetry;
pub mod tls;

pub use handlers::{HandlerError, TaskHandler, TaskInput, TaskOutput};
pub use herd_config as config;
pub use herd_protocol as protocol;
pub use runtime::{ClientError, HerdNode, HerdNodeBuilder, NodeHandle};
