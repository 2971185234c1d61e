//! An MCP request body decided: every message in it checked against the policy before any of
//! it may reach the server.

use crate::budget::plan::{Outcome as Counted, Plan, PlanError, Planner};
use crate::budget::tool_call::{ToolCall, ToolCalls};
use crate::decision::{Decision, Mode, Verdict};
use crate::host::{Host, HostError};
use crate::principal::Caller;
use crate::tool_acl::approval::{self, ApprovedCall, Verified};
use crate::tool_acl::approval_strip;
use crate::tool_acl::arguments::Arguments;
use crate::tool_acl::compile::WRITES_BUDGET;
use crate::tool_acl::compile::{CompiledToolAcl, Server};
use crate::tool_acl::config::{DenyAs, Pinning};
use crate::tool_acl::denial::Refusal;
use crate::tool_acl::evaluate::{evaluate, reachable, Call, Hint, Outcome};
use crate::tool_acl::jsonrpc::{self, parse_body, Message};
use crate::tool_acl::limits::{check_loop, LimitVerdict};
use crate::tool_acl::pins;
use crate::tool_acl::risk::Risk;
use crate::tool_acl::routing_headers::RoutingHeaders;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::time::SystemTime;

/// The rule id for method checks and protocol faults.
pub const METHODS_RULE: &str = "methods";
pub const PROTOCOL_RULE: &str = "protocol";
pub const LIMITS_RULE: &str = "limits";
pub const APPROVAL_RULE: &str = "approval";
pub const PINNING_RULE: &str = "pinning";

/// What happens to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send it on: unchanged, or `rewritten` without the approvals spent here.
    Forward { rewritten: Option<String> },
    /// Answer here; the server never sees it.
    Reply { status: u32, body: String },
}

/// One message's outcome, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub method: String,
    pub tool: Option<String>,
    pub risk: Option<Risk>,
    pub args_sha256: Option<String>,
    pub pin_changed: bool,
    pub decision: Decision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub action: Action,
    pub records: Vec<Record>,
    /// Ids (raw JSON) of `tools/list` requests, whose answers must be filtered.
    pub list_ids: Vec<String>,
    /// Ids of the other requests forwarded with them: what else the answer may answer.
    pub other_ids: Vec<String>,
    /// The `tools/call` requests forwarded, for token-budget's tool-call budgets.
    pub calls: ToolCalls,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    arguments: Option<&'a RawValue>,
    #[serde(default, rename = "_meta", borrow)]
    meta: Option<CallMeta<'a>>,
}

#[derive(Deserialize)]
struct CallMeta<'a> {
    #[serde(default, rename = "warden/approval", borrow)]
    approval: Option<Cow<'a, str>>,
}

/// Everything one request needs to be decided.
pub struct Context<'a> {
    pub host: &'a dyn Host,
    pub acl: &'a CompiledToolAcl,
    pub server: &'a Server,
    pub caller: &'a Caller,
    pub request_id: &'a str,
    pub now: SystemTime,
    /// `Mcp-Method` and `Mcp-Name` as sent (MCP 2026-07-28), which must say what the body says.
    pub routing: &'a RoutingHeaders,
}

enum Step {
    Pass(Record, Box<Pending>),
    Refuse { refusal: Refusal, record: Record, as_tool_result: bool },
}

/// What a message that passes still has to do once the whole body is known to go on: spend
/// its approval, keep its call counted. A body refused for another of its messages leaves
/// neither behind, so an approval is never used up, nor a call counted, for nothing.
#[derive(Default)]
struct Pending {
    /// The approval, and the refusal to answer with if it cannot be spent after all.
    approval: Option<(Verified, Refusal)>,
    /// The call's reservation in the session limits, for the caller it was counted for.
    counted: Option<(Caller, Plan)>,
}

impl Pending {
    /// Gives back what was counted: the call is not made.
    fn release(&self, cx: &Context) -> Result<(), HostError> {
        let (Some((caller, plan)), Some(budgets)) = (&self.counted, &cx.acl.limits.budgets) else { return Ok(()) };
        let now = cx.now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Planner { policy: budgets, host: cx.host, caller, now }.release(plan)
    }
}

/// A protocol fault: always refused (shadow mode included), since a server could read a
/// malformed message differently from us.
fn protocol_reply(status: u32, code: i64, message: &str) -> Decided {
    let body = crate::error_body::jsonrpc(None, code, message, None);
    let decision =
        Decision { verdict: Verdict::Deny, rule: PROTOCOL_RULE.into(), reason: "invalid_jsonrpc", shadowed: false };
    let record =
        Record { method: String::new(), tool: None, risk: None, args_sha256: None, pin_changed: false, decision };
    let (list_ids, other_ids, calls) = (vec![], vec![], ToolCalls::default());
    Decided { action: Action::Reply { status, body }, records: vec![record], list_ids, other_ids, calls }
}

/// The answer to a body over `maxBodyBytes`: 413 with a JSON-RPC error.
pub fn too_large(limit: usize) -> Decided {
    let mut decided = protocol_reply(413, jsonrpc::INVALID_REQUEST, &format!("the request body is over {limit} bytes"));
    decided.records[0].decision.reason = "body_too_large";
    decided
}

pub fn decide(cx: &Context, body: &[u8]) -> Result<Decided, HostError> {
    let parsed = match parse_body(body, cx.acl.max_batch) {
        Ok(parsed) => parsed,
        Err(e) => return Ok(protocol_reply(400, e.code(), &e.to_string())),
    };
    if let Some(detail) = cx.routing.disagreement(&parsed) {
        let mut refused = protocol_reply(400, jsonrpc::INVALID_REQUEST, detail);
        refused.records[0].decision.reason = "routing_header_mismatch";
        return Ok(refused);
    }
    // What the server would be sent, worked out before any decision has an effect (an
    // approval used, a call counted): a body this cannot rewrite is refused untouched.
    let without_approvals = match approval_strip::without_approvals(body) {
        Ok(rewritten) => rewritten,
        Err(e) => return Ok(protocol_reply(400, jsonrpc::INVALID_REQUEST, &e.to_string())),
    };
    let mut steps = Vec::with_capacity(parsed.messages.len());
    let (mut list_ids, mut other_ids) = (Vec::new(), Vec::new());
    for message in &parsed.messages {
        let step = decide_message(cx, message)?;
        // Every request of a forwarded body may be answered (in shadow mode refused ones are
        // forwarded too); a body that is not forwarded gets no answer at all.
        if let Message::Request { id, method, .. } = message {
            let ids = if method == "tools/list" { &mut list_ids } else { &mut other_ids };
            ids.push(id.get().to_string());
        }
        steps.push(step);
    }
    // Approvals are spent only for a body that goes on (in shadow mode every body does). One
    // that cannot be spent now (used meanwhile: a replay raced on another worker) refuses its
    // message after all.
    let policy_refused = steps.iter().any(|s| matches!(s, Step::Refuse { .. }));
    if !policy_refused || cx.acl.mode == Mode::Shadow {
        for step in &mut steps {
            let Step::Pass(record, pending) = step else { continue };
            let (Some((verified, refusal)), Some(approvals)) = (pending.approval.take(), cx.acl.approvals.as_ref())
            else {
                continue;
            };
            if let Err(e) = approval::spend(cx.host, approvals, &verified, cx.now)? {
                pending.release(cx)?;
                let refusal = Refusal { reason: e.reason(), ..refusal };
                let mut record = record.clone();
                record.decision.verdict = Verdict::Deny;
                record.decision.reason = e.reason();
                let as_tool_result = cx.acl.deny_as == DenyAs::ToolResult;
                *step = Step::Refuse { refusal, record, as_tool_result };
            }
        }
    }

    let refused = steps.iter().any(|s| matches!(s, Step::Refuse { .. }));
    // Shadow mode lets policy denials through, never protocol faults: a server could read a
    // message we could not differently from us.
    let protocol_fault =
        steps.iter().any(|s| matches!(s, Step::Refuse { refusal, .. } if refusal.rule == PROTOCOL_RULE));
    let shadow = cx.acl.mode == Mode::Shadow && !protocol_fault;
    let mut records = Vec::with_capacity(steps.len());
    let mut replies = Vec::new();
    let first_refusal = steps.iter().find_map(|s| match s {
        Step::Refuse { refusal, .. } => Some(refusal.clone()),
        Step::Pass(..) => None,
    });
    for (step, message) in steps.into_iter().zip(&parsed.messages) {
        match step {
            Step::Pass(record, pending) => {
                // In a refused batch nothing is forwarded: each request is answered, and what
                // its calls counted is given back.
                if refused && !shadow {
                    pending.release(cx)?;
                }
                if let (true, false, Some(id), Some(first)) = (refused, shadow, message.id(), &first_refusal) {
                    if matches!(message, Message::Request { .. }) {
                        let mut batch = first.clone();
                        batch.reason = "batch_refused";
                        batch.hint = Hint::Nothing;
                        replies.push(batch.rpc_error(Some(id), cx.request_id));
                    }
                }
                records.push(record);
            }
            Step::Refuse { refusal, mut record, as_tool_result } => {
                record.decision.shadowed = shadow;
                if let Some(id) = message.id().filter(|_| matches!(message, Message::Request { .. })) {
                    replies.push(if as_tool_result {
                        refusal.tool_result(id, cx.request_id)
                    } else {
                        refusal.rpc_error(Some(id), cx.request_id)
                    });
                }
                records.push(record);
            }
        }
    }
    if !refused || shadow {
        let mut calls = ToolCalls { batch: parsed.batch, ..ToolCalls::default() };
        for (record, message) in records.iter().zip(&parsed.messages) {
            let Message::Request { id, .. } = message else { continue };
            match (&record.tool, record.risk) {
                (Some(tool), Some(risk)) if record.method == "tools/call" => calls.calls.push(ToolCall {
                    id: id.get().to_string(),
                    server: cx.server.name.clone(),
                    tool: tool.clone(),
                    risk,
                }),
                _ => calls.other_ids.push(id.get().to_string()),
            }
        }
        let action = Action::Forward { rewritten: without_approvals };
        return Ok(Decided { action, records, list_ids, other_ids, calls });
    }
    let body = match (parsed.batch, replies.len()) {
        (true, n) if n > 0 => format!("[{}]", replies.join(",")),
        (false, 1) => replies.remove(0),
        // A refused notification gets no JSON-RPC answer; HTTP says it was not accepted.
        _ => {
            let rule = first_refusal.map(|r| r.rule).unwrap_or_default();
            let reply =
                crate::error_body::jsonrpc(None, jsonrpc::POLICY_DENIED, &format!("denied by rule {rule:?}"), None);
            let action = Action::Reply { status: 403, body: reply };
            let calls = ToolCalls::default();
            return Ok(Decided { action, records, list_ids: vec![], other_ids: vec![], calls });
        }
    };
    let calls = ToolCalls::default();
    Ok(Decided { action: Action::Reply { status: 200, body }, records, list_ids: vec![], other_ids: vec![], calls })
}

fn record(method: &str, verdict: Verdict, rule: &str, reason: &'static str) -> Record {
    Record {
        method: method.to_string(),
        tool: None,
        risk: None,
        args_sha256: None,
        pin_changed: false,
        decision: Decision { verdict, rule: rule.to_string(), reason, shadowed: false },
    }
}

fn decide_message(cx: &Context, message: &Message) -> Result<Step, HostError> {
    let method = match message {
        // The client answering the server (sampling, elicitation): nothing acts.
        Message::Response { .. } => {
            return Ok(Step::Pass(record("response", Verdict::Allow, METHODS_RULE, "response"), Box::default()))
        }
        Message::Request { method, .. } | Message::Notification { method, .. } => method.as_ref(),
    };
    if method == "tools/call" {
        let params = match message {
            Message::Request { params, .. } => params,
            _ => {
                let r = Refusal::new(PROTOCOL_RULE, "call_without_id");
                return Ok(Step::Refuse {
                    refusal: r,
                    record: record(method, Verdict::Deny, PROTOCOL_RULE, "call_without_id"),
                    as_tool_result: false,
                });
            }
        };
        return decide_call(cx, params.map(|p| p.get()));
    }
    if cx.acl.methods.matches(method) {
        let mut rec = record(method, Verdict::Allow, METHODS_RULE, "method_allowed");
        // What a read or a prompt names is recorded like a tool, for the audit log.
        rec.tool = params_name(message, if method == "resources/read" { "uri" } else { "name" });
        if matches!(message, Message::Request { .. }) {
            if let Err(rule) = reachable(cx.acl, cx.caller, &cx.server.name) {
                let refusal = Refusal::new(rule.clone(), "server_not_allowed");
                rec.decision = Decision { verdict: Verdict::Deny, rule, reason: "server_not_allowed", shadowed: false };
                return Ok(Step::Refuse { refusal, record: rec, as_tool_result: false });
            }
        }
        return Ok(Step::Pass(rec, Box::default()));
    }
    let refusal = Refusal::new(METHODS_RULE, "method_not_allowed");
    Ok(Step::Refuse {
        refusal,
        record: record(method, Verdict::Deny, METHODS_RULE, "method_not_allowed"),
        as_tool_result: false,
    })
}

/// `params.<member>` as a string, for `resources/read` (`uri`) and `prompts/get` (`name`).
fn params_name(message: &Message, member: &str) -> Option<String> {
    let Message::Request { method, params: Some(params), .. } = message else { return None };
    if method != "resources/read" && method != "prompts/get" {
        return None;
    }
    let object = crate::strict_json::StrictObject::parse(params.get().as_bytes()).ok()?;
    object.get::<String>(member).ok().flatten()
}

fn invalid_params(detail: &'static str) -> Step {
    let refusal = Refusal { code: jsonrpc::INVALID_PARAMS, ..Refusal::new(PROTOCOL_RULE, detail) };
    let record = record("tools/call", Verdict::Deny, PROTOCOL_RULE, detail);
    Step::Refuse { refusal, record, as_tool_result: false }
}

fn decide_call(cx: &Context, params: Option<&str>) -> Result<Step, HostError> {
    let Some(params) = params else { return Ok(invalid_params("call_without_params")) };
    let Ok(params) = serde_json::from_str::<CallParams>(params) else {
        return Ok(invalid_params("call_params_invalid"));
    };
    let Ok(arguments) = Arguments::read(params.arguments.map(RawValue::get)) else {
        return Ok(invalid_params("call_arguments_invalid"));
    };
    let tool = params.name.as_ref();
    let server = cx.server;
    // Without pinning and trusted annotations a pin says nothing: skip the shared-data read.
    let pin = if server.pinning != Pinning::Off || server.trust_annotations {
        pins::lookup(cx.host, &server.name, tool)?
    } else {
        None
    };
    let risk = server
        .configured_risk(tool)
        .or_else(|| if server.trust_annotations { pin.and_then(|p| p.annotated_risk) } else { None })
        .unwrap_or(Risk::Write);
    let pin_changed = pin.is_some_and(|p| p.changed);
    let mut rec = Record {
        method: "tools/call".into(),
        tool: Some(tool.to_string()),
        risk: Some(risk),
        args_sha256: Some(arguments.sha256.clone()),
        pin_changed,
        decision: Decision { verdict: Verdict::Allow, rule: String::new(), reason: "allowed", shadowed: false },
    };
    let as_tool_result = cx.acl.deny_as == DenyAs::ToolResult;
    let refuse = |refusal: Refusal, rec: &mut Record| -> Result<Step, HostError> {
        rec.decision.verdict = Verdict::Deny;
        rec.decision.rule = refusal.rule.clone();
        rec.decision.reason = refusal.reason;
        Ok(Step::Refuse { refusal, record: rec.clone(), as_tool_result })
    };
    if pin_changed && server.pinning == Pinning::Refuse {
        return refuse(Refusal::new(PINNING_RULE, "tool_definition_changed"), &mut rec);
    }

    let call = Call { server: &server.name, tool, risk, arguments: Some(&arguments.value) };
    let outcome = evaluate(cx.acl, cx.caller, &call);
    let mut pending = Pending::default();
    rec.decision.rule = outcome.rule().to_string();
    match outcome {
        Outcome::Deny { rule, reason, hint } => {
            let refusal = Refusal { hint, ..Refusal::new(rule, reason) };
            return refuse(refusal, &mut rec);
        }
        Outcome::NeedsApproval { rule } => {
            let approvals = cx.acl.approvals.as_ref();
            let token = params.meta.as_ref().and_then(|m| m.approval.as_deref());
            let ask = |reason| Refusal {
                hint: Hint::Approval,
                tool: Some(format!("{}/{}", server.name, tool)),
                args_sha256: Some(arguments.sha256.clone()),
                ..Refusal::new(rule.clone(), reason)
            };
            let (Some(approvals), Some(token)) = (approvals, token) else {
                return refuse(ask("approval_required"), &mut rec);
            };
            let approved = ApprovedCall { server: &server.name, tool, args_sha256: &arguments.sha256 };
            match approval::verify(approvals, token, cx.caller, &approved, cx.now) {
                // Spent once the whole body is known to go on (see `decide`).
                Ok(verified) => pending.approval = Some((verified, ask("approval_reused"))),
                Err(e) => return refuse(ask(e.reason()), &mut rec),
            }
            rec.decision.reason = "approved";
        }
        Outcome::Allow { .. } => {}
    }

    let limits = &cx.acl.limits;
    if limits.any() {
        let Some(session) = cx.caller.limit_key() else {
            return refuse(Refusal::new(LIMITS_RULE, "no_principal_for_limits"), &mut rec);
        };
        // The call limits: budgets of the budget engine, counted per session (or agent).
        let caller = Caller { session: Some(session.clone()), ..cx.caller.clone() };
        let now = cx.now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let held = match &limits.budgets {
            Some(budgets) => {
                let planner = Planner { policy: budgets, host: cx.host, caller: &caller, now };
                let call = ToolCall { id: String::new(), server: server.name.clone(), tool: tool.to_string(), risk };
                match planner.reserve_calls(std::slice::from_ref(&call), None)? {
                    Ok(Counted::Held(plan)) => Some(plan),
                    Ok(Counted::Refused(refusal)) => {
                        let verdict = if budgets.budgets[refusal.budget].id == WRITES_BUDGET {
                            LimitVerdict::TooManyWrites
                        } else {
                            LimitVerdict::TooManyCalls
                        };
                        return refuse(Refusal::new(LIMITS_RULE, verdict.reason()), &mut rec);
                    }
                    Err(PlanError::TooManyCounters { .. }) => {
                        return refuse(Refusal::new(LIMITS_RULE, LimitVerdict::TooManySessions.reason()), &mut rec);
                    }
                    Err(_) => return refuse(Refusal::new(LIMITS_RULE, "no_principal_for_limits"), &mut rec),
                }
            }
            None => None,
        };
        pending.counted = held.map(|plan| (caller, plan));
        if limits.loop_max_repeats > 0 {
            let call_key = format!("{}/{tool}/{}", server.name, arguments.sha256);
            let agent = cx.caller.agent.as_deref().unwrap_or_default();
            let verdict = check_loop(cx.host, limits, agent, &session, &call_key, cx.now)?;
            if verdict != LimitVerdict::Within {
                // A call refused here is not counted.
                pending.release(cx)?;
                return refuse(Refusal::new(LIMITS_RULE, verdict.reason()), &mut rec);
            }
        }
    }
    Ok(Step::Pass(rec, Box::new(pending)))
}
