//! Every metric herd records, with its help text and unit, in one place so
//! `/metrics` documents itself and a dashboard author can look them up.
//!
//! Labels: `agent_type`, `state`, `outcome`, `reason`, `decision_type`,
//! `route`, `method`, `status`, `provider`, `kind`, `action`,
//! `component`, `cause` as noted; the exporter
//! adds `node` to all.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Registers the descriptions with the installed recorder, and the unlabelled
/// series at zero. Call once after installing it (a no-op without one).
pub fn describe() {
    // Tasks.
    describe_counter!(
        "herd_tasks_submitted_total",
        "Tasks accepted by the orchestrator, by agent_type."
    );
    describe_counter!(
        "herd_tasks_finished_total",
        "Task state changes by agent_type and state (succeeded, failed = retry scheduled, dead, cancelled)."
    );
    describe_counter!(
        "herd_tasks_requeued_total",
        "Attempts put back in the queue, by reason (node_lost, handed_back, retry, dead_letter_retry)."
    );
    describe_histogram!(
        "herd_task_run_seconds",
        Unit::Seconds,
        "Handler run time of each attempt, by agent_type and outcome."
    );
    describe_histogram!(
        "herd_task_queue_wait_seconds",
        Unit::Seconds,
        "Time from submission (or retry due) to the start of an attempt, by agent_type."
    );
    describe_gauge!(
        "herd_pending_tasks",
        "Tasks waiting for a worker (the HPA metric)."
    );
    describe_gauge!(
        "herd_task_book_bytes",
        Unit::Bytes,
        "Payload and result bytes the orchestrator's task book holds (bounded by limits.max_held_bytes)."
    );
    describe_counter!(
        "herd_api_auth_failures_total",
        "API requests with a bearer token the cluster does not accept."
    );
    describe_gauge!(
        "herd_tenant_unfinished_tasks",
        "Unfinished tasks of each tenant (bounded by limits.tenant_max_unfinished_tasks)."
    );
    describe_gauge!(
        "herd_tenant_held_bytes",
        Unit::Bytes,
        "Payload and result bytes of each tenant's unfinished tasks (bounded by limits.tenant_max_held_bytes)."
    );
    describe_gauge!(
        "herd_queue_depth",
        "Tasks waiting for a worker or a retry, by agent_type."
    );
    describe_counter!(
        "herd_duplicate_results_total",
        "Results of superseded attempts that were fenced off."
    );
    describe_counter!(
        "herd_worker_tasks_total",
        "Attempts run by this node's workers, by agent_type and outcome."
    );
    // Workers and scaling.
    describe_gauge!(
        "herd_pool_workers",
        "This node's worker slots by state (busy, idle)."
    );
    describe_gauge!(
        "herd_pool_slots",
        "Worker slots this node runs (after autoscaling)."
    );
    describe_gauge!(
        "herd_worker_slots",
        "Worker slots in the cluster on nodes that take work."
    );
    describe_gauge!(
        "herd_agent_slots",
        "Worker slots allotted to each agent_type across the cluster."
    );
    describe_gauge!(
        "herd_agent_busy",
        "Worker slots running a task of each agent_type."
    );
    describe_gauge!(
        "herd_agent_weight",
        "Current weight (share of the slots) of each agent_type."
    );
    describe_gauge!(
        "herd_slot_credit",
        "Attempts a pool may hold per worker slot of each agent_type (one runs, the rest wait in its backlog): between scaling.slot_credit and scaling.max_slot_credit, following commit latency and run time."
    );
    describe_counter!(
        "herd_scaling_decisions_total",
        "Scaling decisions by decision_type (scale_up, scale_down, rebalance, maintain)."
    );
    describe_counter!(
        "herd_worker_restarts_total",
        "Workers replaced after a crash, a stuck handler or a cancellation."
    );
    describe_counter!(
        "herd_monitor_interventions_total",
        "What this node's monitor did about a stuck pool it watches, by action: restart_pool (its node's supervisor restarts it), report_only (the supervisor refused, over its restart intensity, or could not be reached), already_replaced (the pool was replaced before the request arrived)."
    );
    describe_gauge!(
        "herd_monitor_watched_actors",
        "Pool actors this node's monitor watches (pings) now."
    );
    describe_counter!(
        "herd_component_restarts_total",
        "Components this node's supervisor restarted, by component (pool, orchestrator, monitor) and cause (failed, monitor_request)."
    );
    describe_histogram!(
        "herd_worker_replacement_seconds",
        Unit::Seconds,
        "Time from a worker's death to its replacement taking a task."
    );
    describe_gauge!(
        "herd_circuit_open",
        "1 while the agent_type's circuit breaker is open or half-open."
    );
    describe_counter!(
        "herd_circuit_transitions_total",
        "Circuit breaker state changes, by agent_type and state."
    );
    // Cluster.
    describe_gauge!(
        "herd_cluster_nodes",
        "Nodes this node knows, by state (up, suspect, down, left)."
    );
    describe_histogram!(
        "herd_heartbeat_rtt_seconds",
        Unit::Seconds,
        "Round-trip time of membership heartbeats to the peers this node watches."
    );
    describe_counter!(
        "herd_unreachable_reports_total",
        "Peers this node watches that its failure detector found unreachable and reported to the cluster (two watchers' reports declare a peer down)."
    );
    describe_histogram!(
        "herd_failover_detect_seconds",
        Unit::Seconds,
        "Silence before a peer was declared down."
    );
    describe_histogram!(
        "herd_failover_requeue_seconds",
        Unit::Seconds,
        "Time from a node being declared down or leaving to its tasks being re-queued."
    );
    describe_counter!(
        "herd_rejoins_total",
        "Peers that came back under a new incarnation."
    );
    describe_counter!(
        "herd_cluster_handshake_failures_total",
        "Cluster connections refused (wrong cookie, version, name clash, ...)."
    );
    describe_counter!(
        "herd_cluster_tls_refusals_total",
        "Inbound cluster connections refused by cluster TLS, by reason (plaintext, handshake)."
    );
    describe_counter!(
        "herd_undecodable_frames_total",
        "Cluster frames that did not decode, by protocol."
    );
    describe_counter!(
        "herd_replica_rpcs_refused_total",
        "Raft RPCs a task book replica refused because it was already serving its maximum at once."
    );
    // LLM providers (recorded on the node that made the call).
    describe_counter!(
        "herd_llm_requests_total",
        "Calls to LLM providers by provider and status (ok, rate_limited, unavailable, auth_rejected, rejected)."
    );
    describe_counter!(
        "herd_llm_tokens_total",
        "Tokens LLM providers counted, by provider and kind (prompt, completion)."
    );
    describe_histogram!(
        "herd_llm_request_duration_seconds",
        Unit::Seconds,
        "Time from sending a request to an LLM provider to the end of its answer, by provider."
    );
    describe_counter!(
        "herd_llm_feedback_dropped_total",
        "Provider-call reports dropped because the queue to the orchestrator was full, or no orchestrator was reachable."
    );
    describe_gauge!(
        "herd_llm_budget_in_use_ratio",
        "Largest share of an LLM provider's cluster-wide limits in use (requests, tokens per minute, calls in flight; 1 while it is paused), by provider (orchestrator)."
    );
    describe_gauge!(
        "herd_llm_calls_in_flight",
        "LLM provider calls granted and not yet ended, cluster-wide, by provider (orchestrator)."
    );
    describe_gauge!(
        "herd_llm_requests_last_minute",
        "LLM provider calls started in the budget window (a minute and a second), cluster-wide, by provider (orchestrator)."
    );
    describe_gauge!(
        "herd_llm_tokens_last_minute",
        "Tokens used in the budget window (estimates for calls not yet ended), cluster-wide, by provider (orchestrator)."
    );
    describe_counter!(
        "herd_llm_fallbacks_total",
        "LLM calls granted to a provider other than the agent type's first choice or the one that failed the task's last attempt, by provider they went to (orchestrator)."
    );
    describe_counter!(
        "herd_llm_provider_circuit_transitions_total",
        "LLM provider circuit breaker transitions, by provider and new state (orchestrator)."
    );
    // Journal.
    describe_histogram!(
        "herd_journal_commit_seconds",
        Unit::Seconds,
        "Duration of each journal group commit."
    );
    describe_counter!(
        "herd_journal_entries_total",
        "Commands written to the orchestrator's journal."
    );
    describe_gauge!(
        "herd_journal_snapshot_bytes",
        Unit::Bytes,
        "Size of the latest journal snapshot."
    );
    // Raft replication.
    describe_histogram!(
        "herd_raft_commit_seconds",
        Unit::Seconds,
        "Time from proposing a log entry of the leader's orchestrator to its commit on a quorum and apply here."
    );
    describe_counter!(
        "herd_raft_entries_total",
        "Commands the leader's orchestrator committed to the replicated log."
    );
    describe_counter!(
        "herd_leader_changes_total",
        "Times this replica saw the task book's group get a new leader."
    );
    describe_gauge!(
        "herd_raft_term",
        "The current Raft term of this node's replica."
    );
    describe_gauge!(
        "herd_raft_log_entries",
        "Entries in this replica's Raft log (not yet compacted into a snapshot)."
    );
    describe_gauge!(
        "herd_raft_applied_index",
        "The last log index this replica applied to its task book."
    );
    describe_gauge!(
        "herd_raft_leader",
        "1 while this node's replica is the leader of the task book's group, else 0."
    );
    describe_counter!(
        "herd_replica_rpcs_refused_total",
        "Raft RPCs this replica's endpoint refused because it was serving its limit at once."
    );
    // API.
    describe_counter!(
        "herd_api_requests_total",
        "HTTP API requests by route, method and status."
    );
    describe_histogram!(
        "herd_api_request_seconds",
        Unit::Seconds,
        "HTTP API request duration by route and method."
    );

    // Series without labels exist from the start (at zero), so rates and
    // alerts work before the first event.
    for counter in [
        "herd_worker_restarts_total",
        "herd_duplicate_results_total",
        "herd_rejoins_total",
        "herd_unreachable_reports_total",
        "herd_cluster_handshake_failures_total",
        "herd_llm_feedback_dropped_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
    for action in ["restart_pool", "report_only", "already_replaced"] {
        metrics::counter!("herd_monitor_interventions_total", "action" => action).increment(0);
    }
    for histogram in [
        "herd_failover_detect_seconds",
        "herd_failover_requeue_seconds",
        "herd_worker_replacement_seconds",
    ] {
        let _ = metrics::histogram!(histogram);
    }
}
