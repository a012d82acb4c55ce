//! Who is in the cluster: seeds, dialing and redialing, greetings, heartbeats
//! and failure detection, and the [`ClusterView`] every local component reads.
//!
//! ractor_cluster provides authenticated sessions and replicated process
//! groups, but no seed list, no reconnect, no failure detector and no notion
//! of node identity beyond a per-session number. The membership actor adds
//! those: it dials seeds and known peers with backoff, greets every peer
//! whose membership actor appears in the `herd.membership` group, refuses
//! peers that must not join (another protocol version, a second orchestrator,
//! a duplicate name), watches a bounded set of peers and declares silent ones
//! down (closing their session), and publishes the result on a `watch`
//! channel.
//!
//! Watching scales: the live members are ordered by name on a ring and each
//! node heartbeats only the next few (`cluster.watchers`, default 5;
//! `watch_ring`), so its idle cost stays flat as the cluster grows. A
//! watcher that finds a subject silent past its phi-accrual threshold
//! reports it unreachable to every node; each node declares the subject down
//! once two distinct watchers stand against it (one, in a two-node cluster;
//! `unreachability`), so a single slow or cut-off watcher cannot take a
//! healthy node down. A closed connection is still declared down at once,
//! and a node that hears from nobody at all declares its peers down itself
//! (it is the one cut off). Detection runs on every node, whatever its
//! roles, and every node reaches the same verdicts from the same reports.

mod actor;
mod connections;
mod dialer;
mod discovery;
mod failure_detector;
mod gate;
mod gate_tls;
mod greetings;
mod leadership;
mod leaving;
mod liveness;
mod own_group;
mod preauth_frames;
mod replica_groups;
mod reporting;
mod sessions;
mod unreachability;
mod view;
mod watch_ring;

pub use actor::{Membership, MembershipArgs, MembershipLocal, MembershipMsg};
pub use view::{ClusterView, MemberInfo};
