//! Finding actors through ractor's process groups: the orchestrator and the
//! worker pools register there, and the cluster view says which node each
//! group member runs on.

use herd_protocol::messages::groups;
use herd_protocol::{MemberId, NodeName};
use ractor::ActorRef;

use super::OrchestratorMsg;
use crate::membership::ClusterView;
use crate::pool::PoolMsg;

/// The actor of the orchestrator the view names, local or remote, if its
/// process group entry has arrived.
pub fn find_orchestrator(view: &ClusterView) -> Option<ActorRef<OrchestratorMsg>> {
    let target = view.orchestrator.as_ref()?;
    find_in_group(groups::ORCHESTRATOR, view, |member| member == target)
}

/// The pool actor on `member`, local or remote.
pub(super) fn find_pool(view: &ClusterView, member: &MemberId) -> Option<ActorRef<PoolMsg>> {
    find_in_group(groups::POOLS, view, |candidate| candidate == member)
}

/// The pool actor of the node called `name`, whatever its incarnation.
pub(super) fn find_pool_named(view: &ClusterView, name: &NodeName) -> Option<ActorRef<PoolMsg>> {
    find_in_group(groups::POOLS, view, |candidate| &candidate.name == name)
}

/// The supervisor of the node called `name`, local or remote.
pub(crate) fn find_supervisor(
    view: &ClusterView,
    name: &NodeName,
) -> Option<ActorRef<crate::runtime::SupervisorMsg>> {
    find_in_group(groups::SUPERVISORS, view, |candidate| {
        &candidate.name == name
    })
}

/// The first member of `group` whose node the view knows and `wanted` accepts.
pub(crate) fn find_in_group<M: ractor::Message>(
    group: &str,
    view: &ClusterView,
    wanted: impl Fn(&MemberId) -> bool,
) -> Option<ActorRef<M>> {
    ractor::pg::get_members(&group.to_string())
        .into_iter()
        .find(|cell| {
            view.member_of_actor(cell.get_id())
                .is_some_and(|info| wanted(&info.member))
        })
        .map(ActorRef::from)
}
