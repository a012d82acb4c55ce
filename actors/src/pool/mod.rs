//! A node's worker slots: one worker actor per slot, each running at most one
//! task at a time.
//!
//! The pool registers with the orchestrator, receives batches of
//! assignments (never more than it has idle slots), hands each to an idle
//! worker, and returns finished attempts in batches. A worker that panics or
//! dies is replaced at once (with backoff if it keeps failing), and its
//! interrupted task is reported as a crash so the orchestrator retries it.
//! The orchestrator's autoscaler resizes the pool: new slots start at once,
//! surplus slots retire when idle (a running task is never interrupted).

mod actor;
mod resources;
mod restarts;
mod worker;

pub use actor::{PoolArgs, PoolLocal, PoolMsg, WorkerPool};
pub use resources::{ResourceSample, host_resources};
