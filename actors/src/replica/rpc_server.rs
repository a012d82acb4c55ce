//! The replica's Raft RPC endpoint: an actor in the [`groups::REPLICAS`]
//! process group that hands each request to the local [`openraft::Raft`].
//!
//! Requests are answered from a task of their own, so a slow snapshot chunk
//! does not hold up a vote or a heartbeat behind it in the mailbox.

use herd_protocol::messages::groups;
use herd_protocol::messages::replica::{RaftRpcKind, ReplicaCast, ReplicaReply, ReplicaRequest};
use herd_protocol::{Mailbox, Protocol, codec};
use openraft::Raft;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tracing::warn;

use super::types::{ReplicaId, ReplicaTypes};

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

/// What the endpoint serves.
pub struct ReplicaServerArgs {
    /// This node's replica.
    pub raft: Raft<ReplicaTypes>,
    /// Its id: requests meant for another id are refused.
    pub id: ReplicaId,
    /// Join [`groups::REPLICAS`] (off in tests that run several replicas in
    /// one process and address them directly).
    pub advertise: bool,
}

impl Actor for ReplicaServer {
    type Msg = ReplicaMsg;
    type State = ReplicaServerArgs;
    type Arguments = ReplicaServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.advertise {
            ractor::pg::join(groups::REPLICAS.to_string(), vec![myself.get_cell()]);
        }
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Mailbox::Call(request, reply) => {
                if request.to != state.id {
                    let _ = reply.send(ReplicaReply::Refused(format!(
                        "this node's replica is {:016x}, not {:016x} (it restarted without its storage)",
                        state.id, request.to
                    )));
                    return Ok(());
                }
                tokio::spawn(serve(state.raft.clone(), request, reply));
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
