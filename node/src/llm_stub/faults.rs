//! Fault injection: a queue of rules, each answering the next N chat
//! requests with a chosen status (after an optional delay). Pure: the
//! routes decide what to do with the rule a request draws.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Most rules that may wait in the queue; a control client in a loop
/// cannot grow it without bound.
pub const MAX_RULES: usize = 1_000;

/// One rule, as posted to `POST /stub/faults`. Unknown fields are refused
/// so that a typo (`retry_after`) does not silently queue a different rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The status to answer with: 200 (a normal answer, typically with
    /// `delay_ms`: "slow answers") or an error status 400..=599.
    pub status: u16,
    /// How many chat requests the rule answers; `None` (null or absent):
    /// every request until the rules are cleared, so rules queued after it
    /// are never reached.
    #[serde(default)]
    pub count: Option<u64>,
    /// Sent as the `Retry-After` header (whole seconds).
    #[serde(default)]
    pub retry_after_s: Option<u64>,
    /// Wait this long before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

/// Why a rule was refused; the message is for the person who posted it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// The status is neither 200 nor 400..=599.
    #[error(
        "status {0} cannot be injected; use 200 (with delay_ms, for slow answers) or 400..=599"
    )]
    Status(u16),
    /// `count` is 0, which would be a rule that never applies.
    #[error("count 0 would never apply; use a positive count, or null for until cleared")]
    ZeroCount,
    /// The queue already holds [`MAX_RULES`] rules.
    #[error("{MAX_RULES} rules are already queued; DELETE /stub/faults first")]
    Full,
}

impl FaultRule {
    /// Checks the rule makes sense before it is queued.
    pub fn validate(&self) -> Result<(), FaultError> {
        if self.status != 200 && !(400..=599).contains(&self.status) {
            return Err(FaultError::Status(self.status));
        }
        if self.count == Some(0) {
            return Err(FaultError::ZeroCount);
        }
        Ok(())
    }
}

/// The queued rules, applied in the order they were posted.
#[derive(Debug, Default)]
pub struct Faults {
    rules: VecDeque<(FaultRule, Option<u64>)>,
}

impl Faults {
    /// Queues `rule` behind the ones already waiting.
    pub fn push(&mut self, rule: FaultRule) -> Result<(), FaultError> {
        rule.validate()?;
        if self.rules.len() >= MAX_RULES {
            return Err(FaultError::Full);
        }
        let remaining = rule.count;
        self.rules.push_back((rule, remaining));
        Ok(())
    }

    /// Drops every rule: requests are answered normally again.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rule the next chat request draws, using up one of its count;
    /// `None` when no rule is queued.
    pub fn take(&mut self) -> Option<FaultRule> {
        let (rule, remaining) = self.rules.front_mut()?;
        let rule = rule.clone();
        if let Some(left) = remaining {
            *left -= 1;
            if *left == 0 {
                self.rules.pop_front();
            }
        }
        Some(rule)
    }

    /// Rules still queued, with what is left of each count.
    pub fn pending(&self) -> Vec<FaultRule> {
        self.rules
            .iter()
            .map(|(rule, remaining)| FaultRule {
                count: *remaining,
                ..rule.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(status: u16, count: Option<u64>) -> FaultRule {
        FaultRule {
            status,
            count,
            retry_after_s: None,
            delay_ms: None,
        }
    }

    #[test]
    fn rules_apply_in_order_and_run_out() {
        let mut faults = Faults::default();
        faults.push(rule(429, Some(2))).unwrap();
        faults.push(rule(500, Some(1))).unwrap();
        let drawn: Vec<_> = (0..4)
            .map(|_| faults.take().map(|rule| rule.status))
            .collect();
        assert_eq!(drawn, [Some(429), Some(429), Some(500), None]);
    }

    #[test]
    fn a_rule_without_count_applies_until_cleared() {
        let mut faults = Faults::default();
        faults.push(rule(503, None)).unwrap();
        faults.push(rule(429, Some(1))).unwrap();
        for _ in 0..10 {
            assert_eq!(faults.take().unwrap().status, 503);
        }
        assert_eq!(faults.pending().len(), 2);
        faults.clear();
        assert_eq!(faults.take(), None);
    }

    #[test]
    fn nonsense_rules_are_refused() {
        let mut faults = Faults::default();
        assert_eq!(faults.push(rule(302, None)), Err(FaultError::Status(302)));
        assert_eq!(faults.push(rule(500, Some(0))), Err(FaultError::ZeroCount));
        assert!(faults.pending().is_empty());
    }
}
