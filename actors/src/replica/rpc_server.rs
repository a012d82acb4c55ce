//! The replica's Raft RPC endpoint: an actor in the [`groups::REPLICAS`]
//! process group that hands each request to the local [`openraft::Raft`].
//!
//! Requests are answered from a task of their own, so a slow snapshot chunk
//! does not hold up a vote or a heartbeat behind it in the mailbox. At most
//! [`MAX_RPCS_IN_FLIGHT`] run at once; beyond that a request is refused at
//! once (openraft backs off and retries), so a peer cannot pile up tasks.
//!
//! A request from a replica of another group than this one's (both named)
//! is refused: two groups founded apart must never exchange entries or
//! votes, or the younger could overwrite the older's log or depose its
//! leader before membership tells the younger's nodes to leave.

use std::sync::Arc;

use herd_protocol::messages::groups;
use herd_protocol::messages::replica::{
    RaftRpcKind, ReplicaCast, ReplicaGroupId, ReplicaReply, ReplicaRequest,
};
use herd_protocol::{Mailbox, Protocol, codec};
use openraft::Raft;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tracing::warn;

use super::types::{ReplicaId, ReplicaTypes};

/// Requests served at once. openraft keeps one append stream per follower
/// plus votes and snapshot chunks, so a handful is normal.
pub const MAX_RPCS_IN_FLIGHT: usize = 64;

/// The replica endpoint's message vocabulary.
pub struct ReplicaProtocol;

impl Protocol for ReplicaProtocol {
    const NAME: &'static str = "replica";
    type Cast = ReplicaCast;
    type Request = ReplicaRequest;
    type Reply = ReplicaReply;
    type Local = ReplicaLocal;
}

/// The endpoint takes no local messages.
#[derive(Debug)]
pub enum ReplicaLocal {}

/// Messages to a replica endpoint.
pub type ReplicaMsg = Mailbox<ReplicaProtocol>;

/// The endpoint actor. Its arguments are the local Raft and its id.
pub struct ReplicaServer;

/// The endpoint's state: what it serves and its in-flight permits.
pub struct ReplicaServerState {
    args: ReplicaServerArgs,
    in_flight: Arc<Semaphore>,
}

/// What the endpoint serves.
pub struct ReplicaServerArgs {
    /// This node's replica.
    pub raft: Raft<ReplicaTypes>,
    /// Its id: requests meant for another id are refused.
    pub id: ReplicaId,
    /// Its group, once named: requests from another group are refused.
    pub group: watch::Receiver<Option<ReplicaGroupId>>,
    /// Join [`groups::REPLICAS`] (off in tests that run several replicas in
    /// one process and address them directly).
    pub advertise: bool,
}

impl Actor for ReplicaServer {
    type Msg = ReplicaMsg;
    type State = ReplicaServerState;
    type Arguments = ReplicaServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.advertise {
            ractor::pg::join(groups::REPLICAS.to_string(), vec![myself.get_cell()]);
        }
        Ok(ReplicaServerState {
            args,
            in_flight: Arc::new(Semaphore::new(MAX_RPCS_IN_FLIGHT)),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Call(request, reply) => {
                if request.to != state.args.id {
                    let _ = reply.send(ReplicaReply::Refused(format!(
                        "this node's replica is {:016x}, not {:016x} (it restarted without its storage)",
                        state.args.id, request.to
                    )));
                    return Ok(());
                }
                if let Some(refusal) =
                    foreign_group(state.args.group.borrow().as_ref(), request.group.as_ref())
                {
                    let _ = reply.send(ReplicaReply::Refused(refusal));
                    return Ok(());
                }
                let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
                    metrics::counter!("herd_replica_rpcs_refused_total").increment(1);
                    let _ = reply.send(ReplicaReply::Busy(format!(
                        "the replica is serving {MAX_RPCS_IN_FLIGHT} requests already"
                    )));
                    return Ok(());
                };
                let raft = state.args.raft.clone();
                tokio::spawn(async move {
                    serve(raft, request, reply).await;
                    drop(permit);
                });
            }
            Mailbox::Cast(cast) => match cast {},
            Mailbox::Local(local) => match local {},
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the replica");
            }
        }
        Ok(())
    }
}

/// Why a request from a replica of group `theirs` is refused by one of
/// group `ours`, if it is: both named, and different.
fn foreign_group(ours: Option<&ReplicaGroupId>, theirs: Option<&ReplicaGroupId>) -> Option<String> {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours != theirs => Some(format!(
            "this replica belongs to {ours}, the request comes from {theirs}"
        )),
        _ => None,
    }
}

async fn serve(
    raft: Raft<ReplicaTypes>,
    request: ReplicaRequest,
    reply: RpcReplyPort<ReplicaReply>,
) {
    let answer = match request.kind {
        RaftRpcKind::AppendEntries => match codec::decode(&request.body) {
            Ok(rpc) => answer(raft.append_entries(rpc).await),
            Err(error) => undecodable(request.kind, error),
        },
        RaftRpcKind::Vote => match codec::decode(&request.body) {
            Ok(rpc) => answer(raft.vote(rpc).await),
            Err(error) => undecodable(request.kind, error),
        },
        RaftRpcKind::InstallSnapshot => match codec::decode(&request.body) {
            Ok(rpc) => answer(raft.install_snapshot(rpc).await),
            Err(error) => undecodable(request.kind, error),
        },
    };
    let _ = reply.send(answer);
}

fn answer<T: Serialize, E: Serialize>(result: Result<T, E>) -> ReplicaReply {
    let encoded = match &result {
        Ok(response) => codec::encode(response).map(ReplicaReply::Answered),
        Err(error) => codec::encode(error).map(ReplicaReply::RaftError),
    };
    encoded.unwrap_or_else(|error| {
        ReplicaReply::Refused(format!("the replica could not encode its answer: {error}"))
    })
}

fn undecodable(kind: RaftRpcKind, error: impl std::fmt::Display) -> ReplicaReply {
    ReplicaReply::Refused(format!(
        "the replica could not decode a {kind:?} request: {error}"
    ))
}

#[cfg(test)]
mod tests {
    use herd_protocol::{NodeName, UnixMillis};

    use super::*;

    fn group(founder_node: &str, founded_at: u64) -> ReplicaGroupId {
        ReplicaGroupId {
            founded_at: UnixMillis(founded_at),
            founder: 7,
            founder_node: NodeName::parse(founder_node).unwrap(),
        }
    }

    #[test]
    fn only_a_request_from_another_named_group_is_refused() {
        let ours = group("n1", 100);
        assert_eq!(foreign_group(Some(&ours), Some(&ours)), None);
        // A group not named yet on either side: the log names it later.
        assert_eq!(foreign_group(None, Some(&ours)), None);
        assert_eq!(foreign_group(Some(&ours), None), None);
        let refusal = foreign_group(Some(&ours), Some(&group("n2", 200))).unwrap();
        assert!(refusal.contains("founded by n1") && refusal.contains("founded by n2"));
    }
}
