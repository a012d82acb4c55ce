//! The orchestrator's state: a deterministic machine over tasks.
//!
//! [`TaskBook::apply`] takes a [`Command`] (submit, assign, report, node lost,
//! cancel, tick, ...) and returns [`Effect`]s for its owner to carry out
//! (dispatch an attempt, stop an attempt, wake waiters). It reads no clock
//! and does no I/O, so it is tested directly and a journal of commands
//! rebuilds it exactly.
//!
//! Guarantees, checked by `TaskBook::check_invariants` and property tests:
//! - every accepted task is in exactly one state, and the per-state counts,
//!   the pending queues and the per-node running sets agree with the records;
//! - a task is running on at most one node, under one assignment epoch;
//! - a report is applied only if it carries the task's current epoch, so a
//!   task completes at most once and a stale attempt never overwrites a newer
//!   one (it is reported as [`StaleReason::Duplicate`]);
//! - a terminal task never changes again, except a dead one retried on
//!   request.

mod attempts;
mod bytes;
mod command;
#[cfg(test)]
mod invariants;
mod queries;
mod queue;
mod record;
mod requests;
mod retry;
mod scaling_overrides;
mod submission;
mod tenants;
#[cfg(test)]
mod tests;
mod transitions;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use herd_protocol::messages::orchestrator::TaskCounts;
use herd_protocol::{AgentType, MemberId, TaskId, UnixMillis};

pub use command::{BookConfiguration, Command, Effect, RequeueReason, StaleReason};
pub use queue::PendingQueue;
pub use record::TaskRecord;
#[cfg(test)]
pub use retry::Backoff;
pub use retry::RetryPolicy;
pub use scaling_overrides::{PoolBounds, ScalingOverrides, WeightOverrides};
pub use submission::Submission;
pub use tenants::{TenantLimit, TenantLimits, TenantUsage};

/// Limits and defaults the book enforces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskBookSettings {
    /// Per-attempt time limit for tasks and types that do not say.
    pub default_timeout_s: u32,
    /// Attempts for tasks and types that do not say.
    pub default_max_attempts: u32,
    /// Finished tasks kept; the oldest beyond this are forgotten.
    pub retain_finished: usize,
    /// Unfinished tasks accepted before submissions are refused.
    pub max_unfinished: u64,
    /// Payload and result bytes held: submissions whose payloads would push
    /// unfinished tasks past it are refused, and the oldest finished tasks
    /// are forgotten to stay under it.
    pub max_held_bytes: u64,
    /// Largest payload, in bytes.
    pub max_payload_bytes: usize,
    /// Delay between attempts.
    pub retry: RetryPolicy,
    /// Crashes after which a task is dead (poison).
    pub poison_crashes: u32,
    /// Longest per-attempt time limit (the pool's `worker_timeout_seconds`):
    /// longer requests are refused, longer defaults are cut to it.
    pub max_timeout_s: u32,
    /// What each tenant may hold.
    pub tenant_limits: TenantLimits,
}

impl Default for TaskBookSettings {
    fn default() -> Self {
        use herd_protocol::defaults::{
            DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES,
            DEFAULT_MAX_UNFINISHED_TASKS, DEFAULT_POISON_CRASHES, DEFAULT_RETAIN_FINISHED,
            DEFAULT_TIMEOUT_S,
        };
        TaskBookSettings {
            default_timeout_s: DEFAULT_TIMEOUT_S,
            default_max_attempts: DEFAULT_MAX_ATTEMPTS,
            retain_finished: DEFAULT_RETAIN_FINISHED,
            max_unfinished: DEFAULT_MAX_UNFINISHED_TASKS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            retry: RetryPolicy::default(),
            poison_crashes: DEFAULT_POISON_CRASHES,
            max_timeout_s: herd_protocol::limits::MAX_TIMEOUT_S,
            tenant_limits: TenantLimits::unlimited(),
        }
    }
}

/// Per-agent-type defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentTypeSettings {
    /// Overrides the book's default timeout.
    pub timeout_s: Option<u32>,
    /// Overrides the book's default attempts.
    pub max_attempts: Option<u32>,
    /// Overrides the book's default backoff.
    pub retry: Option<RetryPolicy>,
}

/// What runs on one node, by agent type.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct MemberLoad {
    tasks: HashSet<TaskId>,
    by_type: HashMap<AgentType, u32>,
}

/// The orchestrator's task state machine. See the module docs.
///
/// It serialises (for snapshots) without its settings and agent types, which
/// come from configuration or the log: see [`TaskBook::reconfigure`]; and
/// without its scaling overrides, which snapshots carry beside it (so a
/// book's encoding keeps the layout older snapshots were written in): see
/// [`TaskBook::restore_scaling_overrides`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskBook {
    #[serde(skip)]
    settings: TaskBookSettings,
    #[serde(skip)]
    agent_types: BTreeMap<AgentType, AgentTypeSettings>,
    /// The latest [`Command::ScalingOverrides`]: kept, never acted on.
    #[serde(skip)]
    scaling_overrides: ScalingOverrides,
    tasks: BTreeMap<TaskId, TaskRecord>,
    queues: HashMap<AgentType, PendingQueue>,
    idempotency: HashMap<String, TaskId>,
    load: HashMap<MemberId, MemberLoad>,
    retries: BTreeSet<(UnixMillis, TaskId)>,
    finished: VecDeque<TaskId>,
    counts: TaskCounts,
    /// Terminal tasks dropped by retention, so totals stay cumulative.
    forgotten: TaskCounts,
    /// Payload and result bytes of every record (derived: see `bytes`).
    #[serde(skip)]
    held_bytes: u64,
    /// The part of `held_bytes` in finished tasks (derived: see `bytes`).
    #[serde(skip)]
    finished_bytes: u64,
    /// What each tenant holds (derived: see `tenants`).
    #[serde(skip)]
    tenant_usage: HashMap<herd_protocol::Tenant, TenantUsage>,
    next_epoch: u64,
    next_ticket: u64,
}

impl TaskBook {
    /// An empty book for the given agent types.
    pub fn new(
        settings: TaskBookSettings,
        agent_types: impl IntoIterator<Item = (AgentType, AgentTypeSettings)>,
    ) -> Self {
        let agent_types: BTreeMap<_, _> = agent_types.into_iter().collect();
        let queues = agent_types
            .keys()
            .map(|agent_type| (agent_type.clone(), PendingQueue::default()))
            .collect();
        TaskBook {
            settings,
            agent_types,
            scaling_overrides: ScalingOverrides::default(),
            tasks: BTreeMap::new(),
            queues,
            idempotency: HashMap::new(),
            load: HashMap::new(),
            retries: BTreeSet::new(),
            finished: VecDeque::new(),
            counts: TaskCounts::default(),
            forgotten: TaskCounts::default(),
            held_bytes: 0,
            finished_bytes: 0,
            tenant_usage: HashMap::new(),
            next_epoch: 1,
            next_ticket: 1,
        }
    }

    /// Replaces the settings and agent types (after loading a snapshot, or
    /// when the configuration changes), and rebuilds the byte counters a
    /// snapshot does not carry. Queues of types no longer configured are
    /// kept, so their tasks are not lost.
    pub fn reconfigure(
        &mut self,
        settings: TaskBookSettings,
        agent_types: impl IntoIterator<Item = (AgentType, AgentTypeSettings)>,
    ) {
        self.settings = settings;
        self.agent_types = agent_types.into_iter().collect();
        for agent_type in self.agent_types.keys() {
            self.queues.entry(agent_type.clone()).or_default();
        }
        self.recount_bytes();
    }

    /// The settings and agent types this book applies commands under.
    pub fn configuration(&self) -> BookConfiguration {
        BookConfiguration {
            settings: self.settings.clone(),
            agent_types: self.agent_types.clone(),
        }
    }

    /// Operators' run-time scaling changes as last recorded (by
    /// [`Command::ScalingOverrides`]); the default when none was. Settings
    /// and agent types changing ([`TaskBook::reconfigure`]) leave them be.
    pub fn scaling_overrides(&self) -> &ScalingOverrides {
        &self.scaling_overrides
    }

    /// Puts back the scaling overrides a snapshot carried beside this book's
    /// encoding (which leaves them out).
    pub fn restore_scaling_overrides(&mut self, overrides: ScalingOverrides) {
        self.scaling_overrides = overrides;
    }

    /// Takes the settings and agent types of `other` (a freshly configured
    /// book), keeping this book's tasks.
    pub fn reconfigure_like(&mut self, other: &TaskBook) {
        self.reconfigure_to(other.configuration());
    }

    /// Takes `configuration` (from the log or a snapshot), keeping this
    /// book's tasks.
    pub fn reconfigure_to(&mut self, configuration: BookConfiguration) {
        let BookConfiguration {
            settings,
            agent_types,
        } = configuration;
        self.reconfigure(settings, agent_types);
    }

    /// Applies one command and returns what must happen as a result. This is
    /// how a journal is replayed; commands that answer their sender
    /// ([`Command::Submit`], [`Command::Cancel`], [`Command::RetryDead`]) also
    /// have a method of their own that returns the answer.
    pub fn apply(&mut self, command: Command) -> Vec<Effect> {
        let mut effects = Vec::new();
        match command {
            Command::Submit(submission) => return self.submit(submission).effects,
            Command::Cancel { id, now } => return self.cancel(id, now).effects,
            Command::RetryDead { id, payload, now } => {
                return self.retry_dead(id, payload, now).effects;
            }
            Command::Assign {
                member,
                agent_type,
                max,
                now,
            } => self.assign(member, &agent_type, max, now, &mut effects),
            Command::Report {
                member,
                report,
                now,
            } => self.report(member, report, now, &mut effects),
            Command::MemberLost { member, now } => self.member_lost(&member, now, &mut effects),
            Command::AttemptsLost {
                member,
                attempts,
                now,
            } => self.attempts_lost(&member, attempts, now, &mut effects),
            Command::HandBack {
                member,
                attempts,
                now,
            } => self.hand_back(&member, attempts, now, &mut effects),
            Command::Tick { now } => self.tick(now, &mut effects),
            Command::Configure(configuration) => self.reconfigure_to(*configuration),
            Command::ScalingOverrides(overrides) => {
                // Kept for the next orchestrator; no task changes.
                self.scaling_overrides = *overrides;
                return effects;
            }
            // The replica's state machine keeps it (see `replica`); tasks
            // have nothing to do with which group holds them.
            Command::ReplicaGroup(_) => return effects,
        }
        self.forget_beyond_retention(&mut effects);
        effects
    }
}

/// A command's typed answer for whoever asked, next to the effects its owner
/// must carry out.
#[derive(Debug)]
#[must_use = "the effects must be carried out"]
pub struct Applied<A> {
    /// The answer for the sender.
    pub answer: A,
    /// What the owner must do (dispatch, stop attempts, wake waiters...).
    pub effects: Vec<Effect>,
}
