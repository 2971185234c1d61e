//! The token-budget flow, callback by callback, over an in-memory host: the scenarios of the
//! wasm harness (`integration-tests/tests/token_budget_harness.rs`) without a VM, so that each
//! decision the glue used to make is tested natively: held headers, edits and their length,
//! the route chosen again, fallback, refusal in the API's shape, the rate-limit service's
//! answers and failures per failure mode, shadow mode, trailers, metering and settling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use prost::Message;
use serde_json::{json, Value};
use std::rc::Rc;
use warden_policy::budget::flow::BudgetFlow;
use warden_policy::budget::rls::{self, RateLimitRequest};
use warden_policy::budget::vm::BudgetVm;
use warden_policy::host::{Action, Host};
use warden_policy::policy::parse_document;
use warden_policy::testing::principal;
use warden_policy::testing::{rls_answer, MemoryHost};

const LOCAL: &str = "tokenBudget:
  defaultMaxOutputTokens: 100
  models:
    - { name: gpt-4o-mini, price: { input: 0.15, output: 0.60 } }
    - { name: gpt-4o, price: { input: 2.50, output: 10.00 } }
  budgets:
    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day }
";

fn vm(policy: &str) -> Rc<BudgetVm> {
    Rc::new(BudgetVm::configure(&parse_document(policy.as_bytes()).unwrap(), 7).unwrap())
}

fn global(failure_mode: &str) -> String {
    format!(
        "tokenBudget:\n  defaultMaxOutputTokens: 100\n  rateLimitService: {{ cluster: ratelimit }}\n  budgets:\n    - {{ id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day, store: global, failureMode: {failure_mode} }}\n"
    )
}

/// A host carrying a principal for tenant `tenant`, and a model request's headers.
fn host(tenant: &str) -> Rc<MemoryHost> {
    let host = MemoryHost::with_headers(&[
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
        ("content-length", "0"),
    ]);
    host.now_secs.set(1_800_000_000);
    host.set_principal(&principal::with(|p| {
        p.agent = "planner".into();
        p.tenant = Some(tenant.into());
    }));
    Rc::new(host)
}

fn chat(model: &str, extra: Value) -> Vec<u8> {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello there"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string().into_bytes()
}

/// Sends headers and the whole body; returns the actions of both callbacks.
fn post(flow: &mut BudgetFlow, host: &MemoryHost, body: &[u8]) -> (Action, Action) {
    host.set_request_header("content-length", Some(&body.len().to_string())).unwrap();
    let headers = flow.on_request_headers(false);
    *host.request_body.borrow_mut() = body.to_vec();
    (headers, flow.on_request_body(body.len(), true))
}

/// Answers with a JSON completion billing `input` + `output` tokens, and ends the stream.
fn answer(flow: &mut BudgetFlow, host: &MemoryHost, input: u64, output: u64) {
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    assert_eq!(flow.on_response_headers(), Action::Continue);
    let body = json!({"choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output}}).to_string();
    *host.response_body.borrow_mut() = body.clone().into_bytes();
    assert_eq!(flow.on_response_body(body.len(), true), Action::Continue);
    flow.on_log();
}

fn sent(host: &MemoryHost) -> Value {
    serde_json::from_slice(&host.request_body.borrow()).unwrap()
}

fn field(host: &MemoryHost, key: &str, path: &str) -> Option<String> {
    host.field(key, path)
}

fn reply_json(host: &MemoryHost) -> (u32, Value) {
    let reply = host.reply.borrow();
    let reply = reply.as_ref().expect("a local reply");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

#[test]
fn a_request_is_held_reserved_rewritten_with_its_length_routed_and_settled() {
    let vm = vm(LOCAL);
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm));
    let (headers, body) = post(&mut flow, &host, &chat("gpt-4o", json!({"stream": false})));
    assert_eq!((headers, body), (Action::Pause, Action::Continue), "headers held until reserved");
    let request = sent(&host);
    assert_eq!(request["max_completion_tokens"], 100, "the policy's default cap written in");
    assert_eq!(host.header("content-length"), Some(host.request_body.borrow().len().to_string()));
    assert_eq!(host.header("x-warden-model").as_deref(), Some("gpt-4o"));
    assert_eq!(host.route_cache_cleared.get(), 1);
    assert_eq!(host.header("accept-encoding").as_deref(), Some("identity"));
    let estimated: u64 = field(&host, "warden.audit", "token_budget.tokens.estimated").unwrap().parse().unwrap();
    assert_eq!(field(&host, "warden.audit", "token_budget.tokens.reserved"), Some((estimated + 100).to_string()));
    assert_eq!(
        field(&host, "warden.audit", "token_budget.decision").as_deref(),
        Some("allow;rule=tenant-day;reason=within_budget")
    );
    answer(&mut flow, &host, 9, 5);
    assert_eq!(field(&host, "warden.audit", "token_budget.tokens.input").as_deref(), Some("9"));
    assert_eq!(field(&host, "warden.audit", "token_budget.tokens.output").as_deref(), Some("5"));
    assert_eq!(field(&host, "warden.audit", "token_budget.cost_usd").as_deref(), Some("0.000073"));
    assert_eq!(host.metric("warden.token_budget.allowed"), 1);
}

#[test]
fn a_spent_budget_falls_back_once_then_refuses_in_the_apis_shape() {
    let policy = LOCAL.replace(
        "    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day }",
        "    - { id: dear, scope: [tenant], unit: costUsd, limit: 0.0005, window: day, fallbackModel: gpt-4o-mini, when: { models: [gpt-4o] } }\n    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day }",
    );
    let vm = vm(&policy);
    // gpt-4o with 100 output tokens reserved costs more than $0.0005: gpt-4o-mini is served.
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm.clone()));
    assert_eq!(post(&mut flow, &host, &chat("gpt-4o", json!({}))).1, Action::Continue);
    assert_eq!(sent(&host)["model"], "gpt-4o-mini");
    assert_eq!(host.header("x-warden-model").as_deref(), Some("gpt-4o-mini"), "the route is chosen for it");
    assert_eq!(field(&host, "warden.audit", "token_budget.model_requested").as_deref(), Some("gpt-4o"));
    assert_eq!(field(&host, "warden.audit", "token_budget.model_served").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(field(&host, "warden.audit", "token_budget.fallback_budget").as_deref(), Some("dear"));
    assert_eq!(host.metric("warden.token_budget.fallback"), 1);
    answer(&mut flow, &host, 10, 10);

    // A request the tenant's token budget cannot take: 429 in OpenAI's shape, naming the rule.
    let host = self::host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm));
    let (_, action) = post(&mut flow, &host, &chat("gpt-4o-mini", json!({"max_tokens": 5000})));
    assert_eq!(action, Action::Pause);
    let (status, body) = reply_json(&host);
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "budget_exhausted");
    assert_eq!(body["error"]["rule"], "tenant-day");
    assert_eq!(body["error"]["request_id"], "req-1");
    assert_eq!(
        field(&host, "warden.audit", "token_budget.decision").as_deref(),
        Some("deny;rule=tenant-day;reason=budget_exhausted")
    );
}

#[test]
fn shadow_mode_records_a_refusal_and_forwards_the_request_unedited() {
    let policy = LOCAL.replace("tokenBudget:\n", "tokenBudget:\n  mode: shadow\n");
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm(&policy)));
    let body = chat("gpt-4o", json!({"max_tokens": 5000}));
    assert_eq!(post(&mut flow, &host, &body).1, Action::Continue);
    assert!(host.reply.borrow().is_none());
    assert_eq!(*host.request_body.borrow(), body, "forwarded as sent");
    assert_eq!(
        field(&host, "warden.audit", "token_budget.decision").as_deref(),
        Some("shadow_deny;rule=tenant-day;reason=budget_exhausted")
    );
    assert_eq!(host.metric("warden.token_budget.shadow_refused"), 1);
}

#[test]
fn a_global_budget_is_drawn_at_the_service_resumed_and_settled_from_the_queue() {
    let vm = vm(&global("deny"));
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm.clone()));
    assert_eq!(post(&mut flow, &host, &chat("gpt-4o", json!({"max_tokens": 50}))).1, Action::Pause);
    let call = host.grpc_calls.borrow().last().cloned().expect("a reservation");
    assert_eq!((call.cluster.as_str(), call.service.as_str()), ("ratelimit", rls::SERVICE));
    let request = RateLimitRequest::decode(call.message.as_slice()).unwrap();
    assert_eq!(request.descriptors[0].entries[0].value, "tenant-day");
    let body_len = chat("gpt-4o", json!({"max_tokens": 50})).len() as u64;
    assert!(request.descriptors[0].hits_addend.unwrap() > 50, "the prompt's upper bound, plus the cap");
    assert!(request.descriptors[0].hits_addend.unwrap() <= body_len + 50 + 16);
    *host.grpc_answer.borrow_mut() = rls_answer(rls::CODE_OK, 2000);
    let size = host.grpc_answer.borrow().len();
    flow.on_grpc_answer(1, 0, size);
    assert_eq!(host.resumed.get(), 1, "the held request goes on");
    answer(&mut flow, &host, 9, 5);
    assert_eq!(vm.queued_settles(), 1, "settled from the root, not from the request");
    assert!(vm.send_settles(&*host).is_none());
    let settle = host.grpc_calls.borrow().last().cloned().unwrap();
    let request = RateLimitRequest::decode(settle.message.as_slice()).unwrap();
    let last = request.descriptors[0].entries.last().unwrap();
    assert_eq!(rls::parse_settle(&last.value).map(|(used, _)| used), Some(14));

    // Over the limit at the service: the prompt's upper bound did not fit, so it is counted
    // exactly and drawn again; over the limit again, 429 with the service's reset time.
    let host = self::host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm));
    post(&mut flow, &host, &chat("gpt-4o", json!({"max_tokens": 50})));
    let drawn = |host: &MemoryHost| {
        let call = host.grpc_calls.borrow().last().cloned().unwrap();
        RateLimitRequest::decode(call.message.as_slice()).unwrap().descriptors[0].hits_addend.unwrap()
    };
    let bound = drawn(&host);
    *host.grpc_answer.borrow_mut() = rls_answer(rls::CODE_OVER_LIMIT, 3);
    let size = host.grpc_answer.borrow().len();
    flow.on_grpc_answer(1, 0, size);
    assert!(host.reply.borrow().is_none(), "not refused on the bound alone");
    assert_eq!(host.grpc_calls.borrow().len(), 2);
    assert!(drawn(&host) < bound, "the exact count draws less than the bound");
    assert_eq!(host.metric("warden.token_budget.prompts_counted_exactly"), 1);
    flow.on_grpc_answer(2, 0, size);
    let reply = host.reply.borrow();
    let reply = reply.as_ref().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.iter().any(|(k, v)| k == "retry-after" && v == "600"), "{:?}", reply.headers);
}

#[test]
fn each_failure_mode_decides_when_the_service_cannot_be_reached() {
    for (mode, refused) in [("deny", true), ("allow", false), ("local", false)] {
        let host = host("acme");
        host.failing_grpc_calls.set(true);
        let mut flow = BudgetFlow::new(host.clone(), Some(vm(&global(mode))));
        let (_, action) = post(&mut flow, &host, &chat("gpt-4o", json!({"max_tokens": 50})));
        assert_eq!(host.reply.borrow().is_some(), refused, "{mode}");
        assert_eq!(action, if refused { Action::Pause } else { Action::Continue }, "{mode}");
        assert!(host.metric("warden.token_budget.failure_mode_applied") >= 1, "{mode}");
        if mode == "local" {
            assert!(host.shared_keys().iter().any(|k| k.contains("tenant-day")), "counted here instead");
        }
    }
}

/// HTTP/2 lets a request end in trailers: it is reserved on the body held so far.
#[test]
fn a_request_ending_in_trailers_is_decided_there() {
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm(LOCAL)));
    let body = chat("gpt-4o", json!({"max_tokens": 10}));
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    *host.request_body.borrow_mut() = body.clone();
    assert_eq!(flow.on_request_body(body.len(), false), Action::Pause, "held until the end");
    assert_eq!(flow.on_request_trailers(), Action::Continue);
    assert!(field(&host, "warden.audit", "token_budget.tokens.reserved").is_some());
    // Trailers with no body before them: a POST without a body.
    let host = self::host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm(LOCAL)));
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(flow.on_request_trailers(), Action::Pause);
    assert_eq!(reply_json(&host).0, 400);
}

/// `requestHeaders: release`: the headers go first, so the length is dropped for Envoy to
/// frame the edited body, and the route is not chosen again.
#[test]
fn released_headers_go_first_without_their_length() {
    let policy = format!("requestHeaders: release\n{LOCAL}");
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), Some(vm(&policy)));
    assert_eq!(post(&mut flow, &host, &chat("gpt-4o", json!({}))), (Action::Continue, Action::Continue));
    assert_eq!(host.header("content-length"), None);
    assert_eq!(host.header("x-warden-model"), None);
    assert_eq!(host.route_cache_cleared.get(), 0);
}

/// Counted exactly from the start where the bound would cost more than a refusal: an uncapped
/// request (its output room is what the budgets leave after the prompt), and a rate-limit
/// service that cannot give back what was drawn.
#[test]
fn the_bound_is_not_used_where_it_would_cost_more_than_a_refusal() {
    let estimated = |policy: &str, body: &[u8]| {
        let host = host("acme");
        let mut flow = BudgetFlow::new(host.clone(), Some(vm(policy)));
        post(&mut flow, &host, body);
        field(&host, "warden.audit", "token_budget.tokens.estimated").unwrap().parse::<u64>().unwrap()
    };
    let capped = chat("gpt-4o", json!({"max_tokens": 10}));
    let bound = estimated(LOCAL, &capped);
    let uncapped_policy = LOCAL.replace("  defaultMaxOutputTokens: 100\n", "");
    let exact = estimated(&uncapped_policy, &chat("gpt-4o", json!({})));
    assert!(exact < bound, "uncapped: exact {exact}, bound {bound}");
    let standard_service = global("allow").replace("{ cluster: ratelimit }", "{ cluster: ratelimit, release: false }");
    assert_eq!(estimated(&standard_service, &capped), exact);
}

#[test]
fn without_a_policy_every_request_is_refused() {
    let host = host("acme");
    let mut flow = BudgetFlow::new(host.clone(), None);
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(reply_json(&host).0, 503);
}

const ROUTED: &str = "router:
  providers:
    - { name: openai, kind: openai, cluster: a }
    - { name: backup, kind: openaiCompatible, cluster: b }
  models:
    - alias: fast
      targets: [{ provider: openai, model: gpt-4o-mini }, { provider: backup, model: gpt-4o-mini, priority: 1 }]
tokenBudget:
  defaultMaxOutputTokens: 100
  models:
    - { name: gpt-4o-mini, provider: openai, price: { input: 1.0, output: 2.0 } }
    - { name: gpt-4o-mini, provider: backup, price: { input: 3.0, output: 1.0 } }
  budgets:
    - { id: tenant-cost, scope: [tenant], unit: costUsd, limit: 1, window: day }
";

/// The router's plan, as the attempt filter leaves it when `provider` served.
fn served_by(host: &MemoryHost, provider: &str) {
    use warden_policy::router::plan::{Attempt, Outcome, PlannedTarget, RoutePlan};
    let target = PlannedTarget { provider: provider.into(), model: "gpt-4o-mini".into() };
    let attempt = Attempt {
        provider: provider.into(),
        model: "gpt-4o-mini".into(),
        outcome: Outcome::Answered,
        status: Some(200),
        sent_ms: 0,
        ttfb_ms: Some(1),
        retry_after_ms: None,
    };
    let plan = RoutePlan {
        endpoint: "chat/completions".into(),
        alias: "fast".into(),
        body_model: "fast".into(),
        targets: vec![target],
        attempts: vec![attempt],
    };
    plan.write(host).unwrap();
}

#[test]
fn an_alias_is_reserved_at_its_dearest_target_and_charged_at_the_provider_that_served() {
    for (provider, cost) in [("backup", "0.000032"), ("openai", "0.000019")] {
        let vm = vm(ROUTED);
        let host = host("acme");
        let mut flow = BudgetFlow::new(host.clone(), Some(vm.clone()));
        let (_, body) = post(&mut flow, &host, &chat("fast", json!({})));
        assert_eq!(body, Action::Continue);
        // Reserved at input 3.0 (backup's) and output 2.0 (openai's) per million.
        let estimated: u64 = field(&host, "warden.audit", "token_budget.tokens.estimated").unwrap().parse().unwrap();
        let price = vm.policy.model("fast").price.unwrap();
        assert_eq!((price.input, price.output), (3.0, 2.0));
        assert!(estimated > 0);
        served_by(&host, provider);
        answer(&mut flow, &host, 9, 5);
        assert_eq!(field(&host, "warden.audit", "token_budget.cost_usd").as_deref(), Some(cost), "{provider}");
        assert_eq!(field(&host, "warden.audit", "token_budget.provider").as_deref(), Some(provider));
        assert_eq!(field(&host, "warden.audit", "token_budget.model_served").as_deref(), Some("gpt-4o-mini"));
    }
}

#[test]
fn a_price_for_a_provider_the_router_does_not_have_is_refused() {
    let typo = ROUTED.replace("provider: backup, price", "provider: bakup, price");
    let Err(err) = BudgetVm::configure(&parse_document(typo.as_bytes()).unwrap(), 7) else { panic!("accepted") };
    assert!(err.contains("tokenBudget.models[1].provider") && err.contains("bakup"), "{err}");
}
