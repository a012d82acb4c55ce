//! Who is in the cluster: seeds, dialing and redialing, greetings, and the
//! [`ClusterView`] every local component reads.
//!
//! ractor_cluster provides authenticated sessions and replicated process
//! groups, but no seed list, no reconnect and no notion of node identity
//! beyond a per-session number. The membership actor adds those: it dials
//! seeds and known peers with backoff, greets every peer whose membership
//! actor appears in the `herd.membership` group, refuses peers that must not
//! join (another protocol version, a second orchestrator, a duplicate name),
//! and publishes the result on a `watch` channel.

mod actor;
mod dialer;
mod sessions;
mod view;

pub use actor::{Membership, MembershipArgs, MembershipLocal, MembershipMsg, MembershipProtocol};
pub use dialer::Dialer;
pub use view::{ClusterView, MemberInfo};
