//! This node's replica, assembled: its storage (in memory, or the replica
//! file in the data directory), its Raft instance and its RPC endpoint.

use std::path::Path;

use openraft::Raft;
use ractor::{Actor, ActorRef, SpawnErr};

use super::file::{FileClosed, ReplicaFile, ReplicaFileError};
use super::log_store::ReplicaLogStore;
use super::network::{ReplicaDirectory, ReplicaNetwork};
use super::raft_config::raft_config;
use super::rpc_server::{ReplicaMsg, ReplicaServer, ReplicaServerArgs};
use super::state_machine::{ReplicaBook, ReplicaStateMachine};
use super::types::{ReplicaId, ReplicaNode, ReplicaTypes};
use crate::task_book::TaskBook;

/// Why a replica did not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaStartError {
    /// The replica file could not be opened or is not a replica store.
    #[error(transparent)]
    File(#[from] ReplicaFileError),
    /// openraft refused to start (its storage failed while loading).
    #[error("the task book replica did not start: {0}")]
    Raft(String),
    /// The RPC endpoint actor did not start.
    #[error("the replica's RPC endpoint did not start: {0}")]
    Endpoint(#[from] SpawnErr),
}

/// A running replica. Dropping it leaves it running: call [`Self::stop`].
pub struct LocalReplica {
    id: ReplicaId,
    node: ReplicaNode,
    raft: Raft<ReplicaTypes>,
    book: ReplicaBook,
    endpoint: ActorRef<ReplicaMsg>,
    file_closed: Option<FileClosed>,
}

/// How long [`LocalReplica::stop`] waits for openraft's tasks to let go of
/// the replica file.
const FILE_RELEASE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

impl LocalReplica {
    /// Starts the replica of `node`. With `data_dir`, its log, vote and
    /// snapshots are in the replica file there and it restarts as the same
    /// replica with its book; without, it is a new replica every start.
    /// `template` is a freshly configured book (settings and agent types).
    /// `advertise` puts its endpoint in the cluster's replica group; it
    /// snapshots every `snapshot_every_entries` log entries.
    pub async fn start(
        node: ReplicaNode,
        data_dir: Option<&Path>,
        template: TaskBook,
        directory: impl ReplicaDirectory,
        advertise: bool,
        snapshot_every_entries: u64,
    ) -> Result<LocalReplica, ReplicaStartError> {
        let (log_store, state_machine, file_closed) = match data_dir {
            Some(dir) => {
                let file = ReplicaFile::open(dir)?;
                let file_closed = file.closed();
                let state_machine = ReplicaStateMachine::open(template, file.clone())?;
                (
                    ReplicaLogStore::on_file(file),
                    state_machine,
                    Some(file_closed),
                )
            }
            None => (
                ReplicaLogStore::in_memory(),
                ReplicaStateMachine::in_memory(template),
                None,
            ),
        };
        let id = log_store.replica_id();
        let book = state_machine.book();
        let raft = Raft::new(
            id,
            raft_config(snapshot_every_entries),
            ReplicaNetwork::new(id, directory, book.group_changes()),
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| ReplicaStartError::Raft(error.to_string()))?;
        let spawned = Actor::spawn(
            None,
            ReplicaServer,
            ReplicaServerArgs {
                raft: raft.clone(),
                id,
                group: book.group_changes(),
                advertise,
            },
        )
        .await;
        let endpoint = match spawned {
            Ok((endpoint, _)) => endpoint,
            Err(error) => {
                let _ = raft.shutdown().await;
                return Err(error.into());
            }
        };
        Ok(LocalReplica {
            id,
            node,
            raft,
            book,
            endpoint,
            file_closed,
        })
    }

    /// The replica's id in the group.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The node hosting it.
    pub fn node(&self) -> &ReplicaNode {
        &self.node
    }

    /// Its Raft instance (writes, membership changes, metrics).
    pub fn raft(&self) -> &Raft<ReplicaTypes> {
        &self.raft
    }

    /// A read handle on its book.
    pub fn book(&self) -> &ReplicaBook {
        &self.book
    }

    /// Its RPC endpoint.
    #[cfg(test)]
    pub fn endpoint(&self) -> &ActorRef<ReplicaMsg> {
        &self.endpoint
    }

    /// Stops the endpoint, then Raft, and waits (5 s at most) until its
    /// storage tasks have let go of the replica file, so the file can be
    /// opened again at once. Read handles from [`Self::book`] keep the file
    /// open: drop them first. Says whether the file is closed.
    pub async fn stop(self) -> bool {
        let LocalReplica {
            raft,
            book,
            endpoint,
            file_closed,
            ..
        } = self;
        endpoint.stop(None);
        let _ = raft.shutdown().await;
        drop(book);
        match file_closed {
            Some(closed) => closed.wait(FILE_RELEASE_LIMIT).await,
            None => true,
        }
    }
}
