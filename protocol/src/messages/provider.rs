//! What a node tells the orchestrator about its calls to LLM providers, so
//! that the cluster-wide budget follows what providers really count and say.

use serde::{Deserialize, Serialize};

use crate::ids::{AssignmentEpoch, TaskId};

/// How one call to a provider ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderCallStatus {
    /// 2xx with a usable completion.
    Ok,
    /// 429: the provider's own limit was hit.
    RateLimited,
    /// 5xx, a timeout, or no connection: the provider is unwell.
    Unavailable,
    /// 401/403: the key is wrong or lacks access.
    AuthRejected,
    /// Another 4xx or an unusable answer: the request itself is wrong.
    Rejected,
}

impl ProviderCallStatus {
    /// The label used in metrics (`herd_llm_requests_total{status}`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderCallStatus::Ok => "ok",
            ProviderCallStatus::RateLimited => "rate_limited",
            ProviderCallStatus::Unavailable => "unavailable",
            ProviderCallStatus::AuthRejected => "auth_rejected",
            ProviderCallStatus::Rejected => "rejected",
        }
    }

    /// True for outcomes that say the provider (not the request) is failing:
    /// they count toward its circuit.
    pub fn is_provider_failure(self) -> bool {
        matches!(self, ProviderCallStatus::Unavailable)
    }
}

/// Rate-limit state a provider reported in its response headers
/// (`Retry-After`, `x-ratelimit-remaining-*`, `x-ratelimit-reset-*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitHint {
    /// Send nothing more for this long (`Retry-After`).
    pub retry_after_ms: Option<u64>,
    /// Requests the provider will still accept before `reset_requests_ms`.
    pub remaining_requests: Option<u64>,
    /// When the provider's request allowance refills.
    pub reset_requests_ms: Option<u64>,
    /// Tokens the provider will still accept before `reset_tokens_ms`.
    pub remaining_tokens: Option<u64>,
    /// When the provider's token allowance refills.
    pub reset_tokens_ms: Option<u64>,
}

impl RateLimitHint {
    /// True when the response carried no rate-limit information.
    pub fn is_empty(&self) -> bool {
        *self == RateLimitHint::default()
    }
}

/// One finished call to a provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderCall {
    /// The `[providers.NAME]` called.
    pub provider: String,
    /// The task whose attempt made the call.
    pub task_id: TaskId,
    /// That attempt.
    pub epoch: AssignmentEpoch,
    /// How it ended.
    pub status: ProviderCallStatus,
    /// Prompt tokens the provider counted (0 when it did not say).
    pub prompt_tokens: u64,
    /// Completion tokens the provider counted.
    pub completion_tokens: u64,
    /// What the response headers said about the provider's limits.
    pub hint: RateLimitHint,
    /// Time from sending the request to the end of the answer.
    pub latency_ms: u64,
}
