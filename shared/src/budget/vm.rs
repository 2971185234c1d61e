//! What every request of one VM (one Envoy worker) shares: the compiled policy, the tokenizers
//! (built once, so no request pays for them), the queue of settle calls for the rate-limit
//! service, and the ids of reservations.
//!
//! Settle calls are sent by the root context on its tick, never from a request: a call sent
//! from a request's context would be cancelled with the request.

use super::compile::CompiledTokenBudget;
use super::metrics;
use super::rls;
use super::tokenizer::Tokenizers;
use crate::glob::Glob;
use crate::host::Host;
use crate::metric_labels::LabelSets;
use crate::policy::PolicyDocument;
use crate::tool_acl::compile::CompiledToolAcl;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Settle calls kept when the service is down; older ones are dropped (and counted).
const MAX_QUEUED_SETTLES: usize = 4096;
/// Settle calls are not on any request's path: they may wait longer than reservations.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a settle call is sent before it is given up (each answered with an error):
/// with the back-off below, for about 12 s, long enough for a Redis replica to take over.
pub const SETTLE_TRIES: u32 = 8;
/// The wait before a failed settle call is sent again doubles from this, up to 5 s.
const SETTLE_BACKOFF: Duration = Duration::from_millis(100);

/// A settle call waiting to be sent: the message, the tries so far, and when it may go.
struct Queued {
    message: Vec<u8>,
    tries: u32,
    not_before: std::time::SystemTime,
}

/// Per-tenant metric label sets a VM defines (per pool) before counting the rest as `other`.
pub const MAX_LABEL_SETS: usize = 256;

pub struct BudgetVm {
    pub policy: CompiledTokenBudget,
    /// When budgets count tool calls: the document's tool-acl section, whose servers tell which
    /// requests are MCP (the ones whose calls tool-acl records for this filter).
    pub mcp: Option<CompiledToolAcl>,
    pub tokenizers: Tokenizers,
    /// Request headers are held until the request is reserved (`requestHeaders: hold`).
    pub hold: bool,
    /// How the audit record is stored (`auditFormat`).
    pub audit_format: crate::policy::AuditFormat,
    settles: RefCell<VecDeque<Queued>>,
    /// Settle calls sent and not yet answered, by call token, with the tries so far: a call the
    /// service could not carry out (its Redis failing over, say) is queued again. Settles are
    /// idempotent (each reservation is settled once), so a retry never gives back twice.
    in_flight: RefCell<HashMap<u32, Queued>>,
    /// The label sets this VM has given its per-tenant usage metrics, and its headroom gauges:
    /// two pools, so neither can crowd out the other.
    pub usage_labels: LabelSets,
    pub headroom_labels: LabelSets,
    /// Random per VM, so reservation ids never meet across VMs and gateways; `reservations`
    /// counts within it.
    seed: u64,
    reservations: Cell<u64>,
}

impl BudgetVm {
    /// Compiles the document's `tokenBudget` section and builds the tokenizers it needs.
    pub fn configure(document: &PolicyDocument, seed: u64) -> Result<BudgetVm, String> {
        let section = document.token_budget.as_ref().ok_or("tokenBudget: the policy has no tokenBudget section")?;
        let mut policy = CompiledTokenBudget::compile(section).map_err(|e| e.to_string())?;
        if let Some(router) = &document.router {
            // Prices per provider name the router's providers; aliases are priced by their targets.
            let known = |name: &str| router.providers.iter().any(|p| p.name == name);
            if let Some((i, m)) =
                section.models.iter().enumerate().find(|(_, m)| m.provider.as_deref().is_some_and(|p| !known(p)))
            {
                return Err(format!(
                    "tokenBudget.models[{i}].provider: the router has no provider named {:?}",
                    m.provider.as_deref().unwrap_or_default()
                ));
            }
            policy.routes = router
                .models
                .iter()
                .map(|m| (m.alias.clone(), m.targets.iter().map(|t| (t.provider.clone(), t.model.clone())).collect()))
                .collect();
        } else if let Some(i) = section.models.iter().position(|m| m.provider.is_some()) {
            return Err(format!("tokenBudget.models[{i}].provider: the policy has no router section"));
        }
        // tool-acl counts its call limits in the same shared data under these ids.
        use crate::tool_acl::compile::{CALLS_BUDGET, WRITES_BUDGET};
        if let Some(i) = section.budgets.iter().position(|b| b.id == CALLS_BUDGET || b.id == WRITES_BUDGET) {
            return Err(format!(
                "tokenBudget.budgets[{i}].id: {:?} is tool-acl's own (its call limits)",
                section.budgets[i].id
            ));
        }
        let mcp = if section.counts_tool_calls() {
            // The calls are read by tool-acl, which must be in the document (and in the chain,
            // before this filter: an MCP request it did not record is refused here).
            let Some(acl) = &document.tool_acl else {
                return Err("tokenBudget: budgets that count tool calls need the toolAcl section (tool-acl reads the \
                            calls, token-budget counts them)"
                    .into());
            };
            let servers: Vec<&str> = acl.servers.iter().map(|s| s.name.as_str()).collect();
            for (i, budget) in section.budgets.iter().enumerate() {
                if let Some(name) =
                    budget.when.servers.iter().find(|n| !servers.iter().any(|s| Glob::new(n).matches(s)))
                {
                    return Err(format!("tokenBudget.budgets[{i}].when.servers: no toolAcl server is named {name:?}"));
                }
            }
            if let Some((i, name)) = section
                .tools
                .iter()
                .enumerate()
                .find_map(|(i, t)| t.server.as_ref().filter(|n| !servers.contains(&n.as_str())).map(|n| (i, n)))
            {
                return Err(format!("tokenBudget.tools[{i}].server: no toolAcl server is named {name:?}"));
            }
            Some(CompiledToolAcl::compile(acl).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(BudgetVm {
            policy,
            mcp,
            // Built on first exact count (see `tokenizer`), not here.
            tokenizers: Tokenizers::default(),
            hold: document.request_headers.held(),
            audit_format: document.audit_format,
            settles: RefCell::new(VecDeque::new()),
            in_flight: RefCell::new(HashMap::new()),
            usage_labels: LabelSets::new(MAX_LABEL_SETS),
            headroom_labels: LabelSets::new(MAX_LABEL_SETS),
            seed,
            reservations: Cell::new(0),
        })
    }

    /// A new reservation id for the rate-limit service: `<VM seed>-<counter>`.
    pub fn next_reservation(&self) -> String {
        let n = self.reservations.get().wrapping_add(1);
        self.reservations.set(n);
        format!("{:016x}-{n:x}", self.seed)
    }

    /// Queues a settle call for the root to send on its next tick.
    pub fn queue_settle(&self, host: &dyn Host, message: Vec<u8>) {
        let mut queue = self.settles.borrow_mut();
        if queue.len() >= MAX_QUEUED_SETTLES {
            queue.pop_front();
            let _ = host.increment(metrics::RLS_ERRORS, 1);
        }
        queue.push_back(Queued { message, tries: 0, not_before: std::time::UNIX_EPOCH });
    }

    /// Settle calls waiting to be sent.
    pub fn queued_settles(&self) -> usize {
        self.settles.borrow().len()
    }

    /// Sends the queued settle calls (from the root context); stops at the first that cannot be
    /// sent, keeping it for the next tick. Returns why, if one could not be sent.
    pub fn send_settles(&self, host: &dyn Host) -> Option<String> {
        let service = self.policy.rate_limit_service.as_ref()?;
        let now = host.now();
        let queue = std::mem::take(&mut *self.settles.borrow_mut());
        let mut kept = VecDeque::new();
        let mut failed = None;
        for queued in queue {
            // A retry not yet due, or anything after a call that could not be sent, waits.
            if failed.is_some() || queued.not_before > now {
                kept.push_back(queued);
                continue;
            }
            match host.grpc_call(&service.cluster, rls::SERVICE, rls::METHOD, &queued.message, SETTLE_TIMEOUT) {
                Ok(token) => {
                    self.in_flight.borrow_mut().insert(token, Queued { tries: queued.tries + 1, ..queued });
                }
                Err(e) => {
                    let _ = host.increment(metrics::RLS_ERRORS, 1);
                    failed = Some(format!("cannot send a settle call: {e}"));
                    kept.push_back(queued);
                }
            }
        }
        // Settles queued meanwhile (none: this runs on the root's tick) go after those kept.
        let mut settles = self.settles.borrow_mut();
        kept.append(&mut settles);
        *settles = kept;
        failed
    }

    /// A settle call was answered with gRPC `status`: counted, and queued again when it failed
    /// and has tries left.
    pub fn settle_answered(&self, host: &dyn Host, token: u32, status: u32) {
        let metric = if status == 0 { metrics::RLS_SETTLES } else { metrics::RLS_ERRORS };
        let _ = host.increment(metric, 1);
        let Some(queued) = self.in_flight.borrow_mut().remove(&token) else { return };
        if status != 0 && queued.tries < SETTLE_TRIES {
            let wait = SETTLE_BACKOFF.saturating_mul(1 << queued.tries.min(6)).min(Duration::from_secs(5));
            self.settles.borrow_mut().push_back(Queued { not_before: host.now() + wait, ..queued });
        }
    }
}
