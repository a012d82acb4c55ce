//! Which replica group of the task book a node follows when two meet (raft
//! replication). Pure: no actor, no I/O.
//!
//! Two groups exist when orchestrator-role nodes that could not reach each
//! other at start each founded one (started without seeds, or with seeds
//! that were down). Each has its own leader, task book and orchestrator.
//! Two books cannot be merged, so the cluster keeps the **older** group
//! (see [`ReplicaGroupId`]'s order) and the younger one's replica nodes
//! leave:
//! - A node follows one group: its own replica's once the log named it;
//!   otherwise (no replica, or one not in a group yet) the oldest group
//!   among its live peers' replicas. It follows only the leadership claims
//!   of that group, so `view.orchestrator` never names another group's
//!   leader, whatever its term (terms of different groups say nothing
//!   about each other).
//! - A node whose own replica's group is younger than a group one of its
//!   live peers holds (or a leader claims) must leave: the membership
//!   actor stops it with a configuration error (exit 2).
//!
//! What this never does: merge books, or stop a node of the older group.
//! Claims and greetings that name no group (a replica not named yet) are
//! not judged.

use herd_protocol::messages::replica::ReplicaGroupId;

/// The group whose leader a node follows: `own` (its replica's group) if
/// named, else the oldest among `visible` (the groups of its live peers'
/// replicas), else none yet.
pub fn followed_group<'a>(
    own: Option<&'a ReplicaGroupId>,
    visible: impl IntoIterator<Item = &'a ReplicaGroupId>,
) -> Option<&'a ReplicaGroupId> {
    own.or_else(|| visible.into_iter().min())
}

/// Whether a node following `followed` may follow a leadership claim made
/// for `claimed`: the same group, or either not known.
pub fn follows_claim(followed: Option<&ReplicaGroupId>, claimed: Option<&ReplicaGroupId>) -> bool {
    match (followed, claimed) {
        (Some(followed), Some(claimed)) => followed == claimed,
        _ => true,
    }
}

/// The oldest of `visible` that is older than `own`, if any: then the node
/// holding a replica of `own` must leave.
pub fn older_group<'a>(
    own: &ReplicaGroupId,
    visible: impl IntoIterator<Item = &'a ReplicaGroupId>,
) -> Option<&'a ReplicaGroupId> {
    visible
        .into_iter()
        .filter(|group| group.is_older_than(own))
        .min()
}

#[cfg(test)]
mod tests {
    use herd_protocol::{NodeName, UnixMillis};

    use super::*;

    fn group(founder_node: &str, founded_at: u64, founder: u64) -> ReplicaGroupId {
        ReplicaGroupId {
            founded_at: UnixMillis(founded_at),
            founder,
            founder_node: NodeName::parse(founder_node).unwrap(),
        }
    }

    #[test]
    fn the_group_founded_first_is_older_whichever_way_round_they_are_compared() {
        let older = group("n2", 1_000, 9);
        let younger = group("n1", 2_000, 1);
        assert!(older.is_older_than(&younger));
        assert!(!younger.is_older_than(&older));
        assert_eq!(older_group(&younger, [&older]), Some(&older));
        assert_eq!(older_group(&older, [&younger]), None);
        // Neither order of arrival changes which one a node follows.
        assert_eq!(followed_group(None, [&older, &younger]), Some(&older));
        assert_eq!(followed_group(None, [&younger, &older]), Some(&older));
    }

    #[test]
    fn groups_founded_in_the_same_millisecond_are_ordered_by_founder() {
        let a = group("n1", 1_000, 5);
        let b = group("n2", 1_000, 6);
        assert!(a.is_older_than(&b));
        assert!(!b.is_older_than(&a));
        assert_eq!(older_group(&b, [&a]), Some(&a));
        assert_eq!(older_group(&a, [&b]), None);
        assert_eq!(followed_group(None, [&b, &a]), Some(&a));
        // A group is never older than itself: its own replicas never leave.
        assert_eq!(older_group(&a, [&a.clone()]), None);
    }

    #[test]
    fn a_node_with_a_group_follows_its_own_and_only_its_own_leader() {
        let older = group("n1", 1_000, 1);
        let own = group("n2", 2_000, 2);
        // Even with an older group in sight (it is about to leave), its
        // own group's claims are the ones it follows.
        let followed = followed_group(Some(&own), [&older]);
        assert_eq!(followed, Some(&own));
        assert!(follows_claim(followed, Some(&own)));
        assert!(!follows_claim(followed, Some(&older)));
    }

    #[test]
    fn a_node_without_a_group_follows_the_first_it_learns_of_until_an_older_one_appears() {
        // Nothing named yet: any claim is followed (a new replica, or a
        // worker that has not met a replica that knows its group).
        assert_eq!(followed_group(None, []), None);
        assert!(follows_claim(None, Some(&group("n2", 2_000, 2))));
        // The first group it learns of is the one it follows...
        let first = group("n2", 2_000, 2);
        let followed = followed_group(None, [&first]);
        assert_eq!(followed, Some(&first));
        assert!(follows_claim(followed, Some(&first)));
        // ...until an older one comes in sight: then only that one's
        // claims, and the younger one's are ignored.
        let older = group("n1", 1_000, 1);
        let followed = followed_group(None, [&first, &older]);
        assert_eq!(followed, Some(&older));
        assert!(!follows_claim(followed, Some(&first)));
        assert!(follows_claim(followed, Some(&older)));
    }

    #[test]
    fn claims_and_nodes_without_a_named_group_are_not_judged() {
        let own = group("n1", 1_000, 1);
        assert!(follows_claim(Some(&own), None));
        assert!(follows_claim(None, None));
        assert_eq!(older_group(&own, []), None);
    }
}
