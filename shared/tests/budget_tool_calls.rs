//! Budgets that count MCP tool calls: the policy's rules, and token-budget's flow on an MCP
//! request whose calls tool-acl recorded (counted per session and agent, priced into a cost
//! budget shared with model spend, drawn at the rate-limit service, refused in JSON-RPC).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use prost::Message;
use serde_json::Value;
use std::rc::Rc;
use warden_policy::budget::flow::BudgetFlow;
use warden_policy::budget::rls::{self, RateLimitRequest};
use warden_policy::budget::tool_call::{ToolCall, ToolCalls};
use warden_policy::budget::vm::BudgetVm;
use warden_policy::host::Action;
use warden_policy::policy::parse_document;
use warden_policy::testing::principal;
use warden_policy::testing::{rls_answer, MemoryHost};
use warden_policy::tool_acl::risk::Risk;

const TOOL_ACL: &str = "toolAcl:
  servers:
    - name: orders
      pathPrefix: /mcp
      tools:
        - { name: get_order, risk: read }
        - { name: issue_refund, risk: write }
  rules:
    - { id: all, effect: allow, servers: [orders] }
";

fn policy(budgets: &str) -> String {
    format!(
        "{TOOL_ACL}tokenBudget:\n  rateLimitService: {{ cluster: ratelimit }}\n  models:\n    - {{ name: gpt-4o, price: {{ input: 2.5, output: 10 }} }}\n  tools:\n    - {{ name: issue_refund, server: orders, price: 0.04 }}\n  budgets:\n{budgets}"
    )
}

const REFUNDS: &str = "    - { id: refunds, scope: [session, agent], unit: toolCalls, limit: 3, window: session, when: { tools: [issue_refund] } }\n";

fn vm(policy: &str) -> Rc<BudgetVm> {
    Rc::new(BudgetVm::configure(&parse_document(policy.as_bytes()).unwrap(), 7).unwrap())
}

fn configure_error(policy: &str) -> String {
    match BudgetVm::configure(&parse_document(policy.as_bytes()).unwrap(), 7) {
        Ok(_) => panic!("accepted: {policy}"),
        Err(e) => e,
    }
}

/// One gateway's shared data: every request of a test goes through it.
fn gateway() -> Rc<MemoryHost> {
    let host = MemoryHost::with_headers(&[
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "gw"),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
    ]);
    host.now_secs.set(1_800_000_000);
    Rc::new(host)
}

/// The next MCP POST on `host`, for `session`, its calls recorded by tool-acl.
fn mcp_post(host: &Rc<MemoryHost>, session: &str, calls: &[(&str, &str, Risk)], batch: bool) -> Rc<MemoryHost> {
    host.properties.borrow_mut().clear();
    *host.reply.borrow_mut() = None;
    host.metrics.borrow_mut().clear();
    host.set_principal(&principal::with(|p| {
        p.agent = "support-agent".into();
        p.session = Some(session.into());
    }));
    let calls = calls
        .iter()
        .map(|(id, tool, risk)| ToolCall {
            id: (*id).into(),
            server: "orders".into(),
            tool: (*tool).into(),
            risk: *risk,
        })
        .collect();
    ToolCalls { batch, calls, other_ids: vec![] }.write(&**host).unwrap();
    host.clone()
}

fn send(vm: &Rc<BudgetVm>, host: &Rc<MemoryHost>) -> (Action, Action, BudgetFlow) {
    let mut flow = BudgetFlow::new(host.clone(), Some(vm.clone()));
    let headers = flow.on_request_headers(false);
    let body = flow.on_request_body(40, true);
    (headers, body, flow)
}

fn reply(host: &MemoryHost) -> (u32, Value) {
    let reply = host.reply.borrow().clone().expect("a local reply");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

fn refund(id: &str) -> (&str, &'static str, Risk) {
    (id, "issue_refund", Risk::Write)
}

#[test]
fn a_session_gets_three_refunds_and_the_fourth_is_refused_in_json_rpc() {
    let gw = gateway();
    let vm = vm(&policy(REFUNDS));
    for i in 1..=3 {
        let host = mcp_post(&gw, "s-1", &[refund(&i.to_string())], false);
        let (headers, body, _) = send(&vm, &host);
        assert_eq!((headers, body), (Action::Pause, Action::Continue), "refund {i}");
        assert!(host.reply.borrow().is_none());
        let decision = host.field("warden.audit", "token_budget.decision");
        assert_eq!(decision.as_deref(), Some("allow;rule=refunds;reason=within_budget"));
    }
    // Reads are not refunds: not counted, not refused.
    let host = mcp_post(&gw, "s-1", &[("9", "get_order", Risk::Read)], false);
    assert_eq!(send(&vm, &host).1, Action::Continue);

    let host = mcp_post(&gw, "s-1", &[refund("\"four\"")], false);
    assert_eq!(send(&vm, &host).1, Action::Pause);
    let (status, body) = reply(&host);
    assert_eq!(status, 200, "refused as an MCP server refuses a call");
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], "four", "answered by the call's own id");
    assert_eq!(body["error"]["code"], -32001);
    assert_eq!(body["error"]["data"]["rule"], "refunds");
    assert_eq!(body["error"]["data"]["reason"], "budget_exhausted");
    assert!(body["error"]["message"].as_str().unwrap().contains("3 of 3 tool calls"), "{body}");
    assert_eq!(host.metric("warden.token_budget.refused.refunds"), 1);

    // Another session of the same agent has its own three.
    let host = mcp_post(&gw, "s-2", &[refund("1")], false);
    assert_eq!(send(&vm, &host).1, Action::Continue);
}

#[test]
fn a_batch_is_counted_whole_and_refused_whole() {
    let gw = gateway();
    let vm = vm(&policy(REFUNDS));
    let host = mcp_post(&gw, "s-1", &[refund("1"), refund("2")], true);
    assert_eq!(send(&vm, &host).1, Action::Continue);
    // Two more would make four: both refused, nothing counted, each answered.
    let host = mcp_post(&gw, "s-1", &[refund("3"), refund("4")], true);
    let mut calls = ToolCalls::read(&*host).unwrap().unwrap();
    calls.other_ids.push("5".into());
    calls.write(&*host).unwrap();
    assert_eq!(send(&vm, &host).1, Action::Pause);
    let (_, body) = reply(&host);
    let ids: Vec<&Value> = body.as_array().unwrap().iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, [3, 4, 5]);
    // The refused batch took nothing: one more refund fits.
    let host = mcp_post(&gw, "s-1", &[refund("6")], false);
    assert_eq!(send(&vm, &host).1, Action::Continue);
}

#[test]
fn one_cost_budget_counts_tool_prices_and_model_spend() {
    let gw = gateway();
    let budgets = "    - { id: tenant-day, scope: [tenant], unit: costUsd, limit: 0.10, window: day }\n";
    let vm = vm(&policy(budgets));
    assert!(vm.policy.budgets[0].applies(&Default::default(), "gpt-4o"), "the same budget counts model requests");
    for id in ["1", "2"] {
        let host = mcp_post(&gw, "s-1", &[refund(id)], false);
        assert_eq!(send(&vm, &host).1, Action::Continue);
        assert_eq!(host.metric("warden.token_budget.cost_micro_usd"), 40_000);
    }
    // $0.08 spent: a third $0.04 refund would pass $0.10.
    let host = mcp_post(&gw, "s-2", &[refund("3")], false);
    assert_eq!(send(&vm, &host).1, Action::Pause);
    assert_eq!(reply(&host).1["error"]["data"]["rule"], "tenant-day");
    // An unpriced tool costs nothing and passes.
    let host = mcp_post(&gw, "s-2", &[("4", "get_order", Risk::Read)], false);
    assert_eq!(send(&vm, &host).1, Action::Continue);
}

#[test]
fn a_global_tool_budget_is_drawn_and_settled_at_what_it_drew() {
    let gw = gateway();
    let budgets = "    - { id: tenant-refunds, scope: [tenant], unit: toolCalls, limit: 100, window: day, store: global, when: { risks: [write] } }\n";
    let vm = vm(&policy(budgets));
    let host = mcp_post(&gw, "s-1", &[refund("1"), refund("2")], true);
    let (_, body, mut flow) = send(&vm, &host);
    assert_eq!(body, Action::Pause, "waits for the service");
    let call = host.grpc_calls.borrow().last().cloned().expect("a draw");
    let request = RateLimitRequest::decode(call.message.as_slice()).unwrap();
    assert_eq!(request.descriptors[0].entries[0].value, "tenant-refunds");
    assert_eq!(request.descriptors[0].hits_addend, Some(2), "the batch's two calls in one draw");
    *host.grpc_answer.borrow_mut() = rls_answer(rls::CODE_OK, 98);
    let size = host.grpc_answer.borrow().len();
    flow.on_grpc_answer(1, 0, size);
    assert_eq!(host.resumed.get(), 1);
    assert_eq!(vm.queued_settles(), 1, "settled at once: a call sent counts");
    assert!(vm.send_settles(&*host).is_none());
    let settle = host.grpc_calls.borrow().last().cloned().unwrap();
    let request = RateLimitRequest::decode(settle.message.as_slice()).unwrap();
    let last = request.descriptors[0].entries.last().unwrap();
    assert_eq!(rls::parse_settle(&last.value).map(|(used, _)| used), Some(2), "nothing given back");
    flow.on_log();
    assert_eq!(vm.queued_settles(), 0, "settled once");

    // Over the limit at the service: refused in JSON-RPC.
    let host = mcp_post(&gw, "s-1", &[refund("7")], false);
    let (_, _, mut flow) = send(&vm, &host);
    *host.grpc_answer.borrow_mut() = rls_answer(rls::CODE_OVER_LIMIT, 0);
    let size = host.grpc_answer.borrow().len();
    let token = host.grpc_calls.borrow().len() as u32;
    flow.on_grpc_answer(token, 0, size);
    let (status, body) = reply(&host);
    assert_eq!((status, body["id"].clone()), (200, Value::from(7)));
    assert_eq!(body["error"]["data"]["rule"], "tenant-refunds");
}

#[test]
fn an_mcp_request_tool_acl_did_not_record_is_refused_not_passed() {
    let vm = vm(&policy(REFUNDS));
    let host = Rc::new(MemoryHost::with_headers(&[(":method", "POST"), (":path", "/mcp"), (":authority", "gw")]));
    host.set_principal(&principal::example());
    let mut flow = BudgetFlow::new(host.clone(), Some(vm.clone()));
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(flow.on_request_body(10, true), Action::Pause);
    let (status, body) = reply(&host);
    assert_eq!(status, 503);
    assert_eq!(body["error"]["data"]["reason"], "tool_calls_unrecorded");
    assert_eq!(body["error"]["code"], -32603, "a fault, not a policy's refusal");
    // Not an MCP server's path: token-budget does not wait for a record there.
    let host = Rc::new(MemoryHost::with_headers(&[(":method", "POST"), (":path", "/other"), (":authority", "gw")]));
    let mut flow = BudgetFlow::new(host.clone(), Some(vm));
    assert_eq!(flow.on_request_headers(false), Action::Continue);
}

#[test]
fn tool_call_budgets_are_checked_at_configure_time_naming_the_field() {
    let models =
        "    - { id: b, scope: [session], unit: toolCalls, limit: 3, window: session, when: { models: [gpt-4o] } }\n";
    assert!(configure_error(&policy(models)).contains("tokenBudget.budgets[0].when.models"));
    let tokens = "    - { id: b, scope: [tenant], unit: totalTokens, limit: 3, window: day, when: { tools: [x] } }\n";
    assert!(configure_error(&policy(tokens)).contains("tokenBudget.budgets[0].unit"));
    let scope = "    - { id: b, scope: [tenant, tool], unit: totalTokens, limit: 3, window: day }\n";
    assert!(configure_error(&policy(scope)).contains("tokenBudget.budgets[0].scope"));
    let server =
        "    - { id: b, scope: [tenant], unit: toolCalls, limit: 3, window: day, when: { servers: [ordres] } }\n";
    assert!(configure_error(&policy(server)).contains("no toolAcl server is named \"ordres\""));
    let without_acl =
        "tokenBudget:\n  budgets:\n    - { id: b, scope: [tenant], unit: toolCalls, limit: 3, window: day }\n";
    assert!(configure_error(without_acl).contains("need the toolAcl section"));
    let unpriced = format!("{TOOL_ACL}tokenBudget:\n  budgets:\n    - {{ id: b, scope: [tenant], unit: costUsd, limit: 3, window: day, when: {{ tools: [x] }} }}\n");
    assert!(configure_error(&unpriced).contains("tokenBudget.tools"));
    // Per tool: a scope part of tool calls.
    let per_tool = "    - { id: b, scope: [session, tool], unit: toolCalls, limit: 3, window: session }\n";
    vm(&policy(per_tool));
}

fn caller(agent: &str, session: &str) -> warden_policy::principal::Caller {
    warden_policy::principal::Caller {
        agent: Some(agent.into()),
        tenant: Some("acme".into()),
        session: Some(session.into()),
        ..Default::default()
    }
}

fn refund_call(id: &str) -> ToolCall {
    ToolCall { id: id.into(), server: "orders".into(), tool: "issue_refund".into(), risk: Risk::Write }
}

/// A counter whose scope names neither the agent nor a session is one counter for everyone in
/// it, found by its scope alone: two agents of a tenant share `[tenant, tool]` and
/// `[tenant, model]` budgets, whichever asks.
#[test]
fn a_tenant_counter_per_tool_or_model_is_shared_by_the_tenants_agents() {
    use warden_policy::budget::plan::{Outcome, Planner, Usage};
    let budgets = "    - { id: per-tool, scope: [tenant, tool], unit: toolCalls, limit: 1, window: day }
    - { id: per-model, scope: [tenant, model], unit: totalTokens, limit: 100, window: day }
";
    let vm = vm(&policy(budgets));
    let host = MemoryHost::default();
    host.now_secs.set(1_800_000_000);
    let (a, b) = (caller("agent-a", "s-a"), caller("agent-b", "s-b"));
    let planner = |caller| Planner { policy: &vm.policy, host: &host, caller, now: 1_800_000_000 };
    let held = |outcome| matches!(outcome, Ok(Ok(Outcome::Held(_))));
    assert!(held(planner(&a).reserve_calls(&[refund_call("1")], None)));
    assert!(!held(planner(&b).reserve_calls(&[refund_call("2")], None)), "agent b draws on the same counter");
    let usage = Usage { input: 60, cached_input: 0, output: 0 };
    assert!(held(planner(&a).reserve("gpt-4o", Usage { output: 1, ..usage }, None)));
    assert!(!held(planner(&b).reserve("gpt-4o", Usage { output: 1, ..usage }, None)));
}

/// A cost budget counted per model has no counter for a tool call: the calls are not priced
/// into it (rather than into a model named "").
#[test]
fn a_cost_budget_per_model_does_not_count_tool_calls() {
    let budgets = "    - { id: per-model-cost, scope: [tenant, model], unit: costUsd, limit: 0.05, window: day }\n";
    let vm = vm(&policy(budgets));
    assert!(!vm.policy.budgets[0].applies_to_call(&caller("a", "s"), &refund_call("1")));
    let gw = gateway();
    for id in ["1", "2", "3"] {
        assert_eq!(send(&vm, &mcp_post(&gw, "s-1", &[refund(id)], false)).1, Action::Continue);
    }
}

/// A session's counter idle past `sessionIdle` is over: the same id counts again from zero.
#[test]
fn an_idle_sessions_counts_start_again() {
    let vm = vm(&policy(REFUNDS).replace("  budgets:\n", "  sessionIdle: 10m\n  budgets:\n"));
    let gw = gateway();
    for id in ["1", "2", "3"] {
        assert_eq!(send(&vm, &mcp_post(&gw, "s-1", &[refund(id)], false)).1, Action::Continue);
    }
    assert_eq!(send(&vm, &mcp_post(&gw, "s-1", &[refund("4")], false)).1, Action::Pause);
    gw.now_secs.set(1_800_000_000 + 601);
    assert_eq!(send(&vm, &mcp_post(&gw, "s-1", &[refund("5")], false)).1, Action::Continue);
}
