//! What the orchestrator holds, and how it is built at start: the task book
//! (recovered from the journal when there is one), the pools, weights,
//! circuits and scaling state (resuming operators' scaling changes the book
//! recorded).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use herd_protocol::messages::groups;
use herd_protocol::messages::orchestrator::OrchestratorReply;
use herd_protocol::{AgentType, Mailbox, MemberId, TaskId, UnixMillis};
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::info;

use super::OrchestratorMsg;
use super::actor::{AgentTypeEntry, OrchestratorArgs, OrchestratorLocal};
use super::circuits::Circuits;
use super::dispatch::borrow_order;
use super::durability::Durability;
use super::pools::PoolRegistry;
use super::provider_budgets::ProviderBudgets;
use super::scaling_control::ScalingControl;
use crate::journal::{JournalStore, JournalWriter};
use crate::membership::ClusterView;
use crate::replica::proposer::{Proposer, groups_in_flight};
use crate::task_book::{AgentTypeSettings, TaskBook};

/// After a restart, how long nodes that ran tasks get to re-register before
/// their tasks are declared lost.
pub(super) const RECOVERY_GRACE: Duration = Duration::from_secs(10);

/// The orchestrator's state. Its behaviour is split by concept over the
/// sibling modules, each an `impl OrchestratorState` block.
pub struct OrchestratorState {
    pub(super) book: TaskBook,
    pub(super) agent_types: BTreeMap<AgentType, AgentTypeEntry>,
    pub(super) weights: BTreeMap<AgentType, f64>,
    pub(super) borrow_order: Vec<AgentType>,
    pub(super) pools: PoolRegistry,
    pub(super) view: watch::Receiver<ClusterView>,
    /// `?wait` requests, answered when their task reaches a terminal state.
    pub(super) waiters: HashMap<TaskId, Vec<RpcReplyPort<OrchestratorReply>>>,
    pub(super) durability: Durability,
    pub(super) circuits: Circuits,
    pub(super) dispatch_scheduled: bool,
    pub(super) flush_scheduled: bool,
    pub(super) tick_at: Option<UnixMillis>,
    pub(super) reopen_at: Option<Instant>,
    /// Which pool dispatch starts with, so light load spreads evenly.
    pub(super) rotation: usize,
    pub(super) recovering_until: Option<Instant>,
    pub(super) drain_grace: Duration,
    pub(super) scaling: ScalingControl,
    pub(super) llm_types: BTreeSet<AgentType>,
    pub(super) providers: ProviderBudgets,
    /// This leader's replica (raft replication): the group's status.
    pub(super) raft: Option<openraft::Raft<crate::replica::types::ReplicaTypes>>,
    /// Tenants whose gauges were last set non-zero.
    pub(super) tenant_gauges: std::collections::BTreeSet<herd_protocol::Tenant>,
    /// Attempts each pool may hold per slot, by type, from observed commit
    /// latencies and run times.
    pub(super) slot_credit: crate::scheduling::SlotCreditMeter,
}

impl OrchestratorState {
    /// Recovers the book (from the journal when there is a data directory),
    /// joins the orchestrator's process group and starts the timers.
    pub(super) fn start(
        myself: ActorRef<OrchestratorMsg>,
        args: OrchestratorArgs,
    ) -> Result<Self, ActorProcessingErr> {
        let type_settings: Vec<(AgentType, AgentTypeSettings)> = args
            .agent_types
            .iter()
            .map(|(agent_type, entry)| (agent_type.clone(), entry.book_settings()))
            .collect();
        let raft = args.replicated.as_ref().map(|start| start.raft.clone());
        let (book, durability, recovered_work) = match (args.replicated, &args.data_dir) {
            (Some(start), _) => {
                let notify_to = myself.clone();
                let in_flight = groups_in_flight(args.data_dir.is_some());
                let (proposer, done) =
                    Proposer::start(start.raft, start.term, in_flight, move |event| {
                        let _ = notify_to.cast(Mailbox::Local(OrchestratorLocal::Journal(event)));
                    });
                let _ = start.proposer_done.send(done);
                let mut book = start.book;
                let counts = book.counts();
                info!(
                    term = start.term,
                    pending = counts.pending,
                    running = counts.running,
                    failed = counts.failed,
                    "orchestrator takes over the replicated task book"
                );
                // This leader's settings and agent types rule from here on,
                // on every replica: they are the log's first command of the
                // term (recorded below).
                book.reconfigure_like(&TaskBook::new(args.settings, type_settings));
                (book, Durability::replicated(proposer), counts.running > 0)
            }
            (None, None) => (
                TaskBook::new(args.settings, type_settings),
                Durability::in_memory(),
                false,
            ),
            (None, Some(dir)) => {
                let started = Instant::now();
                let store = JournalStore::open(dir)?;
                let recovered = store.recover(TaskBook::new(args.settings, type_settings))?;
                let book = recovered.book;
                let counts = book.counts();
                info!(
                    data_dir = %dir.display(),
                    pending = counts.pending,
                    running = counts.running,
                    failed = counts.failed,
                    replayed = recovered.replayed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "orchestrator state recovered from the journal"
                );
                let notify_to = myself.clone();
                let writer = JournalWriter::start(store, move |event| {
                    let _ = notify_to.cast(Mailbox::Local(OrchestratorLocal::Journal(event)));
                });
                let work = counts.running > 0;
                (
                    book,
                    Durability::journaled(writer, recovered.last_sequence),
                    work,
                )
            }
        };
        let configured: BTreeMap<AgentType, f64> = args
            .agent_types
            .iter()
            .map(|(t, e)| (t.clone(), e.weight))
            .collect();
        let mut scaling = ScalingControl::new(args.scaling.clone(), &configured);
        // Operators' pins and bounds outlive the orchestrator that took
        // them: the book recorded them (a new leader's copy, a replayed
        // journal); the loop's own decisions start afresh.
        let weights = scaling.resume(book.scaling_overrides());
        let borrow_order = borrow_order(&weights);
        let llm_types = args
            .agent_types
            .iter()
            .filter(|(_, e)| e.llm)
            .map(|(t, _)| t.clone())
            .collect();
        myself.send_interval(args.scaling.interval, || {
            Mailbox::Local(OrchestratorLocal::ScalingTick)
        });
        // An llm type's failures are its providers' (each has a circuit, and
        // an open one sends calls to the fallback), so the type has none.
        let circuits = Circuits::new(
            args.agent_types
                .iter()
                .filter(|(_, e)| e.llm_route.is_none())
                .map(|(t, e)| (t.clone(), e.circuit.clone())),
        );
        let providers = ProviderBudgets::new(
            &args.providers,
            args.agent_types
                .iter()
                .filter_map(|(t, e)| Some((t.clone(), e.llm_route.clone()?)))
                .collect(),
        );
        ractor::pg::join(groups::ORCHESTRATOR.to_string(), vec![myself.get_cell()]);
        forward_view_changes(args.view.clone(), myself.clone());
        let recovering_until = recovered_work.then(|| {
            myself.send_after(RECOVERY_GRACE, || {
                Mailbox::Local(OrchestratorLocal::RecoveryDeadline)
            });
            Instant::now() + RECOVERY_GRACE
        });
        info!(agent_types = ?weights.keys().collect::<Vec<_>>(), recorded = durability.is_recorded(), term = ?durability.replicated_term(), "orchestrator started");
        let mut state = OrchestratorState {
            book,
            agent_types: args.agent_types,
            weights,
            borrow_order,
            pools: PoolRegistry::default(),
            view: args.view,
            waiters: HashMap::new(),
            durability,
            circuits,
            dispatch_scheduled: false,
            flush_scheduled: false,
            tick_at: None,
            reopen_at: None,
            rotation: 0,
            recovering_until,
            drain_grace: args.drain_grace,
            scaling,
            llm_types,
            providers,
            tenant_gauges: Default::default(),
            raft,
            slot_credit: crate::scheduling::SlotCreditMeter::new(
                args.scaling.slot_credit,
                args.scaling.max_slot_credit,
            ),
        };
        if state.durability.replicated_term().is_some() {
            let configuration = state.book.configuration();
            state.record_with(&myself, || {
                crate::task_book::Command::Configure(Box::new(configuration))
            });
        }
        state.schedule_tick(&myself);
        Ok(state)
    }

    /// This node, as the cluster knows it.
    pub(super) fn local_member(&self) -> MemberId {
        self.view.borrow().local.member.clone()
    }
}

/// Relays changes of the cluster view into the orchestrator's mailbox.
fn forward_view_changes(
    mut view: watch::Receiver<ClusterView>,
    orchestrator: ActorRef<OrchestratorMsg>,
) {
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            if orchestrator
                .cast(Mailbox::Local(OrchestratorLocal::ViewChanged))
                .is_err()
            {
                break;
            }
        }
    });
}
