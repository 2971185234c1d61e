//! One request's budgets: what it reserves in each, the local reservations taken, the global
//! draws to send, and what it finally settles.
//!
//! Reservation is all-or-nothing: budgets are reserved one after another and, when one
//! refuses, the ones already taken are given back before the refusal is returned. A request
//! racing with a refused one may briefly see its reservation and be refused too; it can never
//! overspend.

use super::compile::{Budget, CompiledTokenBudget, Price};
use super::config::{ScopePart, Store, Unit, Window};
use super::ledger::{self, Counter, Held, Reserved};
use super::rls::Draw;
use super::tool_call::ToolCall;
use crate::host::{Host, HostError};
use crate::principal::Caller;
use crate::shared_slot;

/// Tokens a request consumed (or is estimated to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    /// Of `input`, served from the provider's prompt cache.
    pub cached_input: u64,
    pub output: u64,
}

/// A budget's amount for `usage`, in its unit (cost in micro-USD, rounded up).
pub fn amount(unit: Unit, price: Option<Price>, usage: Usage) -> u64 {
    match unit {
        Unit::InputTokens => usage.input,
        Unit::OutputTokens => usage.output,
        Unit::TotalTokens => usage.input + usage.output,
        Unit::Requests => 1,
        // Model requests are never counted in tool calls (see `Budget::applies`).
        Unit::ToolCalls => 0,
        Unit::CostUsd => {
            let Some(p) = price else { return 0 };
            let cached = usage.cached_input.min(usage.input);
            let micro = (usage.input - cached) as f64 * p.input
                + cached as f64 * p.cached_input
                + usage.output as f64 * p.output;
            micro.ceil() as u64
        }
    }
}

/// Why a request cannot be counted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("model {model:?} has no price, so budget {budget:?} cannot count it")]
    NotPriced { model: String, budget: String },
    #[error("budget {budget:?} is counted per {part}, and the request has none")]
    NoScope { budget: String, part: &'static str },
    #[error("budget {budget:?} already counts as many sessions or models of this agent as it may: reuse one")]
    TooManyCounters { budget: String },
}

/// A budget that cannot take the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub budget: usize,
    /// What the budget holds and allows, in its unit.
    pub used: u64,
    pub limit: u64,
    /// Unix seconds when the window resets (`None`: never, e.g. a session or per-request cap).
    pub reset_at: Option<u64>,
}

/// One budget's part of a reservation: taken, or the request stops here (refused, or not
/// countable) with everything taken before given back.
enum Charged {
    Taken(Charge),
    Stopped(Result<Outcome, PlanError>),
}

/// What a request's tool calls want of one counter: (budget, scope, amount).
type Wanted<'a> = (usize, Vec<(&'static str, &'a str)>, u64);

/// One budget that applies to the request, and what the request will take from it.
#[derive(Debug, Clone)]
pub struct Charge {
    pub budget: usize,
    pub reserved: u64,
    pub window_start: u64,
    pub local: Option<Held>,
    pub draw: Option<Draw>,
    /// The scope digest, for a local fallback when the service fails.
    pub digest: String,
}

/// The budgets of one request, reserved.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub model: String,
    pub price: Option<Price>,
    pub estimate: Usage,
    pub charges: Vec<Charge>,
    /// Output tokens a stream may produce before a budget is crossed (`None`: no budget limits
    /// output).
    pub output_allowance: Option<u64>,
    /// For a request that set no output cap: the cap a per-request maximum imposes (in all of
    /// its answers), which must be written into the request.
    pub request_cap: Option<u64>,
    /// Tool calls: what was reserved is what is used.
    pub fixed: bool,
}

pub enum Outcome {
    /// Every local budget is held; `plan.draws()` (maybe none) must still go to the service.
    Held(Plan),
    Refused(Refusal),
}

pub struct Planner<'a> {
    pub policy: &'a CompiledTokenBudget,
    pub host: &'a dyn Host,
    pub caller: &'a Caller,
    pub now: u64,
}

impl Planner<'_> {
    /// Reserves `estimate` for a request to `model` in every local budget that applies, and
    /// prepares the draws of the global ones.
    /// `reservation` names this reservation at the rate-limit service (each global draw gets
    /// `<reservation>.<budget index>`); `None` against a service that cannot settle.
    pub fn reserve(
        &self,
        model: &str,
        estimate: Usage,
        reservation: Option<&str>,
    ) -> Result<Result<Outcome, PlanError>, HostError> {
        let price = self.policy.model(model).price;
        let mut estimate = estimate;
        let mut request_cap = None;
        if estimate.output == 0 {
            // An uncapped request under a per-request maximum: its output is capped at what
            // the maximum leaves after the prompt, and that cap is what it reserves, so the
            // maximum holds for what is reserved, not only for the prompt.
            for (index, budget) in self.policy.budgets.iter().enumerate() {
                if budget.window != Window::Request || !budget.applies(self.caller, model) {
                    continue;
                }
                let room = budget.limit.saturating_sub(amount(budget.unit, price, estimate));
                match output_room(budget.unit, price, room) {
                    Some(0) => {
                        let refusal = Refusal { budget: index, used: 0, limit: budget.limit, reset_at: None };
                        return Ok(Ok(Outcome::Refused(refusal)));
                    }
                    tokens => request_cap = tighter(request_cap, tokens),
                }
            }
            estimate.output = request_cap.unwrap_or(0);
        }
        let mut plan = Plan { model: model.to_string(), price, estimate, request_cap, ..Plan::default() };
        for (index, budget) in self.policy.budgets.iter().enumerate() {
            if !budget.applies(self.caller, model) {
                continue;
            }
            if budget.unit == Unit::CostUsd && price.is_none() {
                self.release(&plan)?;
                return Ok(Err(PlanError::NotPriced { model: model.to_string(), budget: budget.id.clone() }));
            }
            let scope = match budget.scope_values(self.caller, model, None) {
                Ok(scope) => scope,
                Err(part) => {
                    self.release(&plan)?;
                    return Ok(Err(PlanError::NoScope { budget: budget.id.clone(), part }));
                }
            };
            let reserved = amount(budget.unit, price, estimate);
            let charge = match self.charge(&plan, index, &scope, reserved, reservation)? {
                Charged::Taken(charge) => charge,
                Charged::Stopped(stop) => return Ok(stop),
            };
            if let Some(held) = &charge.local {
                let remaining = budget.limit.saturating_sub(held.used_after);
                plan.output_allowance = tighter(plan.output_allowance, output_room(budget.unit, price, remaining));
            }
            plan.charges.push(charge);
        }
        if let Some(allowance) = plan.output_allowance.as_mut() {
            // The request's own reserved output is part of what it may stream.
            *allowance = allowance.saturating_add(estimate.output);
        }
        Ok(Ok(Outcome::Held(plan)))
    }

    /// Reserves one request's MCP tool calls in every budget that counts them: one per call in
    /// a `toolCalls` budget, the tool's price in a `costUsd` one. Calls of one request that fall
    /// in the same counter are reserved together, all or nothing like a model request. A tool
    /// call is final once reserved (nothing is metered after it), so the plan settles at what
    /// it reserved.
    pub fn reserve_calls(
        &self,
        calls: &[ToolCall],
        reservation: Option<&str>,
    ) -> Result<Result<Outcome, PlanError>, HostError> {
        // One entry per counter.
        let mut wanted: Vec<Wanted> = Vec::new();
        for (index, budget) in self.policy.budgets.iter().enumerate() {
            for call in calls.iter().filter(|c| budget.applies_to_call(self.caller, c)) {
                let amount = match budget.unit {
                    Unit::CostUsd => self.policy.tool_price(call),
                    _ => 1,
                };
                if amount == 0 {
                    continue;
                }
                let scope = match budget.scope_values(self.caller, "", Some(call)) {
                    Ok(scope) => scope,
                    Err(part) => return Ok(Err(PlanError::NoScope { budget: budget.id.clone(), part })),
                };
                match wanted.iter_mut().find(|(i, s, _)| *i == index && *s == scope) {
                    Some(entry) => entry.2 += amount,
                    None => wanted.push((index, scope, amount)),
                }
            }
        }
        let mut plan = Plan { fixed: true, ..Plan::default() };
        for (index, scope, reserved) in wanted {
            match self.charge(&plan, index, &scope, reserved, reservation)? {
                Charged::Taken(charge) => plan.charges.push(charge),
                Charged::Stopped(stop) => return Ok(stop),
            }
        }
        Ok(Ok(Outcome::Held(plan)))
    }

    /// Takes `reserved` from budget `index` for `scope`: checked against a per-request maximum,
    /// held in the local counter, or prepared as a draw at the rate-limit service. When it
    /// cannot be taken, everything `plan` holds is given back first.
    fn charge(
        &self,
        plan: &Plan,
        index: usize,
        scope: &[(&'static str, &str)],
        reserved: u64,
        reservation: Option<&str>,
    ) -> Result<Charged, HostError> {
        let budget = &self.policy.budgets[index];
        let values: Vec<&str> = scope.iter().map(|(_, v)| *v).collect();
        let digest = shared_slot::digest(&values);
        let window_start = budget.window.span(self.now).start;
        let mut charge =
            Charge { budget: index, reserved, window_start, local: None, draw: None, digest: digest.clone() };
        let refused =
            |used, reset_at| Ok(Outcome::Refused(Refusal { budget: index, used, limit: budget.limit, reset_at }));
        let stop = match (budget.window, budget.store) {
            (Window::Request, _) if reserved > budget.limit => refused(0, None),
            (Window::Request, _) => return Ok(Charged::Taken(charge)),
            (_, Store::Local) => match self.counter(index, budget, digest).reserve(self.host, reserved, self.now)? {
                Reserved::Held(held) => {
                    charge.local = Some(held);
                    return Ok(Charged::Taken(charge));
                }
                Reserved::Refused { used, reset_at } => {
                    refused(used, (budget.window != Window::Session).then_some(reset_at))
                }
                Reserved::TooManyCounters => Err(PlanError::TooManyCounters { budget: budget.id.clone() }),
            },
            (_, Store::Global) => {
                let id = reservation.map(|r| format!("{r}.{index}"));
                charge.draw = Some(Draw::new(index, budget, scope, reserved, id));
                return Ok(Charged::Taken(charge));
            }
        };
        self.release(plan)?;
        Ok(Charged::Stopped(stop))
    }

    /// A budget's local counter for `digest` in the current window.
    pub fn counter<'b>(&self, index: usize, budget: &'b Budget, digest: String) -> Counter<'b> {
        // Sessions, model and tool names are the client's to choose: such counters are kept, and
        // capped, per verified agent, but only where a counter belongs to one agent (a session
        // is bound to its agent; or the scope names the agent). A `[tenant, model]` counter is
        // shared by the tenant's agents, so it must be found by its scope alone, not by who asks.
        let has = |part: ScopePart| budget.scope.contains(&part);
        let multiplied =
            has(ScopePart::Session) || (has(ScopePart::Agent) && (has(ScopePart::Model) || has(ScopePart::Tool)));
        let owner = multiplied.then(|| shared_slot::digest(&["owner", self.caller.agent.as_deref().unwrap_or("")]));
        Counter {
            budget,
            index,
            digest,
            span: budget.window.span(self.now),
            slots: self.policy.slots,
            session_idle: self.policy.session_idle.as_secs(),
            owner,
        }
    }

    /// Gives back every local reservation of `plan` (a refused or failed request used nothing).
    pub fn release(&self, plan: &Plan) -> Result<(), HostError> {
        self.release_all(plan)
    }

    /// Gives back every local reservation of `plan` (a refused or failed request used nothing).
    pub fn release_all(&self, plan: &Plan) -> Result<(), HostError> {
        for charge in &plan.charges {
            if let Some(held) = &charge.local {
                ledger::settle(self.host, held, 0, self.policy.budgets[charge.budget].window.span(self.now), self.now)?;
            }
        }
        Ok(())
    }

    /// Replaces every local reservation of `plan` with what `usage` amounts to (a plan of tool
    /// calls stays at what it reserved).
    pub fn settle_local(&self, plan: &Plan, usage: Usage) -> Result<(), HostError> {
        for charge in &plan.charges {
            if let Some(held) = &charge.local {
                let budget = &self.policy.budgets[charge.budget];
                let actual = if plan.fixed { charge.reserved } else { amount(budget.unit, plan.price, usage) };
                ledger::settle(self.host, held, actual, budget.window.span(self.now), self.now)?;
            }
        }
        Ok(())
    }
}

impl Plan {
    pub fn draws(&self) -> Vec<Draw> {
        self.charges.iter().filter_map(|c| c.draw.clone()).collect()
    }

    /// Tokens reserved: the prompt estimate plus the output cap (for the access log).
    pub fn reserved_tokens(&self) -> u64 {
        self.estimate.input + self.estimate.output
    }
}

fn tighter(current: Option<u64>, new: Option<u64>) -> Option<u64> {
    match (current, new) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How many more output tokens `remaining` (in the budget's unit) pays for.
pub fn output_room(unit: Unit, price: Option<Price>, remaining: u64) -> Option<u64> {
    match unit {
        Unit::OutputTokens | Unit::TotalTokens => Some(remaining),
        Unit::CostUsd => price.filter(|p| p.output > 0.0).map(|p| (remaining as f64 / p.output).floor() as u64),
        Unit::InputTokens | Unit::Requests | Unit::ToolCalls => None,
    }
}
