//! Watching the orchestrator (raft replication): the monitor that watches
//! the leader's node ([`assignment::watcher_of`](super::assignment::watcher_of))
//! pings its orchestrator with the pools' deadline and stuck rule; a stuck
//! orchestrator on a node that answers heartbeats is killed and its replica
//! made to stop leading, at the monitor's request to that node's supervisor,
//! so that another replica is elected and takes over. Off the monitor's
//! mailbox: these functions only send, and report back to the monitor.

use herd_protocol::messages::orchestrator::{OrchestratorReply, OrchestratorRequest};
use herd_protocol::messages::supervision::RestartOutcome;
use herd_protocol::{Mailbox, NodeName};
use ractor::ActorRef;
use ractor::rpc::CallResult;

use super::actor::{MonitorMsg, PingResult};
use super::probe::PING_DEADLINE;
use crate::orchestrator::OrchestratorMsg;

/// Pings the orchestrator and reports the result to the monitor.
pub(super) fn ping(
    monitor: ActorRef<MonitorMsg>,
    node: NodeName,
    pid: u64,
    orchestrator: ActorRef<OrchestratorMsg>,
) {
    tokio::spawn(async move {
        let result = match orchestrator
            .call(
                |port| Mailbox::Call(OrchestratorRequest::Ping, port),
                Some(PING_DEADLINE),
            )
            .await
        {
            Ok(CallResult::Success(OrchestratorReply::Pong)) => PingResult::Answered,
            // Any other answer came from a live mailbox.
            Ok(CallResult::Success(_)) => PingResult::Answered,
            Ok(CallResult::Timeout) => PingResult::Missed,
            Ok(CallResult::SenderError) | Err(_) => {
                if orchestrator.get_status() >= ractor::ActorStatus::Stopping {
                    PingResult::Gone
                } else {
                    PingResult::Missed
                }
            }
        };
        let _ = monitor.cast(MonitorMsg::OrchestratorPinged { node, pid, result });
    });
}

/// The intervention a step-down answer counts as, in
/// `herd_monitor_interventions_total{action}`.
pub(super) fn action_of(outcome: &Result<RestartOutcome, String>) -> &'static str {
    match outcome {
        Ok(RestartOutcome::SteppingDown) => "step_down",
        Ok(RestartOutcome::AlreadyReplaced | RestartOutcome::NoPool) => "already_replaced",
        Ok(_) | Err(_) => "report_only",
    }
}
