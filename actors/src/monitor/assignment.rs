//! Which monitor watches which pool.
//!
//! Decides, from the membership view alone, the one monitor responsible for
//! each node's pool, so that every node computes the same answer and exactly
//! one monitor acts on a stuck pool (several monitors restarting the same
//! pool at once would burn its restart intensity in one go). The watcher of a
//! pool on node `N` is the first up monitor-role node after `N` in name order,
//! wrapping around; a node never watches its own pool unless it is the only
//! monitor (a pool and its watcher on the same node share its fate, but an
//! only monitor watching its own pool still catches a stuck pool on a live
//! node). It never looks at load or history: two nodes with the same view
//! always agree.

use herd_protocol::NodeName;
use herd_protocol::messages::membership::Role;

use crate::membership::ClusterView;

/// Up monitor-role nodes of `view`, in name order.
pub fn monitors(view: &ClusterView) -> Vec<NodeName> {
    let mut names: Vec<NodeName> = view
        .up_members()
        .filter(|info| info.has_role(Role::Monitor))
        .map(|info| info.member.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The monitor that watches the pool on `pool_node`, given the up monitors
/// in name order; `None` only when there is no monitor at all.
pub fn watcher_of(pool_node: &NodeName, monitors: &[NodeName]) -> Option<NodeName> {
    debug_assert!(monitors.windows(2).all(|pair| pair[0] < pair[1]));
    monitors
        .iter()
        .find(|monitor| *monitor > pool_node)
        .or_else(|| monitors.iter().find(|monitor| *monitor != pool_node))
        .or_else(|| monitors.first())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<NodeName> {
        list.iter().map(|n| NodeName::parse(n).unwrap()).collect()
    }

    fn watcher(pool: &str, list: &[&str]) -> Option<String> {
        watcher_of(&NodeName::parse(pool).unwrap(), &names(list)).map(|n| n.to_string())
    }

    #[test]
    fn the_next_monitor_in_name_order_watches_wrapping_around() {
        let all = ["n1", "n2", "n3"];
        assert_eq!(watcher("n1", &all).as_deref(), Some("n2"));
        assert_eq!(watcher("n2", &all).as_deref(), Some("n3"));
        assert_eq!(watcher("n3", &all).as_deref(), Some("n1"));
        // A worker-only node between monitors is watched by the next one.
        assert_eq!(watcher("n25", &all).as_deref(), Some("n3"));
        assert_eq!(watcher("z9", &all).as_deref(), Some("n1"));
    }

    #[test]
    fn a_node_watches_its_own_pool_only_when_it_is_the_only_monitor() {
        assert_eq!(watcher("n1", &["n1"]).as_deref(), Some("n1"));
        assert_eq!(watcher("n2", &["n1"]).as_deref(), Some("n1"));
        assert_eq!(watcher("n3", &["n1"]).as_deref(), Some("n1"));
        assert_eq!(watcher("n1", &["n1", "n3"]).as_deref(), Some("n3"));
        assert_eq!(watcher("n3", &["n1", "n3"]).as_deref(), Some("n1"));
        assert_eq!(watcher("n1", &[]), None);
    }

    #[test]
    fn every_pool_has_exactly_one_watcher_and_the_load_is_spread() {
        let all = names(&["node-a", "node-b", "node-c", "node-d"]);
        let pools = names(&["node-a", "node-b", "node-c", "node-d", "node-e", "node-f"]);
        let mut per_monitor = std::collections::BTreeMap::<NodeName, u32>::new();
        for pool in &pools {
            let watcher = watcher_of(pool, &all).unwrap();
            assert!(&watcher != pool || all.len() == 1);
            *per_monitor.entry(watcher).or_default() += 1;
        }
        assert_eq!(per_monitor.len(), 4, "{per_monitor:?}");
        assert!(per_monitor.values().all(|&count| count <= 3));
    }
}
