//! The worker pool actor: see the module docs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use herd_protocol::messages::groups;
use herd_protocol::messages::pool::{PoolCast, PoolReply, PoolRequest};
use herd_protocol::{Mailbox, MemberId, Protocol, TaskAssignment, TaskReport, WorkerId};
use ractor::pg::GroupChangeMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::drain::Drain;
use super::outbox::ReportOutbox;
use super::registration::Registration;
use super::resources::ResourceProbe;
use super::slots::Slots;
use super::worker::WorkerMsg;
use crate::handlers::HandlerRegistry;
use crate::membership::ClusterView;
use crate::runtime::NodeEvent;

/// How often an unanswered registration is repeated and stuck workers are
/// looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The pool's message vocabulary.
pub struct PoolProtocol;

impl Protocol for PoolProtocol {
    const NAME: &'static str = "pool";
    type Cast = PoolCast;
    type Request = PoolRequest;
    type Reply = PoolReply;
    type Local = PoolLocal;
}

/// The pool's mailbox type.
pub type PoolMsg = Mailbox<PoolProtocol>;

/// Messages from this node to the pool.
#[derive(Debug)]
pub enum PoolLocal {
    /// A worker finished an attempt.
    Finished {
        /// The worker's slot.
        slot: WorkerId,
        /// Which life of the slot.
        generation: u64,
        /// The report.
        report: TaskReport,
    },
    /// Send buffered reports.
    Flush,
    /// The cluster view changed.
    ViewChanged,
    /// Repeat an unanswered registration; look for stuck workers.
    Housekeeping,
    /// Start the worker of a slot whose restart was delayed.
    RestartSlot(WorkerId),
    /// Send resource use to the orchestrator.
    Stats,
    /// Drain (SIGTERM): answer on `done` once drained.
    Drain {
        /// How long running attempts may take.
        grace: Duration,
        /// Told when the pool is drained.
        done: oneshot::Sender<()>,
    },
    /// The drain grace period is over.
    DrainDeadline,
    /// Stop waiting for the last acknowledgements.
    DrainAckDeadline,
    /// Test hook (only with `HERD_TEST_HOOKS=1`, ignored otherwise): block
    /// the pool's mailbox forever, as a pool stuck in a handler would be.
    TestHookStuck,
}

/// Starts a pool.
pub struct PoolArgs {
    /// Worker slots.
    pub workers: u32,
    /// Handlers by agent type.
    pub handlers: Arc<HandlerRegistry>,
    /// Largest result accepted.
    pub max_result_bytes: usize,
    /// The cluster view (its `local` member is this node).
    pub view: watch::Receiver<ClusterView>,
    /// Where the pool reports that a requested drain is complete.
    pub events: mpsc::UnboundedSender<NodeEvent>,
    /// Most slots this node may host (from its CPU and memory per worker).
    pub capacity: u32,
    /// How often resource use is sent to the orchestrator.
    pub stats_interval: Duration,
}

/// The worker pool actor.
pub struct WorkerPool;

/// The pool's state; each concern's handlers live in their own module.
pub struct PoolState {
    /// Handlers by agent type, shared with every worker.
    pub(super) handlers: Arc<HandlerRegistry>,
    /// Largest result a worker accepts.
    pub(super) max_result_bytes: usize,
    /// The worker slots and what they run.
    pub(super) slots: Slots<ActorRef<WorkerMsg>>,
    /// Assignments waiting for an idle worker, oldest first, with the
    /// incarnation they were assigned to.
    pub(super) backlog: VecDeque<(MemberId, TaskAssignment)>,
    /// The current registration with the orchestrator, if any.
    pub(super) registration: Option<Registration>,
    /// Reports until the orchestrator acknowledges them.
    pub(super) outbox: ReportOutbox,
    /// A `Flush` is in the mailbox already.
    pub(super) flush_scheduled: bool,
    /// The cluster view (its `local` member is this node).
    pub(super) view: watch::Receiver<ClusterView>,
    /// The drain, from its first request on.
    pub(super) drain: Option<Drain>,
    /// Where the pool tells the node that a remotely requested drain is over.
    pub(super) events: mpsc::UnboundedSender<NodeEvent>,
    /// This node's incarnation when last looked at.
    pub(super) last_member: MemberId,
    /// Samples this host's resource use for the orchestrator.
    pub(super) probe: ResourceProbe,
}

impl Actor for WorkerPool {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: PoolArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let last_member = args.view.borrow().local.member.clone();
        let mut state = PoolState {
            handlers: args.handlers,
            max_result_bytes: args.max_result_bytes,
            slots: Slots::new(args.workers, args.capacity),
            backlog: VecDeque::new(),
            registration: None,
            outbox: ReportOutbox::default(),
            flush_scheduled: false,
            view: args.view.clone(),
            drain: None,
            events: args.events,
            last_member,
            probe: ResourceProbe::new(),
        };
        for index in 0..args.workers {
            state.start_worker(&myself, WorkerId(index)).await?;
        }
        state.slots.serve_lowest_first();
        ractor::pg::join(groups::POOLS.to_string(), vec![myself.get_cell()]);
        ractor::pg::monitor(groups::ORCHESTRATOR.to_string(), myself.get_cell());
        forward_view_changes(args.view, myself.clone());
        myself.send_interval(HOUSEKEEPING, || Mailbox::Local(PoolLocal::Housekeeping));
        myself.send_interval(args.stats_interval, || Mailbox::Local(PoolLocal::Stats));
        info!(workers = args.workers, agent_types = ?state.handlers, "worker pool started");
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(groups::ORCHESTRATOR.to_string(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // Work in and out: assigning.rs
            Mailbox::Cast(PoolCast::Assign {
                orchestrator,
                assignments,
            }) => state.on_assign(orchestrator, assignments),
            Mailbox::Cast(PoolCast::Cancel { task_id, epoch }) => state.cancel(task_id, epoch),
            Mailbox::Local(PoolLocal::Finished {
                slot,
                generation,
                report,
            }) => state.on_finished(&myself, slot, generation, report),
            // Reports until acknowledged: reporting.rs
            Mailbox::Local(PoolLocal::Flush) => state.flush(),
            Mailbox::Cast(PoolCast::ReportsAck { through }) => state.on_ack(through),
            // The registration with the orchestrator: registration.rs
            Mailbox::Cast(PoolCast::Welcome { orchestrator }) => {
                state.on_welcome(&myself, orchestrator)
            }
            Mailbox::Local(PoolLocal::ViewChanged) => state.refresh_registration(),
            Mailbox::Local(PoolLocal::Housekeeping) => {
                state.refresh_registration();
                // supervising.rs
                state.replace_stuck_workers(&myself).await?;
            }
            // Workers and slots: supervising.rs
            Mailbox::Cast(PoolCast::Resize { workers }) => state.resize(&myself, workers).await?,
            Mailbox::Local(PoolLocal::RestartSlot(slot)) => {
                state.restart_slot(&myself, slot).await?
            }
            Mailbox::Local(PoolLocal::Stats) => state.send_stats(),
            // Draining: draining.rs
            Mailbox::Cast(PoolCast::Drain { grace_ms }) => {
                state.start_drain(&myself, Duration::from_millis(grace_ms), None)
            }
            Mailbox::Local(PoolLocal::Drain { grace, done }) => {
                state.start_drain(&myself, grace, Some(done))
            }
            Mailbox::Local(PoolLocal::DrainDeadline) => state.drain_deadline(&myself),
            Mailbox::Local(PoolLocal::DrainAckDeadline) => state.finish_drain(),
            // A monitor's probe: answering at all is the point.
            Mailbox::Call(PoolRequest::Ping, reply) => {
                let _ = reply.send(PoolReply::Pong {
                    slots: state.slots.target(),
                    busy: state.slots.busy() as u32,
                });
            }
            Mailbox::Local(PoolLocal::TestHookStuck) => {
                if crate::runtime::test_hooks::enabled() {
                    warn!("test hook: the worker pool blocks its mailbox until it is killed");
                    std::future::pending::<()>().await;
                } else {
                    warn!("ignored a test hook: this node was not started with HERD_TEST_HOOKS=1");
                }
            }
            Mailbox::Undecodable(frame) => {
                metrics::counter!("herd_undecodable_frames_total", "protocol" => frame.protocol)
                    .increment(1);
                warn!(bytes = frame.bytes, error = %frame.error, "dropped an undecodable frame addressed to the pool");
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                state.on_worker_exit(&myself, cell.get_id(), Some(error.to_string()))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                state.on_worker_exit(&myself, cell.get_id(), reason)
            }
            SupervisionEvent::ProcessGroupChanged(GroupChangeMessage::Join(_, group, _))
                if group == groups::ORCHESTRATOR =>
            {
                state.refresh_registration()
            }
            _ => {}
        }
        Ok(())
    }
}

/// Relays changes of the cluster view into the pool's mailbox.
fn forward_view_changes(mut view: watch::Receiver<ClusterView>, pool: ActorRef<PoolMsg>) {
    tokio::spawn(async move {
        while view.changed().await.is_ok() {
            if pool.cast(Mailbox::Local(PoolLocal::ViewChanged)).is_err() {
                break;
            }
        }
    });
}
