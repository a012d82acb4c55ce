//! Monitors: supervision across nodes.
//!
//! Every node with the `monitor` role runs a [`Monitor`]. Each worker pool
//! of the cluster is watched by exactly one monitor ([`assignment`]), which
//! pings it with a deadline; a pool that misses several pings in a row on a
//! node that membership's heartbeats say is alive is stuck ([`probe`]), and
//! the monitor asks that node's supervisor to restart it. The supervisor
//! decides (it refuses beyond its restart intensity, and the monitor then
//! only reports). A monitor never kills an actor itself, never touches a
//! node it cannot reach (a dead node is membership's business: its tasks are
//! re-queued when it is declared down) and never restarts the orchestrator
//! in place. With raft replication the monitor that watches the leader's
//! node also pings its orchestrator, and a stuck one is killed and its
//! replica made to step down at the monitor's request, so another replica
//! leads (`leader_watch`).
//!
//! - `assignment`, `probe`: the pure rules, unit-tested.
//! - `actor`: the monitor actor (probes, requests, metrics).
//! - `tree`: the cluster's supervision tree from the view and each node's
//!   record (pure); `gather`: asking every node for its record.

mod actor;
pub mod assignment;
mod gather;
mod leader_watch;
pub mod probe;
mod tree;

pub use actor::{Monitor, MonitorArgs};
pub use gather::supervision_tree;
