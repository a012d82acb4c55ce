//! Helpers shared by the multi-process tests.

use std::future::Future;
use std::time::{Duration, Instant};

pub use herd_node::api_client::{ApiClient, ApiClientError};
pub use herd_node::local_cluster::{LocalCluster, NodeSpec};

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
/// Tests await observable effects this way instead of sleeping.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A three-node cluster (n1 orchestrator; all workers), ready.
pub async fn three_node_cluster(workers: u32) -> LocalCluster {
    LocalCluster::start(NodeSpec::three_nodes(workers), Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("cluster did not start: {error}"))
}
