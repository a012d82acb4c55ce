//! Carries this node's finished LLM provider calls to the orchestrator, which
//! settles them against the providers' cluster-wide budgets.

use herd_protocol::messages::orchestrator::OrchestratorCast;
use herd_protocol::messages::provider::ProviderCall;
use herd_protocol::{Mailbox, MemberId};
use tokio::sync::{mpsc, watch};

use crate::membership::ClusterView;
use crate::orchestrator::find_orchestrator;

/// Calls buffered between the handlers and the orchestrator; beyond this the
/// handlers drop reports (counted) rather than wait.
pub(super) const PROVIDER_CALL_BUFFER: usize = 4_096;

/// Most calls in one message, so a frame stays far below the cluster limit
/// (a call is about a hundred bytes).
const MAX_CALLS_PER_MESSAGE: usize = 512;

/// Forwards `calls` to whichever node runs the orchestrator, in batches of
/// what has arrived since the last send. Ends when every handler is gone.
pub(super) fn forward_provider_calls(
    mut calls: mpsc::Receiver<ProviderCall>,
    member: MemberId,
    view: watch::Receiver<ClusterView>,
) {
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(call) = calls.recv().await {
            batch.push(call);
            while batch.len() < MAX_CALLS_PER_MESSAGE {
                match calls.try_recv() {
                    Ok(call) => batch.push(call),
                    Err(_) => break,
                }
            }
            let count = batch.len() as u64;
            let message = Mailbox::Cast(OrchestratorCast::ProviderCalls {
                member: member.clone(),
                calls: std::mem::take(&mut batch),
            });
            let orchestrator = find_orchestrator(&view.borrow());
            if orchestrator.is_none_or(|orchestrator| orchestrator.cast(message).is_err()) {
                // Without an orchestrator there is no budget to settle; the
                // next one starts its windows afresh.
                metrics::counter!("herd_llm_feedback_dropped_total").increment(count);
            }
        }
    });
}
