//! How many slots a node may host, and how a cluster-wide total is spread
//! over the nodes.

use std::collections::BTreeMap;

use herd_protocol::MemberId;

/// Slots a node with `cores` CPUs and `memory_gb` of memory may host, given
/// the per-worker budgets (seed 004's `max_cpu_per_worker`,
/// `max_memory_per_worker_gb`). Without budgets a node may host `max_workers`.
/// Always at least one.
pub fn node_capacity(
    cores: f64,
    memory_gb: f64,
    cpu_per_worker: Option<f64>,
    memory_per_worker_gb: Option<f64>,
    max_workers: u32,
) -> u32 {
    let by_cpu = cpu_per_worker.map(|per| (cores / per).floor() as u32);
    let by_memory = memory_per_worker_gb.map(|per| (memory_gb / per).floor() as u32);
    [by_cpu, by_memory]
        .into_iter()
        .flatten()
        .fold(max_workers, u32::min)
        .max(1)
}

/// Spreads `target` slots over nodes in proportion to their capacity (largest
/// remainder), never more than a node's capacity. Where the capacities sum to
/// less than `target`, every node gets its capacity.
pub fn spread_slots(target: u32, capacities: &[(MemberId, u32)]) -> BTreeMap<MemberId, u32> {
    let total: u64 = capacities.iter().map(|(_, c)| u64::from(*c)).sum();
    if total <= u64::from(target) {
        return capacities.iter().cloned().collect();
    }
    let mut shares: Vec<(usize, u32, f64)> = capacities
        .iter()
        .enumerate()
        .map(|(index, (_, capacity))| {
            let exact = f64::from(target) * f64::from(*capacity) / total as f64;
            (index, exact.floor() as u32, exact - exact.floor())
        })
        .collect();
    let mut left = target - shares.iter().map(|(_, n, _)| n).sum::<u32>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|a, b| shares[*b].2.total_cmp(&shares[*a].2).then(a.cmp(b)));
    for index in order.into_iter().cycle().take(shares.len() * 2) {
        if left == 0 {
            break;
        }
        if shares[index].1 < capacities[index].1 {
            shares[index].1 += 1;
            left -= 1;
        }
    }
    shares
        .into_iter()
        .map(|(index, n, _)| (capacities[index].0.clone(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::{Incarnation, NodeName};
    use proptest::prelude::*;

    fn member(i: usize) -> MemberId {
        MemberId {
            name: NodeName::parse(&format!("n{i}")).unwrap(),
            incarnation: Incarnation(1),
        }
    }

    #[test]
    fn capacity_is_the_tighter_of_cpu_and_memory() {
        assert_eq!(node_capacity(8.0, 32.0, Some(2.0), Some(4.0), 1000), 4);
        assert_eq!(node_capacity(8.0, 6.0, Some(2.0), Some(4.0), 1000), 1);
        assert_eq!(node_capacity(8.0, 32.0, None, None, 50), 50);
        assert_eq!(node_capacity(1.0, 1.0, Some(2.0), None, 50), 1);
    }

    #[test]
    fn slots_follow_capacity() {
        let caps = vec![(member(1), 10), (member(2), 20), (member(3), 10)];
        let spread = spread_slots(8, &caps);
        assert_eq!(spread.values().copied().collect::<Vec<_>>(), vec![2, 4, 2]);
    }

    proptest! {
        #[test]
        fn spread_sums_to_the_target_within_capacity(
            target in 0u32..2000, caps in proptest::collection::vec(0u32..300, 1..10)
        ) {
            let caps: Vec<(MemberId, u32)> = caps.into_iter().enumerate().map(|(i, c)| (member(i), c)).collect();
            let spread = spread_slots(target, &caps);
            let total: u32 = caps.iter().map(|(_, c)| c).sum();
            prop_assert_eq!(spread.values().sum::<u32>(), target.min(total));
            for (m, c) in &caps {
                prop_assert!(spread[m] <= *c);
            }
        }
    }
}
