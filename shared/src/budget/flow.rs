//! One model request's flow, callback by callback: hold it until its prompt is counted and
//! reserved (locally, and at the rate-limit service for global budgets), forward it (rewritten
//! when a cap, a usage request or a fallback model must be written into it), then meter the
//! answer and settle. Each callback returns what the proxy does next; the filter's glue only
//! passes the callbacks in.

use super::admission::{admit, Admission};
use super::config::BudgetFailureMode;
use super::meter::Meter;
use super::plan::{Outcome, Plan, PlanError, Planner, Refusal, Usage};
use super::reply::{self, Reply};
use super::request::{Edits, ModelRequest, RequestError};
use super::tool_call::ToolCalls;
use super::vm::BudgetVm;
use super::{ledger, metrics, rls};
use crate::attributes;
use crate::audit::{Record, Section};
use crate::decision::{Decision, Mode, FAILURE_MODE_RULE};
use crate::encoding::{ACCEPT_ENCODING, IDENTITY};
use crate::host::{Action, Host, HostError};
use crate::model_api::Api;
use crate::principal::Caller;
use log::{error, warn};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

enum Stage {
    /// Not a model request, or already answered: nothing to do.
    Pass,
    /// Waiting for the whole body.
    Reading,
    /// A reservation is out at the rate-limit service.
    Reserving { token: u32 },
    /// Forwarded; the answer is metered and settled.
    Forwarded,
}

pub struct BudgetFlow {
    host: Rc<dyn Host>,
    vm: Option<Rc<BudgetVm>>,
    api: Option<Api>,
    stage: Stage,
    request_id: String,
    caller: Caller,
    body: Vec<u8>,
    requested_model: String,
    /// Prompt tokens of the requested model, and the output cap reserved.
    estimate: Usage,
    edits: Edits,
    fallback_tried: bool,
    /// The model and estimate being reserved, and whether its prompt was counted exactly (it
    /// is first reserved at an upper bound that needs no tokenizer).
    reserving: (String, Usage),
    exact: bool,
    /// Answers the request asks for (`n`).
    choices: u64,
    plan: Option<Plan>,
    meter: Option<Meter>,
    settled: bool,
    /// Request body bytes buffered so far: a request that ends in trailers is decided on them.
    request_size: usize,
    /// The request came with a `content-length`, which a rewritten body must keep right.
    has_length: bool,
    /// What this filter decided and learned, for the access log.
    record: Record,
    /// An MCP request to a server tool-acl governs, on a VM whose budgets count tool calls.
    mcp: bool,
    /// Its tool calls, as tool-acl recorded them (once read).
    calls: Option<ToolCalls>,
}

fn unix_now(host: &dyn Host) -> u64 {
    host.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl BudgetFlow {
    pub fn new(host: Rc<dyn Host>, vm: Option<Rc<BudgetVm>>) -> Self {
        BudgetFlow {
            host,
            vm,
            api: None,
            stage: Stage::Pass,
            request_id: String::new(),
            caller: Caller::default(),
            body: Vec::new(),
            requested_model: String::new(),
            estimate: Usage::default(),
            edits: Edits::default(),
            fallback_tried: false,
            reserving: (String::new(), Usage::default()),
            exact: false,
            choices: 1,
            plan: None,
            meter: None,
            settled: false,
            request_size: 0,
            has_length: false,
            record: Record::new(),
            mcp: false,
            calls: None,
        }
    }

    fn send(&mut self, reply: &Reply) -> Action {
        self.stage = Stage::Pass;
        let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Err(e) = self.host.send_local_reply(reply.status, &headers, reply.body.as_bytes()) {
            error!("warden token-budget: cannot send the reply: {e}");
        }
        Action::Pause
    }

    fn error(&mut self, status: u32, message: &str, kind: &str, code: &'static str, rule: &str) -> Action {
        let reply = if self.mcp {
            // In the caller's protocol: JSON-RPC, with the HTTP status of the fault.
            let data = serde_json::json!({"reason": code, "rule": rule, "request_id": self.request_id});
            let calls =
                self.calls.clone().unwrap_or(ToolCalls { other_ids: vec!["null".into()], ..ToolCalls::default() });
            // A fault, not the policy's refusal: JSON-RPC's internal error.
            let code = crate::tool_acl::jsonrpc::INTERNAL_ERROR;
            reply::Reply { status, ..reply::jsonrpc_refusal(&calls, code, message, &data, Vec::new()) }
        } else {
            reply::error(self.api, status, message, kind, code, rule, &self.request_id)
        };
        // Recorded at best: a host fault here must not keep the refusal from being sent.
        let _ = self.decide(Decision::deny(rule, code));
        self.send(&reply)
    }

    fn audit_format(&self) -> crate::audit::AuditFormat {
        self.vm.as_ref().map_or_else(Default::default, |vm| vm.audit_format)
    }

    /// Records the decision with what was learned so far, in one write.
    fn decide(&mut self, decision: Decision) -> Result<(), HostError> {
        let format = self.audit_format();
        self.record.decision(&decision).write(&*self.host, format, Section::TokenBudget)
    }

    /// A runtime fault (shared data): requests are not let through uncounted.
    fn fault(&mut self, vm: &BudgetVm, e: &HostError) -> Action {
        error!("warden token-budget: host call failed: {e}");
        let _ = self.host.increment(metrics::FAILURE_MODE, 1);
        self.release(vm);
        self.error(
            503,
            "the token budget could not be checked",
            "server_error",
            "budget_unavailable",
            FAILURE_MODE_RULE,
        )
    }

    fn release(&mut self, vm: &BudgetVm) {
        if let Some(plan) = self.plan.take() {
            let planner =
                Planner { policy: &vm.policy, host: &*self.host, caller: &self.caller, now: unix_now(&*self.host) };
            if let Err(e) = planner.release(&plan) {
                error!("warden token-budget: cannot release a reservation: {e}");
            }
            // Draws sent (or maybe sent) are settled at nothing: given back if they landed,
            // and a late one counts nothing.
            settle_global(&*self.host, vm, &plan, None);
        }
    }

    fn on_headers(&mut self, vm: &BudgetVm, end_of_stream: bool) -> Result<Action, HostError> {
        let headers = self.host.request_headers()?;
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        self.request_id = header(attributes::REQUEST_ID_HEADER).unwrap_or("-").to_string();
        let (method, path) = (header(":method").unwrap_or_default(), header(":path").unwrap_or_default());
        if let Some(acl) = &vm.mcp {
            // A POST to an MCP server carries JSON-RPC messages: its tool calls, once tool-acl
            // has read and decided them, are counted here.
            if method == "POST" && acl.server_index(header(":authority").unwrap_or_default(), path).is_some() {
                self.mcp = true;
                if end_of_stream {
                    // Nothing to call with (tool-acl answers a POST without a body).
                    return Ok(Action::Continue);
                }
                self.stage = Stage::Reading;
                return Ok(if vm.hold { Action::Pause } else { Action::Continue });
            }
        }
        match admit(&vm.policy, method, path, &headers) {
            Admission::Pass => return Ok(Action::Continue),
            Admission::Meter(api) => self.api = Some(api),
            Admission::Refuse { status, kind, code, rule, message } => {
                let _ = self.host.increment(metrics::BAD_REQUEST, 1);
                return Ok(self.error(status, &message, kind, code, rule));
            }
        }
        // The answer's usage must be read: ask for it as sent.
        self.host.set_request_header(ACCEPT_ENCODING, Some(IDENTITY))?;
        let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|n| n > vm.policy.max_body_bytes) {
            return Ok(self.too_large(vm));
        }
        if end_of_stream {
            return Ok(self.no_body());
        }
        self.stage = Stage::Reading;
        self.has_length = length.is_some();
        // The body is held (`StopIterationAndBuffer`) until it is counted and reserved; no byte
        // of it goes upstream before. With `requestHeaders: hold` the headers wait too: a
        // refused request never opens an upstream stream, a rewritten body gets its right
        // `content-length`, and the route is chosen again for the model served.
        if vm.hold {
            return Ok(Action::Pause);
        }
        // Released headers cannot follow the body's edits (cap, usage, model): the length is
        // dropped and Envoy frames the body itself; the route stays the one the headers chose.
        self.host.set_request_header("content-length", None)?;
        Ok(Action::Continue)
    }

    /// A POST without a body (headers that end the stream, or trailers with no data before).
    fn no_body(&mut self) -> Action {
        let _ = self.host.increment(metrics::BAD_REQUEST, 1);
        self.error(400, "the request has no body", "invalid_request_error", "invalid_request", "protocol")
    }

    fn too_large(&mut self, vm: &BudgetVm) -> Action {
        let _ = self.host.increment(metrics::BODY_TOO_LARGE, 1);
        let message = format!("the request body is over {} bytes", vm.policy.max_body_bytes);
        self.error(413, &message, "invalid_request_error", "body_too_large", "protocol")
    }

    /// An MCP request's body has been decided by tool-acl (whose limits bound its size): its
    /// calls are reserved before any of it goes on.
    fn on_mcp_body(&mut self, vm: &BudgetVm, end_of_stream: bool) -> Result<Action, HostError> {
        if !end_of_stream {
            return Ok(Action::Pause);
        }
        let Some(calls) = ToolCalls::read(&*self.host)? else {
            let _ = self.host.increment(metrics::FAILURE_MODE, 1);
            return Ok(self.error(
                503,
                "the tool calls of this request cannot be counted: tool-acl did not record them (it must run \
                 before token-budget)",
                "server_error",
                "tool_calls_unrecorded",
                FAILURE_MODE_RULE,
            ));
        };
        if calls.calls.is_empty() {
            self.stage = Stage::Pass;
            return Ok(Action::Continue);
        }
        self.caller = Caller::read(&*self.host)?;
        self.record.set("tool_calls", calls.calls.len() as u64);
        let planner =
            Planner { policy: &vm.policy, host: &*self.host, caller: &self.caller, now: unix_now(&*self.host) };
        let reservation = vm.policy.rate_limit_service.as_ref().filter(|s| s.release).map(|_| vm.next_reservation());
        let outcome = planner.reserve_calls(&calls.calls, reservation.as_deref())?;
        self.calls = Some(calls);
        match outcome {
            Err(e) => Ok(self.plan_error(&e)),
            Ok(Outcome::Refused(refusal)) => self.refused(vm, &refusal),
            Ok(Outcome::Held(plan)) => self.send_draws(vm, plan),
        }
    }

    /// A request the budgets cannot count at all.
    fn plan_error(&mut self, e: &PlanError) -> Action {
        let _ = self.host.increment(metrics::BAD_REQUEST, 1);
        let (status, code) = match e {
            PlanError::NotPriced { .. } => (400, "model_not_priced"),
            PlanError::NoScope { .. } => (403, "budget_scope_missing"),
            PlanError::TooManyCounters { .. } => (429, "too_many_sessions"),
        };
        self.error(status, &e.to_string(), "invalid_request_error", code, "budgets")
    }

    fn on_body(&mut self, vm: &BudgetVm, size: usize, end_of_stream: bool) -> Result<Action, HostError> {
        if self.mcp {
            return self.on_mcp_body(vm, end_of_stream);
        }
        if size > vm.policy.max_body_bytes {
            return Ok(self.too_large(vm));
        }
        if !end_of_stream {
            return Ok(Action::Pause);
        }
        if size == 0 {
            return Ok(self.no_body());
        }
        self.body = self.host.request_body(size)?;
        let Some(api) = self.api else { return Ok(Action::Continue) };
        let request = match ModelRequest::parse(api, &self.body) {
            Ok(request) => request,
            Err(e) => return Ok(self.bad_request(&e)),
        };
        self.caller = Caller::read(&*self.host)?;
        self.requested_model.clone_from(&request.model);
        // Each of the `n` answers may run to the cap: all of them are reserved.
        let cap = request.max_output.or(vm.policy.default_max_output_tokens.map(u64::from)).unwrap_or(0);
        self.choices = request.choices;
        self.estimate = Usage { input: 0, cached_input: 0, output: cap.saturating_mul(request.choices) };
        self.exact = self.counts_exactly_first(vm);
        self.estimate.input = match prompt_tokens(vm, &request, &request.model, self.exact) {
            Ok(n) => n,
            Err(e) => return Ok(self.bad_request(&e)),
        };
        self.edits = Edits {
            model: None,
            include_usage: api == Api::ChatCompletions && request.stream && !request.include_usage,
            max_output: if request.max_output.is_none() { vm.policy.default_max_output_tokens } else { None },
        };
        self.record.set("model_requested", request.model.as_str());
        self.record.set_in("tokens", "estimated", self.estimate.input);
        let model = request.model.clone();
        self.reserve(vm, &model, self.estimate)
    }

    /// Whether the prompt is counted exactly from the start rather than reserved first at its
    /// upper bound (counted exactly only if that does not fit, see `refused`): where the bound
    /// would cost more than a refusal. An uncapped request's output room (its cap under a
    /// per-request maximum, a stream's cut) is what the budgets leave after the prompt; and a
    /// rate-limit service that cannot give back keeps whatever was drawn.
    fn counts_exactly_first(&self, vm: &BudgetVm) -> bool {
        self.estimate.output == 0 || vm.policy.rate_limit_service.as_ref().is_some_and(|s| !s.release)
    }

    fn bad_request(&mut self, e: &RequestError) -> Action {
        let _ = self.host.increment(metrics::BAD_REQUEST, 1);
        self.error(400, &e.to_string(), "invalid_request_error", "invalid_request", "protocol")
    }

    /// Reserves `estimate` for `model` locally, then sends the global draws if there are any.
    fn reserve(&mut self, vm: &BudgetVm, model: &str, estimate: Usage) -> Result<Action, HostError> {
        self.reserving = (model.to_string(), estimate);
        let planner =
            Planner { policy: &vm.policy, host: &*self.host, caller: &self.caller, now: unix_now(&*self.host) };
        // Warden's own service remembers each draw by id, so it can be settled (or, when its
        // answer timed out, reconciled) exactly once.
        let reservation = vm.policy.rate_limit_service.as_ref().filter(|s| s.release).map(|_| vm.next_reservation());
        match planner.reserve(model, estimate, reservation.as_deref())? {
            Err(e) => Ok(self.plan_error(&e)),
            Ok(Outcome::Refused(refusal)) => self.refused(vm, &refusal),
            Ok(Outcome::Held(plan)) => {
                if let Some(total) = plan.request_cap {
                    // A per-request maximum capped an uncapped request: the provider is told.
                    let per_answer = (total / self.choices.max(1)).max(1);
                    self.edits.max_output = Some(u32::try_from(per_answer).unwrap_or(u32::MAX));
                }
                self.send_draws(vm, plan)
            }
        }
    }

    /// Everything local is held: the global draws go to the rate-limit service (the request
    /// waits for its answer), or, with none, the request goes on.
    fn send_draws(&mut self, vm: &BudgetVm, plan: Plan) -> Result<Action, HostError> {
        let draws = plan.draws();
        self.plan = Some(plan);
        match (&vm.policy.rate_limit_service, draws.is_empty()) {
            (Some(service), false) => {
                let message = rls::reserve_request(&service.domain, &draws);
                match self.host.grpc_call(&service.cluster, rls::SERVICE, rls::METHOD, &message, service.timeout) {
                    Ok(token) => {
                        self.stage = Stage::Reserving { token };
                        // Recorded before the wait: a request the client gives up on
                        // while the service answers still shows what it asked for.
                        // At best: the reservation is out, so a fault here must not
                        // turn into a refusal that leaves it waiting.
                        let _ = self.record.write(&*self.host, vm.audit_format, Section::TokenBudget);
                        Ok(Action::Pause)
                    }
                    Err(e) => {
                        warn!("warden token-budget: cannot reach the rate-limit service: {e}");
                        self.service_failed(vm)
                    }
                }
            }
            _ => self.forward(vm),
        }
    }

    /// A budget cannot take the request: count the prompt exactly if only its upper bound was
    /// reserved, then fall back to a cheaper model once, or refuse.
    fn refused(&mut self, vm: &BudgetVm, refusal: &Refusal) -> Result<Action, HostError> {
        self.release(vm);
        if self.calls.is_some() {
            return self.calls_refused(vm, refusal);
        }
        if !self.exact {
            self.exact = true;
            let (model, estimate) = self.reserving.clone();
            let request = ModelRequest::parse(self.api.unwrap_or(Api::ChatCompletions), &self.body);
            let input = match request.and_then(|r| prompt_tokens(vm, &r, &model, true)) {
                Ok(n) => n,
                Err(e) => return Ok(self.bad_request(&e)),
            };
            self.host.increment(metrics::EXACT_COUNTS, 1)?;
            if input < estimate.input {
                if model == self.requested_model {
                    self.estimate.input = input;
                }
                self.record.set_in("tokens", "estimated", input);
                return self.reserve(vm, &model, Usage { input, ..estimate });
            }
        }
        let budget = &vm.policy.budgets[refusal.budget];
        let fallback = budget.fallback_model.clone().filter(|m| !self.fallback_tried && *m != self.requested_model);
        if let Some(fallback) = fallback {
            self.fallback_tried = true;
            let _ = self.host.increment(metrics::FALLBACK, 1);
            // The audit says which budget moved the request, not only what it was charged to.
            self.record.set("fallback_budget", budget.id.as_str());
            // Counted as the requested model was: bounded first unless that would cost more.
            self.exact = self.counts_exactly_first(vm);
            let request = ModelRequest::parse(self.api.unwrap_or(Api::ChatCompletions), &self.body);
            let input = match request.and_then(|r| prompt_tokens(vm, &r, &fallback, self.exact)) {
                Ok(n) => n,
                Err(e) => return Ok(self.bad_request(&e)),
            };
            self.edits.model = Some(fallback.clone());
            let estimate = Usage { input, ..self.estimate };
            return self.reserve(vm, &fallback, estimate);
        }
        self.host.increment(&metrics::refused_by(&budget.id), 1)?;
        if vm.policy.mode == Mode::Shadow {
            self.host.increment(metrics::SHADOW_REFUSED, 1)?;
            let decision = Decision::deny(budget.id.as_str(), "budget_exhausted");
            self.decide(Decision { shadowed: true, ..decision })?;
            // Forwarded as sent: nothing meters its answer, so nothing may be asked of it
            // (a usage chunk asked for here would reach the client).
            self.edits = Edits::default();
            return self.write_edits(vm);
        }
        self.host.increment(metrics::REFUSED, 1)?;
        let reply = reply::refused(&vm.policy, self.api, None, refusal, unix_now(&*self.host), &self.request_id);
        self.decide(Decision::deny(budget.id.as_str(), "budget_exhausted"))?;
        Ok(self.send(&reply))
    }

    /// A budget cannot take the request's tool calls: each is refused in JSON-RPC (in shadow
    /// mode they go on, counted nowhere).
    fn calls_refused(&mut self, vm: &BudgetVm, refusal: &Refusal) -> Result<Action, HostError> {
        let budget = &vm.policy.budgets[refusal.budget];
        self.host.increment(&metrics::refused_by(&budget.id), 1)?;
        let decision = Decision::deny(budget.id.as_str(), "budget_exhausted");
        if vm.policy.mode == Mode::Shadow {
            self.host.increment(metrics::SHADOW_REFUSED, 1)?;
            self.decide(Decision { shadowed: true, ..decision })?;
            self.settled = true;
            return self.write_edits(vm);
        }
        self.host.increment(metrics::REFUSED, 1)?;
        let now = unix_now(&*self.host);
        let reply = reply::refused(&vm.policy, None, self.calls.as_ref(), refusal, now, &self.request_id);
        self.decide(decision)?;
        Ok(self.send(&reply))
    }

    /// The tool calls are reserved, and a call once sent counts: settled now at what was
    /// reserved, so nothing about the answer can give it back.
    fn forward_calls(&mut self, vm: &BudgetVm) -> Result<Action, HostError> {
        let Some(plan) = self.plan.take() else { return self.write_edits(vm) };
        self.settled = true;
        settle_global(&*self.host, vm, &plan, Some(Usage::default()));
        for charge in &plan.charges {
            if let Some(held) = &charge.local {
                let limit = vm.policy.budgets[charge.budget].limit;
                self.record_remaining(vm, charge.budget, limit.saturating_sub(held.used_after));
            }
        }
        let calls = self.calls.as_ref().map(|c| c.calls.as_slice()).unwrap_or_default();
        let cost: u64 = calls.iter().map(|call| vm.policy.tool_price(call)).sum();
        if cost > 0 {
            let _ = self.host.increment(metrics::COST_MICRO_USD, cost as i64);
            self.record.set("cost_usd", cost as f64 / 1e6);
        }
        let budgets: Vec<&str> = plan.charges.iter().map(|c| vm.policy.budgets[c.budget].id.as_str()).collect();
        let rule = if budgets.is_empty() { "none".to_string() } else { budgets.join(",") };
        self.decide(Decision::allow(rule, "within_budget"))?;
        self.host.increment(metrics::ALLOWED, 1)?;
        self.write_edits(vm)
    }

    /// The rate-limit service did not answer: each global budget's failure mode decides.
    fn service_failed(&mut self, vm: &BudgetVm) -> Result<Action, HostError> {
        self.host.increment(metrics::RLS_ERRORS, 1)?;
        let Some(mut plan) = self.plan.take() else { return self.forward(vm) };
        let planner =
            Planner { policy: &vm.policy, host: &*self.host, caller: &self.caller, now: unix_now(&*self.host) };
        for i in 0..plan.charges.len() {
            if plan.charges[i].draw.is_none() {
                continue;
            }
            self.host.increment(metrics::FAILURE_MODE, 1)?;
            let index = plan.charges[i].budget;
            let budget = &vm.policy.budgets[index];
            // The draw may still reach the service late: it stays in the plan, and its settle
            // (what the request really used) reconciles it whatever happened to it.
            match budget.failure_mode {
                BudgetFailureMode::Allow => {}
                BudgetFailureMode::Deny => {
                    self.plan = Some(plan);
                    self.release(vm);
                    let rule = budget.id.clone();
                    return Ok(self.error(
                        503,
                        "the budget service is unavailable",
                        "server_error",
                        "budget_unavailable",
                        &rule,
                    ));
                }
                BudgetFailureMode::Local => {
                    let counter = planner.counter(index, budget, plan.charges[i].digest.clone());
                    match counter.reserve(&*self.host, plan.charges[i].reserved, planner.now)? {
                        ledger::Reserved::Held(held) => plan.charges[i].local = Some(held),
                        ledger::Reserved::Refused { used, reset_at } => {
                            self.plan = Some(plan);
                            let refusal =
                                Refusal { budget: index, used, limit: budget.limit, reset_at: Some(reset_at) };
                            return self.refused(vm, &refusal);
                        }
                        ledger::Reserved::TooManyCounters => {
                            self.plan = Some(plan);
                            self.release(vm);
                            let rule = budget.id.clone();
                            let message = "too many sessions or models counted for this agent";
                            return Ok(self.error(429, message, "rate_limit_error", "too_many_sessions", &rule));
                        }
                    }
                }
            }
        }
        self.plan = Some(plan);
        self.forward(vm)
    }

    fn on_reserved(&mut self, vm: &BudgetVm, status: u32, size: usize) -> Result<Action, HostError> {
        if status != 0 {
            warn!("warden token-budget: the rate-limit service answered gRPC status {status}");
            return self.service_failed(vm);
        }
        let answer = match self.host.grpc_response(size).map(|b| rls::read_answer(&b)) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                warn!("warden token-budget: {e}");
                return self.service_failed(vm);
            }
            Err(e) => return Err(e),
        };
        let draws = self.plan.as_ref().map(Plan::draws).unwrap_or_default();
        if !answer.over_limit {
            for (draw, (_, remaining, _)) in draws.iter().zip(&answer.statuses) {
                let budget = &vm.policy.budgets[draw.budget];
                self.record_remaining(vm, draw.budget, rls::amount(budget.unit, *remaining));
            }
            return self.forward(vm);
        }
        // Refused all-or-nothing: the service drew nothing, so there is nothing to settle.
        if let Some(plan) = self.plan.as_mut() {
            plan.charges.iter_mut().for_each(|c| c.draw = None);
        }
        let over = answer.statuses.iter().position(|s| s.0).unwrap_or(0);
        let Some(draw) = draws.get(over) else { return self.service_failed(vm) };
        let budget = &vm.policy.budgets[draw.budget];
        let (_, remaining, reset_in) = answer.statuses.get(over).copied().unwrap_or((true, 0, None));
        let now = unix_now(&*self.host);
        let refusal = Refusal {
            budget: draw.budget,
            used: budget.limit.saturating_sub(rls::amount(budget.unit, remaining)),
            limit: budget.limit,
            reset_at: Some(reset_in.map_or_else(|| budget.window.span(now).end, |s| now + s)),
        };
        self.refused(vm, &refusal)
    }

    /// Everything is reserved: write the edits and let the request go.
    fn forward(&mut self, vm: &BudgetVm) -> Result<Action, HostError> {
        if self.calls.is_some() {
            return self.forward_calls(vm);
        }
        let Some(plan) = &self.plan else { return self.write_edits(vm) };
        let fallback = plan.model != self.requested_model;
        if fallback {
            self.edits.model = Some(plan.model.clone());
        }
        self.record.set("model_served", plan.model.as_str());
        self.record.set_in("tokens", "reserved", plan.reserved_tokens());
        let held: Vec<(usize, u64)> =
            plan.charges.iter().filter_map(|c| c.local.as_ref().map(|h| (c.budget, h.used_after))).collect();
        let budgets: Vec<&str> = plan.charges.iter().map(|c| vm.policy.budgets[c.budget].id.as_str()).collect();
        let rule = if budgets.is_empty() { "none".to_string() } else { budgets.join(",") };
        let reason = if fallback { "fallback_model" } else { "within_budget" };
        let model = plan.model.clone();
        for (index, used) in held {
            self.record_remaining(vm, index, vm.policy.budgets[index].limit.saturating_sub(used));
        }
        self.decide(Decision::allow(rule, reason))?;
        self.host.increment(metrics::ALLOWED, 1)?;
        let Some(plan) = &self.plan else { return self.write_edits(vm) };
        let encoding = vm.policy.model(&model).encoding;
        let api = self.api.unwrap_or(Api::ChatCompletions);
        self.meter = Some(Meter::new(api, &self.request_id, encoding, self.edits.include_usage, plan.output_allowance));
        if vm.hold {
            // Routes may send each model to its own cluster: the route is chosen again for the
            // model served (a fallback model may be served elsewhere than the one asked for).
            self.host.set_request_header(attributes::MODEL_HEADER, Some(&plan.model))?;
            self.host.clear_route_cache()?;
        }
        self.write_edits(vm)
    }

    fn write_edits(&mut self, vm: &BudgetVm) -> Result<Action, HostError> {
        if !self.edits.is_empty() {
            let api = self.api.unwrap_or(Api::ChatCompletions);
            let rewritten = ModelRequest::parse(api, &self.body).and_then(|r| r.rewrite(&self.edits));
            match rewritten {
                Ok(body) => {
                    self.host.set_request_body(self.body.len(), &body)?;
                    if vm.hold && self.has_length {
                        self.host.set_request_header("content-length", Some(&body.len().to_string()))?;
                    }
                }
                Err(e) => {
                    // Refused here: nothing was sent, so nothing is charged or metered.
                    self.release(vm);
                    self.meter = None;
                    return Ok(self.bad_request(&e));
                }
            }
        }
        let resume = matches!(self.stage, Stage::Reserving { .. });
        self.stage = Stage::Forwarded;
        self.body = Vec::new();
        if resume {
            self.host.resume_request()?;
        }
        Ok(Action::Continue)
    }

    /// Sets the budget's headroom gauge (budgets counted per tenant have one).
    fn record_remaining(&self, vm: &BudgetVm, budget: usize, remaining: u64) {
        if let Some(name) = metrics::remaining(&vm.headroom_labels, &vm.policy.budgets[budget], &self.caller) {
            let _ = self.host.set_gauge(&name, remaining);
        }
    }

    /// When the router served the request, the cost is the served target's: its model at its
    /// provider (one model can be priced differently at two providers). The reservation was
    /// made at the dearest target the alias could reach.
    fn price_at_served_target(&mut self, vm: &BudgetVm, plan: &mut Plan) {
        if vm.policy.routes.is_empty() {
            return;
        }
        let served = match crate::router::plan::RoutePlan::read(&*self.host) {
            Ok(route) => route.and_then(|r| r.served().map(|a| (a.provider.clone(), a.model.clone()))),
            Err(e) => {
                warn!("warden token-budget: cannot read the route served: {e}");
                None
            }
        };
        let Some((provider, model)) = served else { return };
        if let Some(price) = vm.policy.model_at(Some(&provider), &model).price {
            plan.price = Some(price);
        }
        self.record.set("model_served", model.as_str()).set("provider", provider.as_str());
    }

    /// Replaces the reservation with `usage`: locally now, globally through the root's queue.
    fn settle(&mut self, vm: &BudgetVm, usage: Usage) {
        if self.settled {
            return;
        }
        self.settled = true;
        let Some(mut plan) = self.plan.take() else { return };
        self.price_at_served_target(vm, &mut plan);
        let now = unix_now(&*self.host);
        let planner = Planner { policy: &vm.policy, host: &*self.host, caller: &self.caller, now };
        if let Err(e) = planner.settle_local(&plan, usage) {
            error!("warden token-budget: cannot settle: {e}");
        }
        settle_global(&*self.host, vm, &plan, Some(usage));
        let cost = plan.price.map(|p| super::plan::amount(super::config::Unit::CostUsd, Some(p), usage));
        let _ = self.host.increment(metrics::INPUT_TOKENS, usage.input as i64);
        let _ = self.host.increment(metrics::OUTPUT_TOKENS, usage.output as i64);
        if usage.input > plan.estimate.input {
            let _ = self.host.increment(metrics::UNDERESTIMATE_TOKENS, (usage.input - plan.estimate.input) as i64);
        }
        self.record.set_in("tokens", "input", usage.input).set_in("tokens", "output", usage.output);
        if let Some(micro) = cost {
            let _ = self.host.increment(metrics::COST_MICRO_USD, micro as i64);
            self.record.set("cost_usd", micro as f64 / 1e6);
        }
        let served = self.record.get("model_served").and_then(|v| v.as_str()).unwrap_or(&plan.model).to_string();
        let tenant = self.caller.tenant.as_deref();
        // A model the policy prices or routes; any other is the client's word, labelled `other`.
        let known = vm.policy.model(&served).price.is_some()
            || vm
                .policy
                .routes
                .iter()
                .any(|(alias, targets)| alias == &served || targets.iter().any(|(_, m)| m == &served));
        for (what, value) in metrics::USAGE.iter().zip([1, usage.input, usage.output, cost.unwrap_or(0)]) {
            let _ = self.host.increment(&metrics::usage(&vm.usage_labels, what, tenant, &served, known), value as i64);
        }
        let _ = self.record.write(&*self.host, vm.audit_format, Section::TokenBudget);
    }
}

/// `request`'s prompt tokens for `model`: counted exactly, or at their upper bound.
fn prompt_tokens(vm: &BudgetVm, request: &ModelRequest, model: &str, exact: bool) -> Result<u64, RequestError> {
    let encoding = vm.policy.model(model).encoding;
    if exact {
        request.prompt_tokens(&vm.tokenizers, encoding)
    } else {
        request.prompt_tokens_bound(encoding)
    }
}

/// Queues the settle of every global draw of `plan` at what `usage` amounts to.
/// Settles the plan's global draws at what the request used; `None`: it was never served, so
/// it used nothing, not even the one request a `requests` budget counts.
fn settle_global(host: &dyn Host, vm: &BudgetVm, plan: &Plan, usage: Option<Usage>) {
    let Some(service) = vm.policy.rate_limit_service.as_ref().filter(|s| s.release) else { return };
    let settled: Vec<(rls::Draw, u64, u64)> = plan
        .charges
        .iter()
        .filter_map(|c| {
            let draw = c.draw.clone()?;
            let budget = &vm.policy.budgets[c.budget];
            let used = match usage {
                None => 0,
                // Tool calls: what was drawn is what they used.
                Some(_) if plan.fixed => draw.hits,
                Some(usage) => rls::hits(budget.unit, super::plan::amount(budget.unit, plan.price, usage)),
            };
            Some((draw, used, c.window_start))
        })
        .collect();
    if let Some(message) = rls::settle_request(&service.domain, &settled) {
        vm.queue_settle(host, message);
    }
}

fn cut_message() -> String {
    "the token budget for this session is spent; the answer was cut".to_string()
}

/// The callbacks, as the glue passes them in.
impl BudgetFlow {
    /// The rate-limit service answered (gRPC `status`, `size` bytes): a reservation's answer.
    pub fn on_grpc_answer(&mut self, token_id: u32, status: u32, size: usize) {
        let Some(vm) = self.vm.clone() else { return };
        if !matches!(self.stage, Stage::Reserving { token } if token == token_id) {
            return;
        }
        if let Err(e) = self.on_reserved(&vm, status, size) {
            self.fault(&vm, &e);
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            warn!("warden token-budget: no policy loaded; refusing the request");
            return self.error(503, "no budget policy is loaded", "server_error", "no_policy", FAILURE_MODE_RULE);
        };
        match self.on_headers(&vm, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.fault(&vm, &e),
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else { return Action::Pause };
        match self.stage {
            Stage::Reading => {
                self.request_size = body_size;
                match self.on_body(&vm, body_size, end_of_stream) {
                    Ok(action) => action,
                    Err(e) => self.fault(&vm, &e),
                }
            }
            Stage::Reserving { .. } => Action::Pause,
            Stage::Pass | Stage::Forwarded => Action::Continue,
        }
    }

    /// Trailers end the request: it is counted and reserved on the body held so far, exactly
    /// as if its last DATA frame had ended it (the SDK's default would send it on uncounted).
    pub fn on_request_trailers(&mut self) -> Action {
        let Some(vm) = self.vm.clone() else { return Action::Pause };
        match self.stage {
            Stage::Reading => match self.on_body(&vm, self.request_size, true) {
                Ok(action) => action,
                Err(e) => self.fault(&vm, &e),
            },
            Stage::Reserving { .. } => Action::Pause,
            Stage::Pass | Stage::Forwarded => Action::Continue,
        }
    }

    pub fn on_response_headers(&mut self) -> Action {
        let host = Rc::clone(&self.host);
        if let Some(meter) = self.meter.as_mut() {
            if let Err(e) = meter.on_headers(&*host) {
                error!("warden token-budget: cannot read the response headers: {e}");
            }
            // A router refusal (no target, a rule) or a request no attempt took: nothing left
            // the gateway, so nothing is charged.
            let routed = self.vm.as_ref().is_some_and(|vm| !vm.policy.routes.is_empty());
            if routed && meter.failed() {
                let attempts = crate::router::plan::RoutePlan::read(&*host).ok().flatten().map(|p| p.attempts.len());
                if attempts.unwrap_or(0) == 0 {
                    meter.mark_never_sent();
                }
            }
        }
        Action::Continue
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let estimate = self.estimate_for_settle();
        let host = Rc::clone(&self.host);
        let (Some(vm), Some(meter)) = (self.vm.clone(), self.meter.as_mut()) else { return Action::Continue };
        if let Err(e) = meter.on_body(&*host, &vm, body_size, end_of_stream, &cut_message) {
            error!("warden token-budget: cannot meter the answer: {e}");
        }
        if end_of_stream {
            let usage = meter.charge(estimate, true);
            self.settle(&vm, usage);
        }
        Action::Continue
    }

    /// Trailers end the answer: metered and settled as at its last DATA frame.
    pub fn on_response_trailers(&mut self) -> Action {
        let estimate = self.estimate_for_settle();
        let host = Rc::clone(&self.host);
        let (Some(vm), Some(meter)) = (self.vm.clone(), self.meter.as_mut()) else { return Action::Continue };
        meter.on_trailers(&*host, &vm, &cut_message);
        let usage = meter.charge(estimate, true);
        self.settle(&vm, usage);
        Action::Continue
    }

    /// The stream is over (however it ended).
    pub fn on_log(&mut self) {
        // A request that died midway: one never forwarded used nothing; one forwarded is
        // charged at least its reservation, unless the provider answered an error.
        let Some(vm) = self.vm.clone() else { return };
        if self.plan.is_some() && !self.settled {
            match &self.meter {
                Some(meter) => {
                    let usage = meter.charge(self.estimate_for_settle(), false);
                    self.settle(&vm, usage);
                }
                // Never forwarded: given back whole, not even counted as one request.
                None => {
                    self.settled = true;
                    self.release(&vm);
                }
            }
        }
    }

    /// The estimate for the model actually served.
    fn estimate_for_settle(&self) -> Usage {
        self.plan.as_ref().map_or(self.estimate, |p| p.estimate)
    }
}
