//! Who watches whom: the live members on a ring, each watching the next few.
//!
//! Heartbeating every peer costs each node O(n) messages per interval, the
//! cluster O(n²). Instead the live members (up or suspect, this node
//! included) are ordered by name on a ring, and each heartbeats only the
//! next `k` of them, its *subjects*; the `k` members before a node are its
//! *watchers*. With `k = min(watchers, n - 1)` every live member has exactly
//! `k` watchers and `k` subjects, so a node's idle cost stays flat as the
//! cluster grows, while a silent member is still noticed by several nodes
//! independently (Akka's cluster heartbeat uses the same layout).
//!
//! The assignment is a pure function of the set of live names: nodes with
//! the same view compute the same ring. Views differ for a moment while a
//! change spreads; that only shifts who watches whom for that moment
//! (see `unreachability` for why a report is counted from whoever sends it).
//! Pure: no I/O, no clock.

use std::collections::BTreeSet;

use herd_protocol::NodeName;

/// The ring of live members and how many each watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchRing {
    /// Live members, ordered by name (the ring's order), no duplicates.
    members: Vec<NodeName>,
    /// Subjects per member: `min(watchers, members - 1)`.
    per_member: usize,
}

impl WatchRing {
    /// The ring over `live` (this node among them), each member watching up
    /// to `watchers` others.
    pub fn new<'a>(live: impl IntoIterator<Item = &'a NodeName>, watchers: usize) -> Self {
        let members: Vec<NodeName> = live
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let per_member = watchers.min(members.len().saturating_sub(1));
        WatchRing {
            members,
            per_member,
        }
    }

    /// The members `member` heartbeats: the next `k` after it on the ring.
    /// Empty if `member` is not on the ring.
    pub fn subjects_of(&self, member: &NodeName) -> Vec<&NodeName> {
        self.neighbours(member, |index, step| (index + step) % self.members.len())
    }

    /// The members that heartbeat `member`: the `k` before it on the ring.
    /// Empty if `member` is not on the ring.
    pub fn watchers_of(&self, member: &NodeName) -> Vec<&NodeName> {
        let len = self.members.len();
        self.neighbours(member, |index, step| (index + len - step) % len)
    }

    fn neighbours(&self, member: &NodeName, at: impl Fn(usize, usize) -> usize) -> Vec<&NodeName> {
        let Ok(index) = self.members.binary_search(member) else {
            return Vec::new();
        };
        (1..=self.per_member)
            .map(|step| &self.members[at(index, step)])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(count: usize) -> Vec<NodeName> {
        (0..count)
            .map(|i| NodeName::parse(&format!("n{i:02}")).unwrap())
            .collect()
    }

    fn strs(names: Vec<&NodeName>) -> Vec<&str> {
        names.into_iter().map(NodeName::as_str).collect()
    }

    #[test]
    fn each_member_watches_the_next_ones_and_is_watched_by_the_previous_ones() {
        let members = names(6);
        let ring = WatchRing::new(&members, 2);
        assert_eq!(strs(ring.subjects_of(&members[0])), ["n01", "n02"]);
        assert_eq!(strs(ring.subjects_of(&members[5])), ["n00", "n01"]);
        assert_eq!(strs(ring.watchers_of(&members[0])), ["n05", "n04"]);
        assert_eq!(strs(ring.watchers_of(&members[3])), ["n02", "n01"]);
    }

    #[test]
    fn small_clusters_watch_everyone_else_and_a_lone_node_watches_nobody() {
        let two = names(2);
        let ring = WatchRing::new(&two, 5);
        assert_eq!(strs(ring.subjects_of(&two[0])), ["n01"]);
        assert_eq!(strs(ring.watchers_of(&two[0])), ["n01"]);
        let three = names(3);
        assert_eq!(
            strs(WatchRing::new(&three, 5).subjects_of(&three[1])),
            ["n02", "n00"]
        );
        let one = names(1);
        let ring = WatchRing::new(&one, 5);
        assert!(ring.subjects_of(&one[0]).is_empty());
        assert!(ring.watchers_of(&one[0]).is_empty());
    }

    #[test]
    fn a_member_off_the_ring_watches_and_is_watched_by_nobody() {
        let members = names(4);
        let ring = WatchRing::new(&members[..3], 2);
        assert!(ring.subjects_of(&members[3]).is_empty());
        assert!(ring.watchers_of(&members[3]).is_empty());
    }

    proptest! {
        /// Whatever order nodes list the members in, they compute the same
        /// ring; every member has exactly k distinct subjects and watchers,
        /// never itself, and "a watches b" reads the same from both ends.
        #[test]
        fn every_member_has_k_watchers_and_both_ends_agree(
            count in 1usize..40,
            watchers in 1usize..8,
            seed in any::<u64>(),
        ) {
            let members = names(count);
            let mut shuffled = members.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let ring = WatchRing::new(&members, watchers);
            prop_assert_eq!(&ring, &WatchRing::new(&shuffled, watchers));
            let k = watchers.min(count - 1);
            for member in &members {
                let subjects = ring.subjects_of(member);
                let watching = ring.watchers_of(member);
                prop_assert_eq!(subjects.len(), k);
                prop_assert_eq!(watching.len(), k);
                prop_assert!(!subjects.contains(&member) && !watching.contains(&member));
                prop_assert_eq!(subjects.iter().collect::<BTreeSet<_>>().len(), k);
                for subject in subjects {
                    prop_assert!(ring.watchers_of(subject).contains(&member));
                }
            }
        }
    }
}
