//! The LLM providers' cluster-wide budgets, as the orchestrator applies them:
//! dispatch asks how many calls each `llm` agent type may start
//! ([`ProviderBudgets::allot`]), each dispatched attempt carries its grant
//! ([`ProviderBudgets::grant`]), and nodes report how their calls went
//! (`OrchestratorCast::ProviderCalls`), which settles tokens and applies the
//! provider's rate-limit headers at once for the whole cluster.
//!
//! Budgets are soft state, like the circuits: they are not journaled. After
//! an orchestrator restart the windows start empty, so for one minute the
//! cluster may send what the provider already counted before the restart; the
//! provider's 429 and `Retry-After` then pause it (see README, "LLM agents").

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use herd_config::ProviderConfig;
use herd_protocol::messages::orchestrator::{CircuitStatus, ProviderStatus};
use herd_protocol::messages::provider::{ProviderCall, ProviderCallStatus};
use herd_protocol::{
    AgentType, JsonText, MemberId, TaskAssignment, TaskId, TaskState, TaskView, TokenUsage,
};
use ractor::ActorRef;
use tracing::{info, warn};

use super::OrchestratorMsg;
use super::state::OrchestratorState;
use crate::scheduling::circuit::CircuitState;
use crate::scheduling::provider_budget::{
    BudgetLimits, BudgetUsage, ProviderBudget, Reserved, Shortage,
};
use crate::scheduling::provider_choice::{Allotment, allot};

/// Tokens reserved for a call before the provider has counted any: the
/// agent type's `max_tokens` plus a typical prompt, or this.
const FIRST_ESTIMATE_TOKENS: u64 = 1_000;

/// A prompt's typical size, added to `max_tokens` for the first estimate.
const PROMPT_ESTIMATE_TOKENS: u64 = 250;

/// At most this many tasks remember which provider failed them last (so
/// their retry goes elsewhere); beyond it, the oldest entries are dropped.
const MAX_REMEMBERED_FAILURES: usize = 100_000;

/// How one `llm` agent type reaches its providers.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRoute {
    /// `provider`, then `fallback`.
    pub chain: Vec<String>,
    /// The agent type's `max_tokens`, if set.
    pub max_tokens: Option<u32>,
}

/// Every provider's budget and which agent types use them.
#[derive(Debug, Default)]
pub struct ProviderBudgets {
    budgets: BTreeMap<String, ProviderBudget>,
    routes: BTreeMap<AgentType, LlmRoute>,
    /// This round's allotments, consumed by [`ProviderBudgets::grant`].
    allotted: BTreeMap<AgentType, Allotment>,
    /// Why each type's tasks wait, if they do.
    waiting: BTreeMap<AgentType, (String, Shortage)>,
    /// Which provider's failure ended a task's last attempt.
    failed_on: HashMap<TaskId, String>,
}

impl ProviderBudgets {
    /// Budgets for `providers`, routing `routes`' agent types through them.
    pub fn new(
        providers: &BTreeMap<String, ProviderConfig>,
        routes: BTreeMap<AgentType, LlmRoute>,
    ) -> Self {
        let budgets = providers
            .iter()
            .map(|(name, provider)| {
                let max_tokens = routes
                    .values()
                    .filter(|route| route.chain.contains(name))
                    .filter_map(|route| route.max_tokens)
                    .max();
                let first_estimate = max_tokens.map_or(FIRST_ESTIMATE_TOKENS, |max| {
                    u64::from(max) + PROMPT_ESTIMATE_TOKENS
                });
                let budget = ProviderBudget::new(
                    BudgetLimits {
                        requests_per_minute: provider.requests_per_minute,
                        tokens_per_minute: provider.tokens_per_minute,
                        max_concurrent: provider.max_concurrent,
                        max_wait: provider.max_wait,
                    },
                    provider.circuit.clone(),
                    first_estimate,
                );
                (name.clone(), budget)
            })
            .collect();
        ProviderBudgets {
            budgets,
            routes,
            ..ProviderBudgets::default()
        }
    }

    /// True if `agent_type`'s tasks need a provider grant.
    pub fn routes(&self, agent_type: &AgentType) -> bool {
        self.routes.contains_key(agent_type)
    }

    /// Starts a dispatch round: forgets calls whose attempts no longer run
    /// (`running` says whether an attempt is current in the task book) and
    /// last round's allotments.
    pub fn begin_round(
        &mut self,
        mut running: impl FnMut(TaskId, herd_protocol::AssignmentEpoch) -> bool,
    ) {
        self.allotted.clear();
        self.waiting.clear();
        for budget in self.budgets.values_mut() {
            budget.retain_in_flight(|(task, epoch)| running(task, epoch));
        }
    }

    /// How many of `wanted` tasks of `agent_type` may start now (all of them
    /// for a type that calls no provider). Types are asked in turn, each
    /// seeing what earlier types of the round were allotted.
    pub fn allot(
        &mut self,
        agent_type: &AgentType,
        wanted: u64,
        reserved: &mut BTreeMap<String, Reserved>,
        now: Instant,
    ) -> u64 {
        let Some(route) = self.routes.get(agent_type) else {
            return wanted;
        };
        let allotment = allot(&route.chain, wanted, &mut self.budgets, reserved, now);
        match &allotment.waiting {
            Some(why) => {
                self.waiting.insert(agent_type.clone(), why.clone());
            }
            None => {
                self.waiting.remove(agent_type);
            }
        }
        let total = allotment.total();
        self.allotted.insert(agent_type.clone(), allotment);
        total
    }

    /// Gives a dispatched attempt its provider: one allotted this round,
    /// preferring another than the one that failed the task's last attempt.
    pub fn grant(&mut self, assignment: &mut TaskAssignment, now: Instant) {
        let avoid = self.failed_on.remove(&assignment.task_id);
        let Some(allotment) = self.allotted.get_mut(&assignment.agent_type) else {
            return;
        };
        let pick = allotment
            .grants
            .iter()
            .position(|(provider, n)| *n > 0 && Some(provider) != avoid.as_ref())
            .or_else(|| allotment.grants.iter().position(|(_, n)| *n > 0));
        let Some(index) = pick else {
            // Dispatch never starts more than was allotted.
            warn!(task_id = %assignment.task_id, "an llm attempt was dispatched without an allotted provider call");
            return;
        };
        let mut provider = allotment.grants[index].0.clone();
        let mut fell_back = index > 0;
        if avoid.as_ref() == Some(&provider) {
            // Only the provider that failed this task's last attempt was
            // allotted: its retry goes to another provider of the chain that
            // has room beyond what this round still holds for it.
            if let Some(other) = self.other_with_room(&assignment.agent_type, &provider, now) {
                provider = other;
                fell_back = true;
            }
        }
        if let Some((_, left)) = self
            .allotted
            .get_mut(&assignment.agent_type)
            .and_then(|a| a.grants.iter_mut().find(|(p, n)| *p == provider && *n > 0))
        {
            *left -= 1;
        }
        if fell_back || avoid.as_ref().is_some_and(|failed| *failed != provider) {
            metrics::counter!("herd_llm_fallbacks_total", "to" => provider.clone()).increment(1);
        }
        if let Some(budget) = self.budgets.get_mut(provider.as_str()) {
            budget.grant((assignment.task_id, assignment.epoch), now);
        }
        assignment.provider = Some(provider);
    }

    /// A provider of `agent_type`'s chain other than `failed` that can take
    /// one more call on top of what this round's allotments still hold.
    fn other_with_room(
        &mut self,
        agent_type: &AgentType,
        failed: &str,
        now: Instant,
    ) -> Option<String> {
        let chain = self.routes.get(agent_type)?.chain.clone();
        for candidate in chain.iter().filter(|p| p.as_str() != failed) {
            let held: u32 = self
                .allotted
                .values()
                .flat_map(|a| a.grants.iter())
                .filter(|(p, _)| p == candidate)
                .map(|(_, n)| *n)
                .sum();
            let Some(budget) = self.budgets.get_mut(candidate) else {
                return Some(candidate.clone());
            };
            let reserved = Reserved {
                calls: held,
                tokens: u64::from(held) * budget.estimate(),
            };
            if budget.room(now, reserved).is_ok_and(|room| room > 0) {
                return Some(candidate.clone());
            }
        }
        None
    }

    /// Applies what a node reports about its finished calls.
    pub fn calls_finished(&mut self, member: &MemberId, calls: Vec<ProviderCall>, now: Instant) {
        for call in calls {
            let Some(budget) = self.budgets.get_mut(&call.provider) else {
                warn!(node = %member, provider = %call.provider, "a node reported a call to a provider this orchestrator does not know; configure the same [providers] on every node");
                continue;
            };
            let tokens = call.prompt_tokens + call.completion_tokens;
            let changed = budget.call_ended(
                (call.task_id, call.epoch),
                call.status,
                tokens,
                &call.hint,
                now,
            );
            if call.status.is_provider_failure() {
                if self.failed_on.len() >= MAX_REMEMBERED_FAILURES {
                    self.failed_on.clear();
                }
                self.failed_on.insert(call.task_id, call.provider.clone());
            }
            if call.status == ProviderCallStatus::RateLimited {
                let pause_ms = call.hint.retry_after_ms.unwrap_or(0);
                info!(provider = %call.provider, node = %member, retry_after_ms = pause_ms, "provider rate-limited a call; its budget is paused for the whole cluster");
            }
            match changed {
                Some(CircuitState::Open) => {
                    warn!(provider = %call.provider, "provider circuit opened after repeated failures; calls go to the fallback providers");
                }
                Some(CircuitState::Closed) => {
                    info!(provider = %call.provider, "provider circuit closed; calls go to it again");
                }
                _ => {}
            }
            if let Some(state) = changed {
                metrics::counter!("herd_llm_provider_circuit_transitions_total", "provider" => call.provider.clone(), "to" => state.as_str()).increment(1);
            }
        }
    }

    /// Why tasks of `agent_type` wait for a provider, if they do.
    pub fn waiting_for(&self, agent_type: &AgentType, now: Instant) -> Option<String> {
        self.waiting.get(agent_type).map(|(provider, shortage)| {
            format!(
                "waiting for provider {provider:?}: {}",
                shortage.describe(now)
            )
        })
    }

    /// When a waiting type's provider may have room again (to dispatch
    /// then); `None` when nothing waits on a known time.
    pub fn next_room_at(&self) -> Option<Instant> {
        self.waiting
            .values()
            .filter_map(|(_, shortage)| shortage.until())
            .min()
    }

    /// Every provider's budget for the cluster summary; also updates the
    /// budget gauges.
    pub fn status(&mut self, now: Instant) -> Vec<ProviderStatus> {
        self.budgets
            .iter_mut()
            .map(|(name, budget)| {
                let usage = budget.usage(now);
                publish(name, &usage);
                let limits = budget.limits();
                ProviderStatus {
                    name: name.clone(),
                    requests_last_minute: usage.requests_last_minute,
                    requests_per_minute: limits.requests_per_minute,
                    tokens_last_minute: usage.tokens_last_minute,
                    tokens_per_minute: limits.tokens_per_minute,
                    in_flight: usage.in_flight,
                    max_concurrent: limits.max_concurrent,
                    budget_in_use: usage.in_use,
                    paused_for_ms: usage.paused_for.as_millis() as u64,
                    circuit: match usage.circuit {
                        CircuitState::Closed => CircuitStatus::Closed,
                        CircuitState::Open => CircuitStatus::Open,
                        CircuitState::HalfOpen => CircuitStatus::HalfOpen,
                    },
                }
            })
            .collect()
    }

    /// Updates the budget gauges (each scaling interval).
    pub fn publish(&mut self, now: Instant) {
        for (name, budget) in &mut self.budgets {
            publish(name, &budget.usage(now));
        }
    }

    /// Providers whose circuit is not closed.
    pub fn circuits_open(&mut self, now: Instant) -> usize {
        self.budgets
            .values_mut()
            .map(|budget| budget.usage(now).circuit)
            .filter(|state| *state != CircuitState::Closed)
            .count()
    }

    /// The largest share of any provider's budget in use (0.0–1.0), or
    /// `None` without providers.
    pub fn busiest(&mut self, now: Instant) -> Option<f64> {
        self.budgets
            .values_mut()
            .map(|budget| budget.usage(now).in_use)
            .reduce(f64::max)
    }
}

impl OrchestratorState {
    /// The API view of a task, with what only the orchestrator knows: which
    /// provider a pending `llm` task waits for, and the tokens its call used.
    pub(super) fn task_view(&self, id: TaskId) -> Option<TaskView> {
        let mut view = self.book.view(id)?;
        self.annotate_view(&mut view);
        Some(view)
    }

    /// Adds provider waits and token counts to a view of the book.
    pub(super) fn annotate_view(&self, view: &mut TaskView) {
        if !self.providers.routes(&view.agent_type) {
            return;
        }
        if view.state == TaskState::Pending {
            view.waiting_for = self.providers.waiting_for(&view.agent_type, Instant::now());
        }
        view.tokens = view.result.as_ref().and_then(tokens_of);
    }

    /// A node reported finished provider calls.
    pub(super) fn on_provider_calls(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        member: MemberId,
        calls: Vec<ProviderCall>,
    ) {
        self.providers
            .calls_finished(&member, calls, Instant::now());
        // Settled tokens and released calls may make room.
        self.schedule_dispatch(myself);
    }
}

fn publish(provider: &str, usage: &BudgetUsage) {
    let provider = provider.to_string();
    metrics::gauge!("herd_llm_budget_in_use_ratio", "provider" => provider.clone())
        .set(usage.in_use);
    metrics::gauge!("herd_llm_calls_in_flight", "provider" => provider.clone())
        .set(f64::from(usage.in_flight));
    metrics::gauge!("herd_llm_requests_last_minute", "provider" => provider.clone())
        .set(usage.requests_last_minute as f64);
    metrics::gauge!("herd_llm_tokens_last_minute", "provider" => provider)
        .set(usage.tokens_last_minute as f64);
}

/// The `usage` of an `llm` handler's result.
fn tokens_of(result: &JsonText) -> Option<TokenUsage> {
    #[derive(serde::Deserialize)]
    struct Answer {
        usage: TokenUsage,
    }
    result.decode::<Answer>().ok().map(|answer| answer.usage)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herd_config::CircuitSettings;
    use herd_protocol::messages::provider::RateLimitHint;
    use herd_protocol::{AssignmentEpoch, Incarnation, JsonText, NodeName};

    use super::*;

    fn provider(rpm: u32) -> ProviderConfig {
        ProviderConfig {
            base_url: "http://127.0.0.1:1/v1".to_string(),
            api_key: None,
            model: Some("m".to_string()),
            requests_per_minute: Some(rpm),
            tokens_per_minute: None,
            max_concurrent: None,
            max_wait: Duration::from_secs(5),
            circuit: CircuitSettings {
                failures: 5,
                recovery: Duration::from_secs(60),
                half_open_trials: 1,
            },
        }
    }

    fn budgets() -> ProviderBudgets {
        let providers = BTreeMap::from([
            ("primary".to_string(), provider(100)),
            ("backup".to_string(), provider(100)),
        ]);
        let routes = BTreeMap::from([(
            AgentType::new("chat"),
            LlmRoute {
                chain: vec!["primary".to_string(), "backup".to_string()],
                max_tokens: Some(100),
            },
        )]);
        ProviderBudgets::new(&providers, routes)
    }

    fn assignment(task: u128, epoch: u64) -> TaskAssignment {
        TaskAssignment {
            task_id: TaskId(task),
            epoch: AssignmentEpoch(epoch),
            agent_type: AgentType::new("chat"),
            payload: JsonText::parse("{}").unwrap(),
            attempt: 1,
            timeout_ms: 1000,
            trace_context: None,
            provider: None,
        }
    }

    fn member() -> MemberId {
        MemberId {
            name: NodeName::parse("n1").unwrap(),
            incarnation: Incarnation(1),
        }
    }

    #[test]
    fn a_retry_after_a_provider_failure_goes_to_another_provider() {
        let now = Instant::now();
        let mut budgets = budgets();
        let chat = AgentType::new("chat");
        // Attempt 1 of task 7 is granted the primary, which answers 500.
        budgets.begin_round(|_, _| true);
        assert_eq!(budgets.allot(&chat, 1, &mut BTreeMap::new(), now), 1);
        let mut first = assignment(7, 1);
        budgets.grant(&mut first, now);
        assert_eq!(first.provider.as_deref(), Some("primary"));
        let failure = ProviderCall {
            provider: "primary".to_string(),
            task_id: TaskId(7),
            epoch: AssignmentEpoch(1),
            status: ProviderCallStatus::Unavailable,
            prompt_tokens: 0,
            completion_tokens: 0,
            hint: RateLimitHint::default(),
            latency_ms: 3,
        };
        budgets.calls_finished(&member(), vec![failure], now);

        // The primary's circuit is still closed and has room, so the round
        // allots the primary; the retry goes to the backup all the same,
        // while another task still gets the primary.
        budgets.begin_round(|_, _| false);
        assert_eq!(budgets.allot(&chat, 2, &mut BTreeMap::new(), now), 2);
        let mut retry = assignment(7, 2);
        budgets.grant(&mut retry, now);
        assert_eq!(retry.provider.as_deref(), Some("backup"));
        let mut other = assignment(8, 3);
        budgets.grant(&mut other, now);
        assert_eq!(other.provider.as_deref(), Some("primary"));
    }

    #[test]
    fn pending_tasks_say_which_provider_they_wait_for() {
        let now = Instant::now();
        let providers = BTreeMap::from([("primary".to_string(), provider(2))]);
        let routes = BTreeMap::from([(
            AgentType::new("chat"),
            LlmRoute {
                chain: vec!["primary".to_string()],
                max_tokens: None,
            },
        )]);
        let mut budgets = ProviderBudgets::new(&providers, routes);
        let chat = AgentType::new("chat");
        budgets.begin_round(|_, _| true);
        assert_eq!(budgets.allot(&chat, 5, &mut BTreeMap::new(), now), 2);
        let why = budgets.waiting_for(&chat, now).unwrap();
        assert!(
            why.contains("\"primary\"") && why.contains("requests_per_minute"),
            "{why}"
        );
        assert!(budgets.next_room_at().is_some());
    }
}
