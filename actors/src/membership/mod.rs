//! Who is in the cluster: seeds, dialing and redialing, greetings, heartbeats
//! and failure detection, and the [`ClusterView`] every local component reads.
//!
//! ractor_cluster provides authenticated sessions and replicated process
//! groups, but no seed list, no reconnect, no failure detector and no notion
//! of node identity beyond a per-session number. The membership actor adds
//! those: it dials seeds and known peers with backoff, greets every peer
//! whose membership actor appears in the `herd.membership` group, refuses
//! peers that must not join (another protocol version, a second orchestrator,
//! a duplicate name), heartbeats every peer and declares silent ones down
//! (closing their session), and publishes the result on a `watch` channel.
//! Failure detection runs on every node, whatever its roles: each node must
//! notice the peers it depends on.

mod actor;
mod connections;
mod dialer;
mod discovery;
mod failure_detector;
mod gate;
mod gate_tls;
mod greetings;
mod liveness;
mod preauth_frames;
mod sessions;
mod view;

pub use actor::{Membership, MembershipArgs, MembershipLocal, MembershipMsg};
pub use view::{ClusterView, MemberInfo};
