//! The embeddable herd runtime.
//!
//! - [`runtime`]: start a node in your tokio program ([`runtime::HerdNode`]),
//!   submit and query tasks through its [`runtime::NodeHandle`].
//! - [`handlers`]: the [`handlers::TaskHandler`] trait and the built-ins.
//! - [`membership`], [`orchestrator`], [`pool`]: the actors of a node.
//! - [`task_book`], [`scheduling`]: the pure state machine and scheduling
//!   logic the actors drive.

pub mod handlers;
pub mod journal;
pub mod membership;
pub mod metrics_catalog;
pub mod orchestrator;
pub mod pool;
pub mod runtime;
pub mod scaling;
pub mod scheduling;
pub mod task_book;
pub mod task_trace;

pub use handlers::{HandlerError, TaskHandler, TaskInput, TaskOutput};
pub use runtime::{ClientError, HerdNode, HerdNodeBuilder, NodeHandle};
