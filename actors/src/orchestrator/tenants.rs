//! Per-tenant figures for admins: the `tenants` of `GET /v1/cluster` and
//! the `herd_tenant_*` gauges.

use std::collections::{BTreeMap, BTreeSet};

use herd_protocol::Tenant;
use herd_protocol::messages::orchestrator::TenantStatus;

use crate::task_book::TaskBook;

/// Every tenant with unfinished tasks, by name, with its limits.
pub fn tenant_statuses(book: &TaskBook) -> Vec<TenantStatus> {
    let mut pending: BTreeMap<&Tenant, u64> = BTreeMap::new();
    for agent_type in book.agent_types() {
        for (tenant, waiting) in book.queue_depth_by_tenant(agent_type) {
            *pending.entry(tenant).or_default() += waiting as u64;
        }
    }
    let mut statuses: Vec<TenantStatus> = book
        .tenant_usage()
        .iter()
        .map(|(tenant, usage)| {
            let limit = book.tenant_limits().of(tenant);
            TenantStatus {
                tenant: tenant.clone(),
                unfinished: usage.unfinished,
                pending: pending.get(tenant).copied().unwrap_or(0),
                held_bytes: usage.held_bytes,
                max_unfinished: (limit.max_unfinished != u64::MAX).then_some(limit.max_unfinished),
                max_held_bytes: (limit.max_held_bytes != u64::MAX).then_some(limit.max_held_bytes),
            }
        })
        .collect();
    statuses.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    statuses
}

/// Sets `herd_tenant_unfinished_tasks` and `herd_tenant_held_bytes` for
/// every tenant with unfinished tasks, and zeroes those of tenants that had
/// some at the last call (`exported`), so a drained tenant reads 0 rather
/// than its last value.
pub fn publish_tenant_gauges(book: &TaskBook, exported: &mut BTreeSet<Tenant>) {
    let mut now_exported = BTreeSet::new();
    for (tenant, usage) in book.tenant_usage() {
        let label = tenant.to_string();
        metrics::gauge!("herd_tenant_unfinished_tasks", "tenant" => label.clone())
            .set(usage.unfinished as f64);
        metrics::gauge!("herd_tenant_held_bytes", "tenant" => label).set(usage.held_bytes as f64);
        now_exported.insert(tenant.clone());
    }
    for gone in exported.difference(&now_exported) {
        let label = gone.to_string();
        metrics::gauge!("herd_tenant_unfinished_tasks", "tenant" => label.clone()).set(0.0);
        metrics::gauge!("herd_tenant_held_bytes", "tenant" => label).set(0.0);
    }
    *exported = now_exported;
}
