//! Which change of the replica set the leader makes next: pure logic, one
//! step at a time (openraft applies each as a joint-consensus change).
//!
//! Rules, in order of urgency:
//! 1. A replica that is gone for good — its node left or was declared down,
//!    or its node came back with a new replica (it lost its storage) — is
//!    replaced by a caught-up learner if there is one. It is not removed
//!    without a replacement: a dead voter in a three-voter group costs the
//!    same tolerance as a two-voter group, and a replica with a data
//!    directory may still come back.
//! 2. While there are fewer voters than the cap, caught-up learners are
//!    promoted, as many at once as there are free seats. So twenty orchestrator-role nodes make three voters and
//!    seventeen learners, not a twenty-voter group.
//! 3. A live orchestrator-role node whose replica is not in the group joins
//!    as a learner (it catches up from a snapshot before it can vote).
//! 4. A learner gone for good is removed.
//!
//! The leader never plans its own removal: it would have to step down
//! first, and 0.9 has no leadership transfer.

use std::collections::{BTreeMap, BTreeSet};

use super::types::{ReplicaId, ReplicaNode};

/// The most voters a group may be configured with: more make every commit
/// wait for more acknowledgements and tolerate failures no one plans for.
pub const MAX_VOTERS: usize = 5;

/// The replica set as the last committed membership says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaSet {
    /// Replicas that vote.
    pub voters: BTreeSet<ReplicaId>,
    /// Replicas that receive the log but do not vote.
    pub learners: BTreeSet<ReplicaId>,
}

/// What the leader knows of one replica, in the group or offering to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Where it runs.
    pub node: ReplicaNode,
    /// Gone for good: its node left or was declared down, or its node now
    /// runs another replica.
    pub gone: bool,
    /// Its log is within the leader's lag threshold (a learner that is
    /// caught up can be promoted without stalling commits).
    pub caught_up: bool,
}

/// One change of the replica set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// Add a replica as a learner.
    AddLearner(ReplicaId, ReplicaNode),
    /// Make these the voters (a promotion, or a replacement of a gone
    /// voter by a learner).
    SetVoters(BTreeSet<ReplicaId>),
    /// Remove learners gone for good.
    RemoveLearners(BTreeSet<ReplicaId>),
}

/// The next change the leader `leader` should make, if any. `replicas`
/// holds every replica the leader knows of, in the group or not; a member
/// of `current` missing from it counts as gone.
pub fn next_step(
    leader: ReplicaId,
    current: &ReplicaSet,
    replicas: &BTreeMap<ReplicaId, ReplicaStatus>,
    voter_cap: usize,
) -> Option<MembershipStep> {
    let voter_cap = voter_cap.clamp(1, MAX_VOTERS);
    let gone = |id: &ReplicaId| *id != leader && replicas.get(id).is_none_or(|r| r.gone);
    let ready_learner = || {
        current
            .learners
            .iter()
            .find(|id| replicas.get(*id).is_some_and(|r| !r.gone && r.caught_up))
            .copied()
    };

    // 1. Replace a gone voter.
    if let Some(dead) = current.voters.iter().find(|id| gone(id)).copied()
        && let Some(learner) = ready_learner()
    {
        let mut voters = current.voters.clone();
        voters.remove(&dead);
        voters.insert(learner);
        return Some(MembershipStep::SetVoters(voters));
    }
    // 2. Fill the voter seats, with every caught-up learner that fits at
    //    once: one voter grown to two tolerates no more failures than one,
    //    so 1 → 3 is one step when two learners are ready.
    let free_seats = voter_cap.saturating_sub(current.voters.len());
    let ready: Vec<ReplicaId> = current
        .learners
        .iter()
        .filter(|id| replicas.get(*id).is_some_and(|r| !r.gone && r.caught_up))
        .take(free_seats)
        .copied()
        .collect();
    if !ready.is_empty() {
        let mut voters = current.voters.clone();
        voters.extend(ready);
        return Some(MembershipStep::SetVoters(voters));
    }
    // 3. Take in new replicas as learners, in id order.
    if let Some((id, status)) = replicas.iter().find(|(id, status)| {
        !status.gone && !current.voters.contains(id) && !current.learners.contains(id)
    }) {
        return Some(MembershipStep::AddLearner(*id, status.node.clone()));
    }
    // 4. Drop learners gone for good.
    let gone_learners: BTreeSet<ReplicaId> = current
        .learners
        .iter()
        .filter(|id| gone(id))
        .copied()
        .collect();
    if !gone_learners.is_empty() {
        return Some(MembershipStep::RemoveLearners(gone_learners));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, gone: bool, caught_up: bool) -> ReplicaStatus {
        ReplicaStatus {
            node: ReplicaNode {
                name: name.to_string(),
                cluster_addr: format!("{name}:7100"),
            },
            gone,
            caught_up,
        }
    }

    fn set(voters: &[u64], learners: &[u64]) -> ReplicaSet {
        ReplicaSet {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
        }
    }

    fn live(ids: &[u64]) -> BTreeMap<ReplicaId, ReplicaStatus> {
        ids.iter()
            .map(|id| (*id, status(&format!("n{id}"), false, true)))
            .collect()
    }

    /// Applies steps until none is left, as the leader would one commit at
    /// a time; returns the final set.
    fn settle(
        leader: ReplicaId,
        mut current: ReplicaSet,
        replicas: &BTreeMap<ReplicaId, ReplicaStatus>,
        cap: usize,
    ) -> ReplicaSet {
        for _ in 0..100 {
            match next_step(leader, &current, replicas, cap) {
                None => return current,
                Some(MembershipStep::AddLearner(id, _)) => {
                    current.learners.insert(id);
                }
                Some(MembershipStep::SetVoters(voters)) => {
                    // Former voters stay as learners (openraft's `retain`).
                    for id in &current.voters {
                        if !voters.contains(id) {
                            current.learners.insert(*id);
                        }
                    }
                    for id in &voters {
                        current.learners.remove(id);
                    }
                    current.voters = voters;
                }
                Some(MembershipStep::RemoveLearners(ids)) => {
                    current.learners.retain(|id| !ids.contains(id));
                }
            }
        }
        panic!("the plan does not settle");
    }

    #[test]
    fn twenty_orchestrator_nodes_make_three_voters_and_seventeen_learners() {
        let ids: Vec<u64> = (1..=20).collect();
        let settled = settle(1, set(&[1], &[]), &live(&ids), herd_config::DEFAULT_VOTERS);
        assert_eq!(settled.voters.len(), 3);
        assert!(settled.voters.contains(&1));
        assert_eq!(settled.learners.len(), 17);
    }

    #[test]
    fn the_cap_is_at_most_five_and_at_least_one() {
        let ids: Vec<u64> = (1..=9).collect();
        assert_eq!(
            settle(1, set(&[1], &[]), &live(&ids), 50).voters.len(),
            MAX_VOTERS
        );
        assert_eq!(settle(1, set(&[1], &[]), &live(&ids), 0).voters.len(), 1);
    }

    #[test]
    fn one_voter_grows_to_three_in_one_step_when_two_learners_are_ready() {
        assert_eq!(
            next_step(1, &set(&[1], &[2, 3, 4]), &live(&[1, 2, 3, 4]), 3),
            Some(MembershipStep::SetVoters([1, 2, 3].into()))
        );
    }

    #[test]
    fn a_learner_is_promoted_only_once_caught_up() {
        let mut replicas = live(&[1, 2]);
        replicas.get_mut(&2).unwrap().caught_up = false;
        assert_eq!(next_step(1, &set(&[1], &[2]), &replicas, 3), None);
        replicas.get_mut(&2).unwrap().caught_up = true;
        assert_eq!(
            next_step(1, &set(&[1], &[2]), &replicas, 3),
            Some(MembershipStep::SetVoters([1, 2].into()))
        );
    }

    #[test]
    fn a_gone_voter_is_replaced_by_a_caught_up_learner_and_not_removed_without_one() {
        let mut replicas = live(&[1, 2, 3]);
        replicas.get_mut(&3).unwrap().gone = true;
        // No learner: the dead voter stays (it may come back with its data).
        assert_eq!(next_step(1, &set(&[1, 2, 3], &[]), &replicas, 3), None);
        // Its node came back without storage, as replica 4: it joins, catches
        // up, and takes the seat.
        replicas.insert(4, status("n3", false, false));
        assert_eq!(
            next_step(1, &set(&[1, 2, 3], &[]), &replicas, 3),
            Some(MembershipStep::AddLearner(
                4,
                status("n3", false, false).node
            ))
        );
        assert_eq!(next_step(1, &set(&[1, 2, 3], &[4]), &replicas, 3), None);
        replicas.get_mut(&4).unwrap().caught_up = true;
        assert_eq!(
            next_step(1, &set(&[1, 2, 3], &[4]), &replicas, 3),
            Some(MembershipStep::SetVoters([1, 2, 4].into()))
        );
        // The old replica, now a learner, is dropped.
        assert_eq!(
            next_step(1, &set(&[1, 2, 4], &[3]), &replicas, 3),
            Some(MembershipStep::RemoveLearners([3].into()))
        );
    }

    #[test]
    fn a_voter_the_leader_does_not_know_of_counts_as_gone_but_the_leader_never_does() {
        let replicas = live(&[2, 4]);
        // Leader 1 is missing from the map (it never reports on itself).
        assert_eq!(
            next_step(1, &set(&[1, 2, 3], &[4]), &replicas, 3),
            Some(MembershipStep::SetVoters([1, 2, 4].into()))
        );
    }
}
