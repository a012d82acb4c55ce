//! Asking every node for its supervision record, for `GET /v1/supervision`.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_protocol::messages::groups;
use herd_protocol::messages::orchestrator::MemberState;
use herd_protocol::messages::pool::{PoolReply, PoolRequest};
use herd_protocol::messages::supervision::{
    NodeSupervision, SupervisionTree, SupervisorReply, SupervisorRequest,
};
use herd_protocol::{Mailbox, NodeName};
use ractor::rpc::CallResult;
use tokio::task::JoinSet;

use super::tree::{PoolPong, compose};
use crate::membership::ClusterView;
use crate::orchestrator::{find_in_group, find_supervisor};
use crate::pool::PoolMsg;

/// How long each node's supervisor and pool may take to answer; a node that
/// does not answer in time is listed as unreported.
const ANSWER_DEADLINE: Duration = Duration::from_secs(2);

/// The supervision tree of the cluster as `view` sees it: every up or
/// suspect node's supervisor and pool are asked concurrently, each with a
/// deadline, so one stuck node delays the answer by at most that deadline.
pub async fn supervision_tree(view: &ClusterView) -> SupervisionTree {
    let names: Vec<NodeName> = std::iter::once(&view.local)
        .chain(
            view.peers
                .values()
                .filter(|peer| matches!(peer.state, MemberState::Up | MemberState::Suspect)),
        )
        .map(|info| info.member.name.clone())
        .collect();
    let mut reports = JoinSet::new();
    let mut pongs = JoinSet::new();
    for name in names {
        if let Some(supervisor) = find_supervisor(view, &name) {
            let name = name.clone();
            reports.spawn(async move {
                let answer = supervisor
                    .call(
                        |port| Mailbox::Call(SupervisorRequest::Report, port),
                        Some(ANSWER_DEADLINE),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(SupervisorReply::Report(report))) => {
                        Some((name, report))
                    }
                    _ => None,
                }
            });
        }
        let pool = find_in_group::<PoolMsg>(groups::POOLS, view, |member| member.name == name);
        if let Some(pool) = pool {
            pongs.spawn(async move {
                let answer = pool
                    .call(
                        |port| Mailbox::Call(PoolRequest::Ping, port),
                        Some(ANSWER_DEADLINE),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(PoolReply::Pong { slots, busy })) => {
                        Some((name, PoolPong { slots, busy }))
                    }
                    _ => None,
                }
            });
        }
    }
    let reports: BTreeMap<NodeName, NodeSupervision> =
        reports.join_all().await.into_iter().flatten().collect();
    let pongs: BTreeMap<NodeName, PoolPong> =
        pongs.join_all().await.into_iter().flatten().collect();
    compose(view, &reports, &pongs)
}
