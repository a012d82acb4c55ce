//! The supervision tree of the whole cluster, composed from the membership
//! view, each node supervisor's record, and the pools' answers to a ping.
//!
//! Pure: the same inputs give the same tree. Who watches a pool follows
//! [`super::assignment`], so the tree names the monitor that would act; who
//! restarts a component is always its own node's supervisor (a monitor only
//! asks), and a supervisor is restarted by the process's service manager
//! (the node stops on a fatal failure).

use std::collections::BTreeMap;

use herd_protocol::NodeName;
use herd_protocol::messages::membership::Role;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::supervision::{
    ActorTree, ComponentKind, ComponentRecord, NodeSupervision, NodeTree, SupervisionTree,
};

use super::assignment::{monitors, watcher_of};
use crate::membership::{ClusterView, MemberInfo};

/// A pool's answer to a ping: slots in service and busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolPong {
    /// Slots in service.
    pub slots: u32,
    /// Slots running a task.
    pub busy: u32,
}

/// Who restarts the supervisor itself.
pub const SERVICE_MANAGER: &str = "service manager (the node process exits)";

/// The tree for every up or suspect node of `view`, in name order.
pub fn compose(
    view: &ClusterView,
    reports: &BTreeMap<NodeName, NodeSupervision>,
    pongs: &BTreeMap<NodeName, PoolPong>,
) -> SupervisionTree {
    let monitors = monitors(view);
    let mut members: Vec<&MemberInfo> = std::iter::once(&view.local)
        .chain(
            view.peers
                .values()
                .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect)),
        )
        .collect();
    members.sort_by(|a, b| a.member.name.cmp(&b.member.name));
    let nodes = members
        .into_iter()
        .map(|info| {
            let report = reports
                .get(&info.member.name)
                .filter(|report| report.member == info.member);
            node_tree(info, report, pongs.get(&info.member.name), &monitors)
        })
        .collect();
    SupervisionTree {
        reported_by: view.local.member.name.to_string(),
        monitors: monitors.iter().map(|name| name.to_string()).collect(),
        nodes,
    }
}

fn node_tree(
    info: &MemberInfo,
    report: Option<&NodeSupervision>,
    pong: Option<&PoolPong>,
    monitors: &[NodeName],
) -> NodeTree {
    let name = info.member.name.to_string();
    let supervisor = format!("supervisor@{name}");
    // Unreported: the components the node's roles imply, without records.
    let records: Vec<(ComponentKind, Option<&ComponentRecord>)> = match report {
        Some(report) => report
            .components
            .iter()
            .map(|record| (record.component, Some(record)))
            .collect(),
        None => implied_components(info)
            .into_iter()
            .map(|component| (component, None))
            .collect(),
    };
    let mut actors = vec![ActorTree {
        actor: "supervisor".to_string(),
        runs_on: name.clone(),
        running: report.map(|_| true),
        watched_by: None,
        restarted_by: SERVICE_MANAGER.to_string(),
        restarts: 0,
        requested_restarts: 0,
        last_failure: None,
        slots: None,
        busy: None,
    }];
    for (component, record) in records {
        let watched_by = match component {
            ComponentKind::Pool => {
                watcher_of(&info.member.name, monitors).map(|monitor| format!("monitor@{monitor}"))
            }
            // A replicated leader's orchestrator is pinged by the monitor
            // that watches its node, which has the leader step down when it
            // is stuck.
            ComponentKind::Orchestrator if info.replica_id.is_some() => {
                watcher_of(&info.member.name, monitors)
                    .map(|monitor| format!("monitor@{monitor}"))
                    .or_else(|| Some(supervisor.clone()))
            }
            _ => Some(supervisor.clone()),
        };
        let is_pool = component == ComponentKind::Pool;
        actors.push(ActorTree {
            actor: component.as_str().to_string(),
            runs_on: name.clone(),
            running: record.map(|r| r.running),
            watched_by,
            restarted_by: supervisor.clone(),
            restarts: record.map_or(0, |r| r.restarts),
            requested_restarts: record.map_or(0, |r| r.requested_restarts),
            last_failure: record.and_then(|r| r.last_failure.clone()),
            slots: pong.filter(|_| is_pool).map(|p| p.slots),
            busy: pong.filter(|_| is_pool).map(|p| p.busy),
        });
    }
    NodeTree {
        name,
        state: match info.state {
            MemberState::Suspect => "suspect",
            _ => "up",
        }
        .to_string(),
        reported: report.is_some(),
        actors,
    }
}

fn implied_components(info: &MemberInfo) -> Vec<ComponentKind> {
    let mut components = vec![ComponentKind::Membership];
    for (role, component) in [
        (Role::Orchestrator, ComponentKind::Orchestrator),
        (Role::Worker, ComponentKind::Pool),
        (Role::Monitor, ComponentKind::Monitor),
    ] {
        if info.has_role(role) {
            components.push(component);
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_protocol::messages::supervision::FailureRecord;
    use herd_protocol::{Incarnation, MemberId, UnixMillis};

    fn info(name: &str, roles: &[Role]) -> MemberInfo {
        MemberInfo {
            member: MemberId {
                name: NodeName::parse(name).unwrap(),
                incarnation: Incarnation(1),
            },
            state: MemberState::Up,
            roles: roles.to_vec(),
            cluster_addr: format!("{name}:7100"),
            http_addr: None,
            workers: 2,
            orchestrator_since: None,
            replica_id: None,
            replica_group: None,
            session: Some(1),
            state_since: UnixMillis(0),
        }
    }

    fn view() -> ClusterView {
        let mut view = ClusterView::alone(info("n1", &[Role::Orchestrator, Role::Monitor]));
        for (name, roles) in [
            ("n2", vec![Role::Worker]),
            ("n3", vec![Role::Worker, Role::Monitor]),
        ] {
            view.peers
                .insert(NodeName::parse(name).unwrap(), info(name, &roles));
        }
        view
    }

    fn actor<'a>(tree: &'a SupervisionTree, node: &str, actor: &str) -> &'a ActorTree {
        tree.nodes
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.actors.iter().find(|a| a.actor == actor))
            .unwrap()
    }

    #[test]
    fn a_reported_restart_shows_with_its_watcher_and_restarter() {
        let view = view();
        let n2 = view.peers[&NodeName::parse("n2").unwrap()].member.clone();
        let failure = FailureRecord {
            at: UnixMillis(5),
            reason: "stuck: ...".to_string(),
        };
        let reports = BTreeMap::from([(
            n2.name.clone(),
            NodeSupervision {
                member: n2.clone(),
                components: vec![ComponentRecord {
                    component: ComponentKind::Pool,
                    running: true,
                    restarts: 1,
                    requested_restarts: 1,
                    last_failure: Some(failure.clone()),
                }],
            },
        )]);
        let pongs = BTreeMap::from([(n2.name.clone(), PoolPong { slots: 2, busy: 1 })]);
        let tree = compose(&view, &reports, &pongs);
        assert_eq!(tree.monitors, ["n1", "n3"]);
        let pool = actor(&tree, "n2", "pool");
        assert_eq!(pool.watched_by.as_deref(), Some("monitor@n3"));
        assert_eq!(pool.restarted_by, "supervisor@n2");
        assert_eq!((pool.restarts, pool.requested_restarts), (1, 1));
        assert_eq!(pool.last_failure.as_ref(), Some(&failure));
        assert_eq!((pool.slots, pool.busy), (Some(2), Some(1)));
        // n3's pool is watched by the next monitor, wrapping to n1.
        assert_eq!(
            actor(&tree, "n3", "pool").watched_by.as_deref(),
            Some("monitor@n1")
        );
    }

    #[test]
    fn an_unreported_node_lists_what_its_roles_imply_without_counts() {
        let tree = compose(&view(), &BTreeMap::new(), &BTreeMap::new());
        let n1 = &tree.nodes[0];
        assert!(!n1.reported);
        let names: Vec<&str> = n1.actors.iter().map(|a| a.actor.as_str()).collect();
        assert_eq!(
            names,
            ["supervisor", "membership", "orchestrator", "monitor"]
        );
        assert_eq!(
            actor(&tree, "n1", "supervisor").restarted_by,
            SERVICE_MANAGER
        );
        assert_eq!(
            actor(&tree, "n1", "orchestrator").watched_by.as_deref(),
            Some("supervisor@n1")
        );
        assert_eq!(actor(&tree, "n2", "pool").running, None);
    }

    #[test]
    fn a_replicated_orchestrator_is_watched_by_the_monitor_of_its_node() {
        let mut view = view();
        view.local.replica_id = Some(7);
        let tree = compose(&view, &BTreeMap::new(), &BTreeMap::new());
        let watcher = actor(&tree, "n1", "orchestrator")
            .watched_by
            .clone()
            .unwrap();
        assert!(watcher.starts_with("monitor@"), "{watcher}");
        assert_ne!(
            watcher, "monitor@n1",
            "another node's monitor when there is one"
        );
    }
}
