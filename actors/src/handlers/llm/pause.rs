//! Node-local "do not call before" marks per provider.
//!
//! When a provider answers 429 with a retry delay, or says it has no
//! requests left until a reset, calls this node already holds grants for
//! would only be refused too. The orchestrator pauses the provider
//! cluster-wide for new grants; this covers the calls granted before it
//! heard. A mark only ever moves later; an expired one is harmless.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// Per provider, the instant before which calls wait.
#[derive(Debug, Default)]
pub(super) struct ProviderPauses {
    until: DashMap<String, Instant>,
}

/// What a call should do about a pause.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PauseVerdict {
    /// Not paused (any more): call now.
    Go,
    /// Paused past the attempt's deadline: this long remains.
    TooLong(Duration),
}

/// One set of marks per process, which runs one node: every `llm` agent
/// type of the node sees the pauses of the providers it shares.
static NODE_PAUSES: LazyLock<Arc<ProviderPauses>> = LazyLock::new(Arc::default);

impl ProviderPauses {
    /// The marks shared by every `llm` handler of this node.
    pub(super) fn node_wide() -> Arc<ProviderPauses> {
        NODE_PAUSES.clone()
    }

    /// No call to `provider` before `until` (unless a later mark exists).
    pub(super) fn pause_until(&self, provider: &str, until: Instant) {
        self.until
            .entry(provider.to_string())
            .and_modify(|current| *current = (*current).max(until))
            .or_insert(until);
    }

    /// Waits out `provider`'s pause if it ends by `deadline`; otherwise
    /// returns at once with the time that remains.
    pub(super) async fn wait(&self, provider: &str, deadline: Instant) -> PauseVerdict {
        // Copy the instant out: never hold a map guard across an await.
        let Some(until) = self.until.get(provider).map(|entry| *entry) else {
            return PauseVerdict::Go;
        };
        let now = Instant::now();
        if until <= now {
            return PauseVerdict::Go;
        }
        if until >= deadline {
            return PauseVerdict::TooLong(until - now);
        }
        tokio::time::sleep_until(until).await;
        PauseVerdict::Go
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_that_fits_is_waited_out_one_that_does_not_is_refused() {
        let pauses = ProviderPauses::default();
        let start = Instant::now();
        assert_eq!(
            pauses.wait("p", start + Duration::from_secs(1)).await,
            PauseVerdict::Go
        );

        pauses.pause_until("p", start + Duration::from_secs(2));
        // An earlier mark does not shorten the pause.
        pauses.pause_until("p", start + Duration::from_secs(1));
        assert_eq!(
            pauses.wait("p", start + Duration::from_secs(1)).await,
            PauseVerdict::TooLong(Duration::from_secs(2))
        );
        assert_eq!(Instant::now(), start, "a refused wait returns at once");

        assert_eq!(
            pauses.wait("p", start + Duration::from_secs(10)).await,
            PauseVerdict::Go
        );
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
        // Other providers are not affected.
        assert_eq!(pauses.wait("q", start).await, PauseVerdict::Go);
    }
}
