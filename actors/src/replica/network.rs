//! Raft RPCs over the cluster's existing ractor_cluster sessions: one port
//! per node, the same cookie, TLS and frame rules as every other message.
//!
//! Each RPC is a [`ReplicaRequest`] call to the target node's
//! [`ReplicaServer`](super::rpc_server::ReplicaServer), with openraft's
//! request encoded by the codec. A request that would make a frame over
//! [`MAX_RPC_BYTES`] is refused before it is sent: append-entries with a
//! hint to send fewer entries (openraft retries with them), so replication
//! can never drop a cluster session with an oversized frame.
//!
//! Every request carries the sender's replica group once the log named it;
//! a replica of another group refuses it (see
//! [`rpc_server`](super::rpc_server)), so a leader never replicates into, nor
//! is deposed by, a replica of a group it met by accident.

use std::error::Error;
use std::time::Duration;

use herd_protocol::messages::groups;
use herd_protocol::messages::replica::{RaftRpcKind, ReplicaGroupId, ReplicaReply, ReplicaRequest};
use herd_protocol::{Mailbox, codec};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::rpc_server::ReplicaMsg;
use super::types::{ReplicaId, ReplicaNode, ReplicaTypes};
use crate::membership::ClusterView;
use crate::orchestrator::find_in_group;

/// Largest encoded Raft request sent in one frame: half of ractor_cluster's
/// 16 MiB session limit, leaving room for the envelope (and for decoding,
/// which counts integers at their in-memory size).
pub const MAX_RPC_BYTES: usize = 8 * 1024 * 1024;

/// Largest append of several entries. openraft 0.9 times an append out
/// after one heartbeat interval (100 ms) and resends the same range, so an
/// append must be sent and made durable well within it; a larger one is
/// refused with a hint for fewer entries. A single entry is sent up to
/// [`MAX_RPC_BYTES`]. 256 KiB: a follower starved of CPU (a debug build
/// beside eighteen nodes on two cores) failed every 1 MiB append of a new
/// leader's catch-up for 15 s, so that leader never confirmed a quorum;
/// smaller appends keep making progress.
pub const MAX_APPEND_BYTES: usize = 256 * 1024;

/// Finds the RPC endpoint of the replica hosted by a node.
pub trait ReplicaDirectory: Clone + Send + Sync + 'static {
    /// The endpoint on `node`, if it is reachable now.
    fn endpoint(&self, node: &ReplicaNode) -> Option<ActorRef<ReplicaMsg>>;
}

/// The cluster's endpoints: the [`groups::REPLICAS`] member on the named
/// node, as this node's view knows it.
#[derive(Clone)]
pub struct ClusterDirectory {
    view: watch::Receiver<ClusterView>,
}

impl ClusterDirectory {
    /// A directory reading `view`.
    pub fn new(view: watch::Receiver<ClusterView>) -> Self {
        ClusterDirectory { view }
    }
}

impl ReplicaDirectory for ClusterDirectory {
    fn endpoint(&self, node: &ReplicaNode) -> Option<ActorRef<ReplicaMsg>> {
        find_in_group(groups::REPLICAS, &self.view.borrow(), |member| {
            member.name.as_str() == node.name
        })
    }
}

/// openraft's network factory: a [`ReplicaConnection`] per target.
#[derive(Clone)]
pub struct ReplicaNetwork<D> {
    /// This replica's id (named in timeout errors).
    local: ReplicaId,
    directory: D,
    /// This replica's group, once named.
    group: watch::Receiver<Option<ReplicaGroupId>>,
}

impl<D: ReplicaDirectory> ReplicaNetwork<D> {
    /// The network of replica `local`, finding peers through `directory`;
    /// its requests carry `group` (the replica's group, once named).
    pub fn new(
        local: ReplicaId,
        directory: D,
        group: watch::Receiver<Option<ReplicaGroupId>>,
    ) -> Self {
        ReplicaNetwork {
            local,
            directory,
            group,
        }
    }
}

impl<D: ReplicaDirectory> RaftNetworkFactory<ReplicaTypes> for ReplicaNetwork<D> {
    type Network = ReplicaConnection<D>;

    async fn new_client(&mut self, target: ReplicaId, node: &ReplicaNode) -> Self::Network {
        ReplicaConnection {
            local: self.local,
            target,
            node: node.clone(),
            directory: self.directory.clone(),
            group: self.group.clone(),
        }
    }
}

/// RPCs to one target replica. Holds no connection of its own: the
/// endpoint is looked up per call, so a restarted node is found again.
pub struct ReplicaConnection<D> {
    local: ReplicaId,
    target: ReplicaId,
    node: ReplicaNode,
    directory: D,
    group: watch::Receiver<Option<ReplicaGroupId>>,
}

/// Why an RPC did not reach the replica or its answer did not come back.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl<D: ReplicaDirectory> ReplicaConnection<D> {
    async fn call<Resp, E>(
        &self,
        kind: RaftRpcKind,
        action: RPCTypes,
        body: Vec<u8>,
        ttl: Duration,
    ) -> Result<Resp, RPCError<ReplicaId, ReplicaNode, RaftError<ReplicaId, E>>>
    where
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let unreachable =
            |why: String| RPCError::Unreachable(Unreachable::new(&TransportError(why)));
        let endpoint = self
            .directory
            .endpoint(&self.node)
            .ok_or_else(|| unreachable(format!("no replica endpoint on {} is known", self.node)))?;
        let request = ReplicaRequest {
            to: self.target,
            kind,
            body,
            group: self.group.borrow().clone(),
        };
        let reply = endpoint
            .call(|port| Mailbox::Call(request, port), Some(ttl))
            .await
            .map_err(|error| unreachable(format!("{}: {error}", self.node)))?;
        match reply {
            CallResult::Success(ReplicaReply::Answered(bytes)) => {
                codec::decode(&bytes).map_err(|error| {
                    network_error(format!("an undecodable answer from {}: {error}", self.node))
                })
            }
            CallResult::Success(ReplicaReply::RaftError(bytes)) => {
                let error: RaftError<ReplicaId, E> = codec::decode(&bytes).map_err(|error| {
                    network_error(format!("an undecodable error from {}: {error}", self.node))
                })?;
                Err(RPCError::RemoteError(RemoteError::new_with_node(
                    self.target,
                    self.node.clone(),
                    error,
                )))
            }
            CallResult::Success(ReplicaReply::Refused(why)) => Err(unreachable(why)),
            // Busy is not gone: no backoff (which would outlast an election
            // timeout), openraft retries on its next round.
            CallResult::Success(ReplicaReply::Busy(why)) => Err(network_error(why)),
            CallResult::Success(ReplicaReply::Wire(error)) => {
                Err(network_error(format!("{}: {error}", self.node)))
            }
            CallResult::Timeout => Err(RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout: ttl,
            })),
            CallResult::SenderError => Err(unreachable(format!(
                "the replica endpoint on {} dropped the request",
                self.node
            ))),
        }
    }
}

fn network_error<E: Error>(
    why: String,
) -> RPCError<ReplicaId, ReplicaNode, RaftError<ReplicaId, E>> {
    RPCError::Network(NetworkError::new(&TransportError(why)))
}

/// How many of `entries` entries, whose append encoded to `bytes`, fit in
/// [`MAX_APPEND_BYTES`] at their average size: at least one, fewer than
/// `entries`.
fn fewer_entries(entries: u64, bytes: usize) -> u64 {
    let fitting = (entries as u128 * MAX_APPEND_BYTES as u128 / bytes.max(1) as u128) as u64;
    fitting.clamp(1, entries.saturating_sub(1).max(1))
}

/// Encodes an RPC body, refusing one over [`MAX_RPC_BYTES`].
fn encode_within_frame(body: &impl Serialize) -> Result<Vec<u8>, String> {
    let bytes = codec::encode(body).map_err(|error| error.to_string())?;
    if bytes.len() > MAX_RPC_BYTES {
        return Err(format!(
            "{} bytes, over the {} byte RPC limit",
            bytes.len(),
            MAX_RPC_BYTES
        ));
    }
    Ok(bytes)
}

impl<D: ReplicaDirectory> RaftNetwork<ReplicaTypes> for ReplicaConnection<D> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ReplicaTypes>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<ReplicaId>,
        RPCError<ReplicaId, ReplicaNode, RaftError<ReplicaId>>,
    > {
        let entries = rpc.entries.len() as u64;
        let body = match encode_within_frame(&rpc) {
            // openraft sends again with at most the hinted number of entries.
            Ok(body) if entries > 1 && body.len() > MAX_APPEND_BYTES => {
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(fewer_entries(entries, body.len())),
                ));
            }
            Ok(body) => body,
            // openraft sends again with at most the hinted number of entries.
            Err(_) if entries > 1 => {
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(entries / 2),
                ));
            }
            Err(why) => return Err(network_error(format!("one log entry is too large: {why}"))),
        };
        self.call(
            RaftRpcKind::AppendEntries,
            RPCTypes::AppendEntries,
            body,
            option.hard_ttl(),
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ReplicaTypes>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<ReplicaId>,
        RPCError<ReplicaId, ReplicaNode, RaftError<ReplicaId, InstallSnapshotError>>,
    > {
        // Chunks are cut by `Config::snapshot_max_chunk_size`, set well
        // under the frame limit.
        let body = encode_within_frame(&rpc).map_err(network_error)?;
        self.call(
            RaftRpcKind::InstallSnapshot,
            RPCTypes::InstallSnapshot,
            body,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> Result<VoteResponse<ReplicaId>, RPCError<ReplicaId, ReplicaNode, RaftError<ReplicaId>>>
    {
        let body = encode_within_frame(&rpc).map_err(network_error)?;
        self.call(RaftRpcKind::Vote, RPCTypes::Vote, body, option.hard_ttl())
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use herd_protocol::UnixMillis;
    use openraft::error::{ForwardToLeader, SnapshotMismatch};
    use openraft::{
        CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotSegmentId, Vote,
    };

    use super::*;
    use crate::replica::types::CommandBatch;
    use crate::task_book::Command;

    fn node(name: &str) -> ReplicaNode {
        ReplicaNode {
            name: name.to_string(),
            cluster_addr: format!("{name}:7100"),
        }
    }

    fn log_id(term: u64, index: u64) -> LogId<ReplicaId> {
        LogId::new(CommittedLeaderId::new(term, 7), index)
    }

    // bincode cannot decode every serde shape (no `deserialize_any`): every
    // openraft type that crosses the wire is checked here once.
    #[test]
    fn raft_requests_answers_and_errors_survive_the_codec() {
        let membership = Membership::new(
            vec![BTreeSet::from([7, 9])],
            BTreeMap::from([(7, node("n1")), (9, node("n2"))]),
        );
        let request = AppendEntriesRequest::<ReplicaTypes> {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(log_id(3, 41)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 42),
                    payload: EntryPayload::Normal(CommandBatch {
                        term: 3,
                        commands: vec![Command::Tick {
                            now: UnixMillis(1_700_000_000_000),
                        }],
                    }),
                },
                Entry {
                    log_id: log_id(3, 43),
                    payload: EntryPayload::Membership(membership),
                },
                Entry {
                    log_id: log_id(3, 44),
                    payload: EntryPayload::Blank,
                },
            ],
            leader_commit: Some(log_id(3, 40)),
        };
        let decoded: AppendEntriesRequest<ReplicaTypes> =
            codec::decode(&codec::encode(&request).unwrap()).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{request:?}"));

        let vote = VoteRequest::new(Vote::new(4, 9), Some(log_id(3, 44)));
        let decoded: VoteRequest<ReplicaId> =
            codec::decode(&codec::encode(&vote).unwrap()).unwrap();
        assert_eq!(decoded, vote);

        let answer = VoteResponse::new(Vote::new(4, 9), Some(log_id(3, 44)), true);
        let decoded: VoteResponse<ReplicaId> =
            codec::decode(&codec::encode(&answer).unwrap()).unwrap();
        assert_eq!(decoded, answer);

        let refused: RaftError<ReplicaId, InstallSnapshotError> =
            RaftError::APIError(InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: SnapshotSegmentId {
                    id: "a".to_string(),
                    offset: 0,
                },
                got: SnapshotSegmentId {
                    id: "b".to_string(),
                    offset: 9,
                },
            }));
        let decoded: RaftError<ReplicaId, InstallSnapshotError> =
            codec::decode(&codec::encode(&refused).unwrap()).unwrap();
        assert_eq!(decoded, refused);

        let forward: RaftError<
            ReplicaId,
            openraft::error::ClientWriteError<ReplicaId, ReplicaNode>,
        > = RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(
            ForwardToLeader::new(9, node("n2")),
        ));
        let decoded: RaftError<
            ReplicaId,
            openraft::error::ClientWriteError<ReplicaId, ReplicaNode>,
        > = codec::decode(&codec::encode(&forward).unwrap()).unwrap();
        assert_eq!(decoded, forward);
    }

    #[test]
    fn an_oversized_append_is_cut_to_entries_that_fit() {
        assert_eq!(fewer_entries(64, 4 * MAX_APPEND_BYTES), 16);
        assert_eq!(fewer_entries(2, 100 * MAX_APPEND_BYTES), 1);
        assert_eq!(fewer_entries(3, MAX_APPEND_BYTES + 1), 2);
    }

    #[test]
    fn a_body_over_the_frame_limit_is_refused_before_it_is_sent() {
        let big = vec![0u8; MAX_RPC_BYTES + 1];
        assert!(encode_within_frame(&big).is_err());
        assert!(encode_within_frame(&vec![0u8; 1024]).is_ok());
    }
}
