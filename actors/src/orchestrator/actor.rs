//! The orchestrator actor: its message vocabulary, and which module handles
//! each message. The work itself is done by `OrchestratorState`'s modules:
//! `requests` (the API), `membership_sync` (pools and the cluster view),
//! `reports` (finished attempts), `dispatch`, `effects`, `journaled` (the
//! book and its journal), `scaling_control` and `health_report`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use herd_config::{CircuitSettings, ProviderConfig, ScalingSettings};
use herd_protocol::messages::orchestrator::{
    OrchestratorCast, OrchestratorReply, OrchestratorRequest,
};
use herd_protocol::{AgentType, Mailbox, Protocol, UnixMillis};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tracing::warn;

use super::OrchestratorMsg;
use super::provider_budgets::LlmRoute;
use super::state::OrchestratorState;
use crate::journal::WriterEvent;
use crate::membership::ClusterView;
use crate::pool::ResourceSample;
use crate::task_book::{AgentTypeSettings, Command, RetryPolicy, TaskBookSettings};

/// The orchestrator's message vocabulary.
pub struct OrchestratorProtocol;

impl Protocol for OrchestratorProtocol {
    const NAME: &'static str = "orchestrator";
    type Cast = OrchestratorCast;
    type Request = OrchestratorRequest;
    type Reply = OrchestratorReply;
    type Local = OrchestratorLocal;
}

/// Messages from this node to the orchestrator.
#[derive(Debug)]
pub enum OrchestratorLocal {
    /// Spread pending work over free slots (coalesced).
    Dispatch,
    /// Scheduled retries may be due.
    Tick,
    /// The cluster view changed.
    ViewChanged,
    /// Hand buffered journal entries to the writer (coalesced).
    FlushJournal,
    /// The journal writer reports.
    Journal(WriterEvent),
    /// The recovery grace after a restart is over.
    RecoveryDeadline,
    /// Time for a scaling decision.
    ScalingTick,
    /// Test hook: block the mailbox until killed (only with
    /// `HERD_TEST_HOOKS=1`), as an orchestrator stuck in a handler would.
    TestHookStuck,
}

/// One agent type as the orchestrator schedules it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentTypeEntry {
    /// Share of the slots.
    pub weight: f64,
    /// Default per-attempt time limit.
    pub timeout_s: Option<u32>,
    /// Default attempts.
    pub max_attempts: Option<u32>,
    /// Backoff between attempts (`None`: the book's default).
    pub retry: Option<RetryPolicy>,
    /// Circuit breaker settings.
    pub circuit: CircuitSettings,
    /// Its tasks call an LLM API (they count toward
    /// `max_concurrent_llm_calls` per node).
    pub llm: bool,
    /// For an `llm` handler: the providers its calls go to, each call
    /// granted from their cluster-wide budgets.
    pub llm_route: Option<LlmRoute>,
}

impl AgentTypeEntry {
    /// What the task book keeps of it.
    pub fn book_settings(&self) -> AgentTypeSettings {
        AgentTypeSettings {
            timeout_s: self.timeout_s,
            max_attempts: self.max_attempts,
            retry: self.retry.clone(),
        }
    }
}

/// Starts the orchestrator.
pub struct OrchestratorArgs {
    /// Book limits and defaults.
    pub settings: TaskBookSettings,
    /// The agent types the cluster runs.
    pub agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    /// The cluster view (its `local` member is this node).
    pub view: watch::Receiver<ClusterView>,
    /// Where the journal lives; `None` keeps the book in memory only.
    pub data_dir: Option<PathBuf>,
    /// Grace period sent with drain requests.
    pub drain_grace: Duration,
    /// Deployment mode, pool bounds and rebalancing.
    pub scaling: ScalingSettings,
    /// LLM providers and their limits.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// With raft replication: the leader's start (then `data_dir` is not
    /// read: the replica holds the book).
    pub replicated: Option<ReplicatedStart>,
}

/// How the orchestrator of a Raft leader starts: from a copy of its
/// replica's book, with every command it applies proposed to the log under
/// the leader's term.
pub struct ReplicatedStart {
    /// The replica's book, as applied through the leader's first entry of
    /// its term.
    pub book: crate::task_book::TaskBook,
    /// The replica's Raft.
    pub raft: openraft::Raft<crate::replica::types::ReplicaTypes>,
    /// The term this node leads.
    pub term: u64,
    /// Where the orchestrator sends its proposer's completion.
    pub proposer_done: tokio::sync::oneshot::Sender<crate::replica::proposer::ProposerDone>,
}
/// The orchestrator actor.
pub struct Orchestrator;

impl Actor for Orchestrator {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: OrchestratorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        OrchestratorState::start(myself, args)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.clear_book_gauges();
        state.interrupt_held_requests();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // requests.rs
            Mailbox::Call(request, reply) => state.on_request(&myself, request, reply),
            // membership_sync.rs
            Mailbox::Cast(OrchestratorCast::PoolRegistered(registration)) => {
                state.on_pool_registered(&myself, registration)
            }
            Mailbox::Cast(OrchestratorCast::PoolDraining { member }) => {
                state.on_pool_draining(&member)
            }
            Mailbox::Cast(OrchestratorCast::HandBack { member, attempts }) => {
                state.on_hand_back(&myself, member, attempts)
            }
            Mailbox::Local(OrchestratorLocal::ViewChanged) => state.on_view_changed(&myself),
            Mailbox::Local(OrchestratorLocal::RecoveryDeadline) => {
                state.on_recovery_deadline(&myself)
            }
            // reports.rs
            Mailbox::Cast(OrchestratorCast::Reports {
                member,
                first_sequence,
                reports,
            }) => state.on_reports(&myself, member, first_sequence, reports),
            // scaling_control.rs
            Mailbox::Cast(OrchestratorCast::PoolStats {
                member,
                cpu_percent,
                memory_percent,
                cores,
                memory_gb,
            }) => state.on_pool_stats(
                member,
                ResourceSample {
                    cpu_percent,
                    memory_percent,
                    cores,
                    memory_gb,
                },
            ),
            Mailbox::Local(OrchestratorLocal::ScalingTick) => state.scaling_step(&myself),
            Mailbox::Local(OrchestratorLocal::TestHookStuck) => {
                if crate::runtime::test_hooks::enabled() {
                    warn!("test hook: the orchestrator blocks its mailbox until it is killed");
                    std::future::pending::<()>().await;
                } else {
                    warn!("ignored a test hook: this node was not started with HERD_TEST_HOOKS=1");
                }
            }
            // provider_budgets.rs
            Mailbox::Cast(OrchestratorCast::ProviderCalls { member, calls }) => {
                state.on_provider_calls(&myself, member, calls)
            }
            // dispatch.rs
            Mailbox::Local(OrchestratorLocal::Dispatch) => state.dispatch(&myself),
            // effects.rs: retries whose backoff elapsed
            Mailbox::Local(OrchestratorLocal::Tick) => {
                state.tick_at = None;
                let now = UnixMillis::now();
                state.apply_and_release(&myself, Command::Tick { now });
                state.schedule_dispatch(&myself);
                state.schedule_tick(&myself);
            }
            // journaled.rs
            Mailbox::Local(OrchestratorLocal::FlushJournal) => {
                // Group commit: reports and submissions that ask for a
                // dispatch share one journal write with the assignments it
                // makes (the assignments wait for that write anyway); the
                // queued Dispatch then finds nothing left to do.
                if state.dispatch_scheduled {
                    state.dispatch(&myself);
                }
                state.flush_journal()?
            }
            Mailbox::Local(OrchestratorLocal::Journal(event)) => {
                state.on_journal_event(&myself, event)?
            }
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the orchestrator");
            }
        }
        Ok(())
    }
}
