//! One circuit breaker per agent type, as the orchestrator uses them.

use std::collections::BTreeMap;
use std::time::Instant;

use herd_config::CircuitSettings;
use herd_protocol::messages::orchestrator::CircuitStatus;
use herd_protocol::{AgentType, FailureKind};
use tracing::{info, warn};

use crate::scheduling::circuit::{CircuitBreaker, CircuitState};

/// The breakers of every agent type.
#[derive(Debug, Default)]
pub struct Circuits {
    breakers: BTreeMap<AgentType, CircuitBreaker>,
}

impl Circuits {
    /// Breakers for the given types.
    pub fn new(settings: impl IntoIterator<Item = (AgentType, CircuitSettings)>) -> Self {
        Circuits {
            breakers: settings
                .into_iter()
                .map(|(t, s)| (t, CircuitBreaker::new(s)))
                .collect(),
        }
    }

    /// How many tasks of `agent_type` may be dispatched now.
    pub fn admissible(&mut self, agent_type: &AgentType, now: Instant) -> u64 {
        self.breakers
            .get_mut(agent_type)
            .map_or(u64::MAX, |breaker| breaker.admissible(now))
    }

    /// Records dispatched tasks (counts half-open trials).
    pub fn admitted(&mut self, agent_type: &AgentType, count: u64) {
        if let Some(breaker) = self.breakers.get_mut(agent_type) {
            breaker.admitted(count);
        }
    }

    /// Records how an attempt ended, logging and counting transitions.
    pub fn record(&mut self, agent_type: &AgentType, failure: Option<FailureKind>, now: Instant) {
        let Some(breaker) = self.breakers.get_mut(agent_type) else {
            return;
        };
        if let Some(state) = breaker.record(failure, now) {
            match state {
                CircuitState::Open => {
                    warn!(agent_type = %agent_type, recovery_s = breaker.recovery().as_secs_f64(), "circuit opened after repeated failures; tasks of this type wait")
                }
                CircuitState::Closed => {
                    info!(agent_type = %agent_type, "circuit closed; tasks of this type flow again")
                }
                CircuitState::HalfOpen => {}
            }
            metrics::counter!("herd_circuit_transitions_total", "agent_type" => agent_type.to_string(), "to" => state.as_str()).increment(1);
        }
        let open = matches!(
            breaker.state(now),
            CircuitState::Open | CircuitState::HalfOpen
        );
        metrics::gauge!("herd_circuit_open", "agent_type" => agent_type.to_string()).set(if open {
            1.0
        } else {
            0.0
        });
    }

    /// The state shown in the cluster summary.
    pub fn status(&mut self, agent_type: &AgentType, now: Instant) -> CircuitStatus {
        match self
            .breakers
            .get_mut(agent_type)
            .map(|breaker| breaker.state(now))
        {
            Some(CircuitState::Open) => CircuitStatus::Open,
            Some(CircuitState::HalfOpen) => CircuitStatus::HalfOpen,
            _ => CircuitStatus::Closed,
        }
    }

    /// The earliest time an open circuit admits trials.
    pub fn next_reopening(&self) -> Option<Instant> {
        self.breakers
            .values()
            .filter_map(CircuitBreaker::reopens_at)
            .min()
    }
}
