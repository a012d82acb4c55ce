//! What each tenant holds, and the limits that bound it.
//!
//! Per-tenant usage is derived state, like the byte counters of
//! [`super::bytes`]: it is not serialised, it is rebuilt from the records
//! when a snapshot is loaded, and every command keeps it current, so a
//! replayed journal gives the same figures.
//!
//! What the limits guarantee: a submission is refused (429) when it would
//! take its tenant past its unfinished-task count or its unfinished payload
//! bytes, so one tenant cannot fill the book for the others. Finished
//! results are not counted: they are forgotten by the book's own retention
//! when room is needed.

use std::collections::{BTreeMap, HashMap};

use herd_protocol::messages::orchestrator::SubmitRejection;
use herd_protocol::{TaskId, TaskSpec, Tenant};

use super::TaskBook;

/// The most one tenant may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantLimit {
    /// Unfinished tasks.
    pub max_unfinished: u64,
    /// Payload and result bytes of unfinished tasks.
    pub max_held_bytes: u64,
}

/// The limits of every tenant: named ones, and a default for the rest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenantLimits {
    /// For tenants not named in `by_tenant`.
    pub default: TenantLimit,
    /// Tenants with limits of their own (`[tenants.NAME]`).
    pub by_tenant: BTreeMap<Tenant, TenantLimit>,
}

impl TenantLimits {
    /// No limit beyond the book's own.
    pub fn unlimited() -> Self {
        TenantLimits {
            default: TenantLimit {
                max_unfinished: u64::MAX,
                max_held_bytes: u64::MAX,
            },
            by_tenant: BTreeMap::new(),
        }
    }

    /// The limit that applies to `tenant`.
    pub fn of(&self, tenant: &Tenant) -> TenantLimit {
        self.by_tenant.get(tenant).copied().unwrap_or(self.default)
    }

    /// The config key that sets `tenant`'s limit `field`, for messages.
    fn key(&self, tenant: &Tenant, field: &str) -> String {
        if self.by_tenant.contains_key(tenant) {
            format!("tenants.{tenant}.{field}")
        } else {
            format!("limits.tenant_{field}")
        }
    }
}

/// What one tenant holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Unfinished tasks (pending, running, failed awaiting a retry).
    pub unfinished: u64,
    /// Payload and result bytes of those tasks.
    pub held_bytes: u64,
}

/// The idempotency index's key: a key is scoped to its tenant, so two
/// tenants never see each other's tasks through the same key. The default
/// tenant's keys are stored bare, as journal format 1 stored every key.
pub(super) fn idempotency_key(tenant: &Tenant, key: &str) -> String {
    if tenant.as_str() == Tenant::DEFAULT_NAME {
        key.to_string()
    } else {
        // '\n' cannot occur in a tenant name, so scoped keys never collide.
        format!("{tenant}\n{key}")
    }
}

impl TaskBook {
    /// The limits in force.
    pub fn tenant_limits(&self) -> &TenantLimits {
        &self.settings.tenant_limits
    }

    /// What every tenant with unfinished tasks holds.
    pub fn tenant_usage(&self) -> &HashMap<Tenant, TenantUsage> {
        &self.tenant_usage
    }

    /// Recomputes per-tenant usage from the records (after loading a
    /// snapshot, which does not carry it).
    pub(super) fn recount_tenants(&mut self) {
        self.tenant_usage = self.tenant_usage_from_records();
    }

    /// Per-tenant usage computed from the records alone.
    pub(super) fn tenant_usage_from_records(&self) -> HashMap<Tenant, TenantUsage> {
        let mut usage: HashMap<Tenant, TenantUsage> = HashMap::new();
        for record in self.tasks.values().filter(|r| !r.state.is_terminal()) {
            let entry = usage.entry(record.tenant.clone()).or_default();
            entry.unfinished += 1;
            entry.held_bytes += super::bytes::record_bytes(record);
        }
        usage
    }

    /// Accounts for task `id` becoming unfinished (`true`: submitted, or a
    /// dead task retried) or finished (`false`), with the bytes it holds now.
    pub(super) fn tenant_task_counted(&mut self, id: TaskId, unfinished: bool) {
        let record = &self.tasks[&id];
        let bytes = super::bytes::record_bytes(record);
        if unfinished {
            let usage = self.tenant_usage.entry(record.tenant.clone()).or_default();
            usage.unfinished += 1;
            usage.held_bytes += bytes;
        } else if let Some(usage) = self.tenant_usage.get_mut(&record.tenant) {
            usage.unfinished -= 1;
            usage.held_bytes -= bytes;
            if usage.unfinished == 0 {
                self.tenant_usage.remove(&record.tenant);
            }
        }
    }

    /// Accounts for a change of an unfinished record's bytes.
    pub(super) fn tenant_bytes_changed(&mut self, id: TaskId, before: u64) {
        let record = &self.tasks[&id];
        let after = super::bytes::record_bytes(record);
        if let Some(usage) = self.tenant_usage.get_mut(&record.tenant) {
            usage.held_bytes = usage.held_bytes - before + after;
        }
    }

    /// Refuses a batch that would take one of its tenants past its limits;
    /// `new_tasks` are the tasks that would be added (not those answered by
    /// an existing idempotency key).
    pub(super) fn batch_fits_tenant_limits<'a>(
        &self,
        new_tasks: impl Iterator<Item = &'a TaskSpec>,
    ) -> Result<(), SubmitRejection> {
        let mut adding: BTreeMap<&Tenant, TenantUsage> = BTreeMap::new();
        for spec in new_tasks {
            let entry = adding.entry(&spec.tenant).or_default();
            entry.unfinished += 1;
            entry.held_bytes += spec.payload.len() as u64;
        }
        for (tenant, added) in adding {
            let limit = self.settings.tenant_limits.of(tenant);
            let held = self.tenant_usage.get(tenant).copied().unwrap_or_default();
            let refuse = |what: &str, field: &str, held: u64, adding: u64, limit: u64| {
                SubmitRejection::TenantOverLimit {
                    tenant: tenant.clone(),
                    what: what.to_string(),
                    key: self.settings.tenant_limits.key(tenant, field),
                    held,
                    adding,
                    limit,
                }
            };
            if held.unfinished.saturating_add(added.unfinished) > limit.max_unfinished {
                return Err(refuse(
                    "unfinished tasks",
                    "max_unfinished_tasks",
                    held.unfinished,
                    added.unfinished,
                    limit.max_unfinished,
                ));
            }
            if held.held_bytes.saturating_add(added.held_bytes) > limit.max_held_bytes {
                return Err(refuse(
                    "bytes of unfinished payloads and results",
                    "max_held_bytes",
                    held.held_bytes,
                    added.held_bytes,
                    limit.max_held_bytes,
                ));
            }
        }
        Ok(())
    }
}
