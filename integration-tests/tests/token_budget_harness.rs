//! The token-budget filter's wiring, driven through the wasmtime host: configure-time refusals,
//! several VMs racing on one shared-data store, the usage chunk asked for and removed, the
//! mid-stream cut, and the rate-limit service's answers and failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use prost::Message;
use serde_json::{json, Value};
use std::time::Duration;
use warden_integration_tests::proxy_wasm_host::{Action, HostEnv, Plugin, Vm};
use warden_integration_tests::repo;
use warden_policy::budget::rls::{self, RateLimitRequest};
use warden_policy::testing::{principal, rls_answer};

fn plugin() -> Plugin {
    Plugin::load(&repo::filter_wasm("warden_token_budget")).expect("built token-budget filter")
}

const LOCAL: &str = r#"
tokenBudget:
  defaultMaxOutputTokens: 100
  budgets:
    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day }
"#;

fn global(failure_mode: &str) -> String {
    format!(
        "tokenBudget:\n  defaultMaxOutputTokens: 100\n  rateLimitService: {{ cluster: ratelimit }}\n  budgets:\n    - {{ id: tenant-day, scope: [tenant], unit: totalTokens, limit: 3000, window: day, store: global, failureMode: {failure_mode} }}\n"
    )
}

fn stream(vm: &mut Vm, tenant: &str) -> u32 {
    let s = vm.new_stream().unwrap();
    vm.set_principal(
        s,
        &principal::with(|p| {
            p.agent = "planner".into();
            p.tenant = Some(tenant.into());
        }),
    );
    s
}

fn chat(content: &str, extra: Value) -> String {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

fn post(vm: &mut Vm, s: u32, body: &str) -> Action {
    let length = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    assert_eq!(vm.request_headers(s, &headers, false).unwrap(), Action::Pause, "body-reading filters hold the headers");
    vm.request_body(s, body.as_bytes(), true).unwrap()
}

/// Answers stream `s` with a JSON completion billing `input` + `output` tokens.
fn answer(vm: &mut Vm, s: u32, input: u64, output: u64) {
    vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false).unwrap();
    let body = json!({"choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output}}).to_string();
    vm.response_body(s, body.as_bytes(), true).unwrap();
    vm.finish(s).unwrap();
}

fn status(vm: &Vm, s: u32) -> Option<u32> {
    vm.local_reply(s).map(|r| r.status)
}

#[test]
fn refuses_a_policy_with_a_typo_and_names_the_field() {
    let policy = LOCAL.replace("window: day", "windw: day");
    let (vm, accepted) = plugin().start_unchecked(&HostEnv::default(), policy.as_bytes()).unwrap();
    assert!(!accepted);
    assert!(vm.log_text().contains("tokenBudget.budgets[0].windw: unknown field `windw`"), "{}", vm.log_text());
}

/// Three VMs (three Envoy workers) share one store: whatever the interleaving of admissions
/// and settles, no more is admitted than the budget holds, and what was billed stays within it.
#[test]
fn several_vms_never_overspend_one_budget() {
    let env = HostEnv::default();
    let mut vms: Vec<Vm> = (0..3).map(|_| plugin().start(&env, LOCAL.as_bytes()).unwrap()).collect();
    let body = chat("Summarise the quarterly report in three bullet points.", json!({"max_tokens": 200}));
    let mut in_flight: Vec<(usize, u32)> = Vec::new();
    let (mut billed, mut admitted, mut refused) = (0u64, 0, 0);
    for round in 0..60 {
        let v = round % 3;
        let s = stream(&mut vms[v], "acme");
        post(&mut vms[v], s, &body);
        match status(&vms[v], s) {
            None => {
                admitted += 1;
                in_flight.push((v, s));
            }
            Some(429) => refused += 1,
            other => panic!("unexpected reply {other:?}"),
        }
        // Every third round the oldest request is answered: it used far less than its cap.
        if round % 3 == 2 && !in_flight.is_empty() {
            let (v, s) = in_flight.remove(0);
            answer(&mut vms[v], s, 18, 40);
            billed += 58;
        }
        let reserved_now = in_flight.len() as u64 * 218;
        assert!(billed + reserved_now <= 3000, "round {round}: billed {billed} + in flight {reserved_now}");
    }
    for (v, s) in in_flight.drain(..) {
        answer(&mut vms[v], s, 18, 40);
        billed += 58;
    }
    assert!(refused > 0 && admitted > 13, "admitted {admitted}, refused {refused}");
    assert!(billed <= 3000);
    // Settled counters free room: after everything settled, 3000 - billed is left exactly.
    // In flight at their upper bound (the exact count only when that does not fit), they hold
    // at most what is left, and a refused one did not fit even counted exactly (218).
    let left = 3000 - billed;
    let (mut more, mut held) = (0, 0u64);
    for _ in 0..left / 218 + 2 {
        let s = stream(&mut vms[0], "acme");
        post(&mut vms[0], s, &body);
        if status(&vms[0], s).is_none() {
            more += 1;
            held += vms[0].field(s, "warden.audit", "token_budget.tokens.reserved").unwrap().parse::<u64>().unwrap();
        }
    }
    assert!(more >= 1 && held <= left, "{more} requests hold {held} of {left}");
    assert!(left - held < 218, "a refused request would have fitted: {} left", left - held);
}

#[test]
fn a_spent_budget_answers_429_with_retry_after_and_ratelimit_headers() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    post(&mut vm, s, &chat("hi", json!({"max_tokens": 2990})));
    assert_eq!(status(&vm, s), None);
    let s2 = stream(&mut vm, "acme");
    post(&mut vm, s2, &chat("hi", json!({"max_tokens": 50})));
    let reply = vm.local_reply(s2).unwrap();
    assert_eq!(reply.status, 429);
    let header = |name: &str| reply.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert!(header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(header("x-ratelimit-limit-tokens").as_deref(), Some("3000"));
    assert!(header("x-ratelimit-remaining-tokens").unwrap().parse::<u64>().unwrap() < 60);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["code"], "budget_exhausted");
    assert_eq!(body["error"]["type"], "insufficient_quota", "a day budget is a quota: SDKs must not retry");
    assert_eq!(body["error"]["rule"], "tenant-day");
    assert_eq!(
        vm.field(s2, "warden.audit", "token_budget.decision").unwrap(),
        "deny;rule=tenant-day;reason=budget_exhausted"
    );
}

#[test]
fn streams_get_usage_asked_for_and_removed_and_a_cap_written_in() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    assert_eq!(post(&mut vm, s, &chat("hi", json!({"stream": true}))), Action::Continue);
    let sent: Value = serde_json::from_slice(&vm.stream(s).unwrap().sent_request_body).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["max_completion_tokens"], 100, "the policy's default cap is written in");
    assert_eq!(
        vm.field(s, "warden.audit", "token_budget.tokens.reserved").unwrap(),
        (sent_estimate(&vm, s) + 100).to_string()
    );
    // The headers were held while the body was edited: its length is the new one, and the route
    // is chosen again for the model served.
    let length = vm.stream(s).unwrap().sent_request_body.len().to_string();
    assert_eq!(vm.forwarded_header(s, "content-length").as_deref(), Some(length.as_str()));
    assert_eq!(vm.forwarded_header(s, "x-warden-model").as_deref(), Some("gpt-4o"));
    assert_eq!(vm.route_cache_cleared(s), 1);
    vm.response_headers(s, &[(":status", "200"), ("content-type", "text/event-stream")], false).unwrap();
    let events = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":1}}\n\n",
        "data: [DONE]\n\n"
    );
    vm.response_body(s, events.as_bytes(), true).unwrap();
    let passed = String::from_utf8(vm.stream(s).unwrap().sent_response_body.clone()).unwrap();
    assert!(!passed.contains("usage") && passed.contains(" tok") && passed.ends_with("data: [DONE]\n\n"), "{passed}");
    assert_eq!(vm.field(s, "warden.audit", "token_budget.tokens.input").unwrap(), "8");
    assert_eq!(vm.field(s, "warden.audit", "token_budget.tokens.output").unwrap(), "1");
}

fn sent_estimate(vm: &Vm, s: u32) -> u64 {
    vm.field(s, "warden.audit", "token_budget.tokens.estimated").unwrap().parse().unwrap()
}

#[test]
fn a_stream_that_crosses_the_session_cap_ends_with_an_error_event() {
    let policy = "tokenBudget:\n  budgets:\n    - { id: session, scope: [session], unit: totalTokens, limit: 60, window: session }\n";
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, policy.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    // No cap anywhere: only the prompt is reserved, and the stream is watched.
    post(&mut vm, s, &chat("hi", json!({"stream": true})));
    assert_eq!(status(&vm, s), None);
    vm.response_headers(s, &[(":status", "200"), ("content-type", "text/event-stream")], false).unwrap();
    let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"}}]}\n\n";
    vm.response_body(s, event.repeat(30).as_bytes(), false).unwrap();
    vm.response_body(s, event.repeat(40).as_bytes(), false).unwrap();
    vm.response_body(s, b"data: [DONE]\n\n", true).unwrap();
    let passed = String::from_utf8(vm.stream(s).unwrap().sent_response_body.clone()).unwrap();
    let allowed = 60 - sent_estimate(&vm, s);
    assert_eq!(passed.matches("\" tok\"").count() as u64, allowed + 1, "the event that crossed is the last: {passed}");
    assert!(passed.ends_with("\"code\":\"budget_exhausted\",\"message\":\"the token budget for this session is spent; the answer was cut\",\"type\":\"tokens\"}}\n\ndata: [DONE]\n\n"), "{passed}");
    assert_eq!(env.metric("warden.token_budget.stream_cut"), 1);
}

fn reservation(vm: &Vm) -> (u32, RateLimitRequest) {
    let call = vm.grpc_calls().pop().expect("a reservation was sent");
    assert_eq!(
        (call.upstream.as_str(), call.service.as_str(), call.method.as_str()),
        ("ratelimit", rls::SERVICE, rls::METHOD)
    );
    assert_eq!(call.timeout, Duration::from_millis(20));
    (call.token, RateLimitRequest::decode(call.message.as_slice()).unwrap())
}

#[test]
fn global_budgets_reserve_at_the_service_and_settle_from_the_root() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, global("deny").as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    assert_eq!(post(&mut vm, s, &chat("hi", json!({"max_tokens": 50}))), Action::Pause);
    let (token, request) = reservation(&vm);
    let d = &request.descriptors[0];
    let entries: Vec<(&str, &str)> = d.entries.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(entries[..2], [("warden_budget", "tenant-day"), ("tenant", "acme")]);
    assert_eq!(entries[2].0, rls::RESERVATION_ENTRY, "the draw carries its reservation id");
    let reservation_id = entries[2].1.to_string();
    let reserved = sent_estimate(&vm, s) + 50;
    assert_eq!(d.hits_addend, Some(reserved));
    assert_eq!(d.limit.as_ref().map(|l| (l.requests_per_unit, l.unit)), Some((3000, rls::UNIT_DAY)));
    vm.respond_grpc_call(token, &rls_answer(rls::CODE_OK, 2000)).unwrap();
    assert_eq!(vm.resumed(s), 1);
    answer(&mut vm, s, 9, 5);
    // The settle goes out on the root's tick, not from the finished request.
    assert_eq!(vm.grpc_calls().len(), 0);
    vm.tick().unwrap();
    let settle = vm.grpc_calls().pop().expect("a settle call");
    let request = RateLimitRequest::decode(settle.message.as_slice()).unwrap();
    let entries = &request.descriptors[0].entries;
    let (id, last) = (&entries[entries.len() - 2], &entries[entries.len() - 1]);
    assert_eq!((id.key.as_str(), id.value.as_str()), (rls::RESERVATION_ENTRY, reservation_id.as_str()));
    assert_eq!(last.key, rls::SETTLE_ENTRY);
    let (used, _) = rls::parse_settle(&last.value).unwrap();
    assert_eq!(used, 14, "what was used, for the service to put in place of what was drawn");

    // Over the limit at the service: the prompt's upper bound is counted exactly and drawn
    // again; over again, 429, and nothing was held locally.
    let s = stream(&mut vm, "acme");
    post(&mut vm, s, &chat("hi", json!({"max_tokens": 50})));
    let (token, _) = reservation(&vm);
    vm.respond_grpc_call(token, &rls_answer(rls::CODE_OVER_LIMIT, 3)).unwrap();
    assert!(vm.local_reply(s).is_none(), "not refused on the bound alone");
    let (token, _) = reservation(&vm);
    vm.respond_grpc_call(token, &rls_answer(rls::CODE_OVER_LIMIT, 3)).unwrap();
    let reply = vm.local_reply(s).unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.iter().any(|(k, v)| k == "retry-after" && v == "600"), "{:?}", reply.headers);
}

/// A draw whose answer never came (timed out) may still have been counted by the service: it
/// is settled all the same, at nothing when the request was refused, so the service gives it
/// back if it landed and counts nothing if it lands later.
#[test]
fn a_draw_whose_answer_timed_out_is_settled_not_leaked() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, global("deny").as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    assert_eq!(post(&mut vm, s, &chat("hi", json!({"max_tokens": 50}))), Action::Pause);
    let (token, request) = reservation(&vm);
    let id = request.descriptors[0].entries.last().unwrap().value.clone();
    vm.fail_grpc_call(token, 4).unwrap(); // DEADLINE_EXCEEDED
    assert_eq!(vm.local_reply(s).unwrap().status, 503, "deny: refused");
    vm.finish(s).unwrap();
    vm.tick().unwrap();
    let settle = vm.grpc_calls().pop().expect("the timed-out draw is settled");
    let request = RateLimitRequest::decode(settle.message.as_slice()).unwrap();
    let entries = &request.descriptors[0].entries;
    assert_eq!(entries[entries.len() - 2].value, id);
    assert_eq!(rls::parse_settle(&entries[entries.len() - 1].value).map(|(used, _)| used), Some(0));
}

#[test]
fn each_failure_mode_decides_when_the_service_fails() {
    for (mode, expected) in [("deny", Some(503)), ("allow", None), ("local", None)] {
        let env = HostEnv::default();
        let mut vm = plugin().start(&env, global(mode).as_bytes()).unwrap();
        let s = stream(&mut vm, "acme");
        post(&mut vm, s, &chat("hi", json!({"max_tokens": 50})));
        let (token, _) = reservation(&vm);
        vm.fail_grpc_call(token, 14).unwrap();
        assert_eq!(status(&vm, s), expected, "failureMode {mode}");
        assert_eq!(env.metric("warden.token_budget.failure_mode_applied"), 1, "{mode}");
        if mode == "local" {
            // The local copy of the budget counts: 3000 tokens, then 429 without the service.
            let mut admitted = 1;
            loop {
                let s = stream(&mut vm, "acme");
                post(&mut vm, s, &chat("hi", json!({"max_tokens": 500})));
                // A prompt whose upper bound does not fit is counted exactly and drawn again:
                // every draw fails.
                while !vm.grpc_calls().is_empty() {
                    let (token, _) = reservation(&vm);
                    vm.fail_grpc_call(token, 4).unwrap();
                }
                match status(&vm, s) {
                    None => admitted += 1,
                    Some(429) => break,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(admitted, 6, "50 + 5 × 500 tokens and prompts fit in 3000, a sixth 500 does not");
        }
    }
}

#[test]
fn malformed_and_oversized_requests_are_refused_in_openai_shape() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    post(&mut vm, s, "{\"model\":\"gpt-4o\",\"model\":\"gpt-4o-mini\",\"messages\":[]}");
    let reply = vm.local_reply(s).unwrap();
    assert_eq!(reply.status, 400);
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let s = stream(&mut vm, "acme");
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", "99999999")];
    vm.request_headers(s, &headers, false).unwrap();
    assert_eq!(status(&vm, s), Some(413));
    // Other routes pass untouched.
    let s = stream(&mut vm, "acme");
    assert_eq!(vm.request_headers(s, &[(":method", "GET"), (":path", "/v1/models")], true).unwrap(), Action::Continue);
    assert_eq!(status(&vm, s), None);
}

#[test]
fn shadow_mode_records_a_refusal_and_lets_the_request_through() {
    let policy = LOCAL.replace("tokenBudget:\n", "tokenBudget:\n  mode: shadow\n");
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, policy.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    post(&mut vm, s, &chat("hi", json!({"max_tokens": 2990})));
    let s2 = stream(&mut vm, "acme");
    assert_eq!(post(&mut vm, s2, &chat("hi", json!({"max_tokens": 50}))), Action::Continue);
    assert_eq!(status(&vm, s2), None, "shadow mode never refuses");
    assert_eq!(
        vm.field(s2, "warden.audit", "token_budget.decision").unwrap(),
        "shadow_deny;rule=tenant-day;reason=budget_exhausted"
    );
    assert_eq!(env.metric("warden.token_budget.shadow_refused"), 1);
    assert_eq!(env.metric("warden.token_budget.refused.tenant-day"), 1);
    // Forwarded as sent: no cap or usage request is written into a request shadow mode let by.
    let sent: Value = serde_json::from_slice(&vm.stream(s2).unwrap().sent_request_body).unwrap();
    assert_eq!(sent["max_tokens"], 50);
    // A stream let by is forwarded as sent too: no usage chunk is asked for that nothing would remove.
    let s3 = stream(&mut vm, "acme");
    let streamed = chat("hi", json!({"stream": true}));
    post(&mut vm, s3, &streamed);
    assert_eq!(status(&vm, s3), None);
    assert_eq!(vm.stream(s3).unwrap().sent_request_body, streamed.as_bytes());
}

/// A request that ends in HTTP/2 trailers is counted, reserved and rewritten as one that ends
/// with its last DATA frame; an answer that ends in trailers is metered and settled.
#[test]
fn requests_and_answers_that_end_in_trailers_are_counted_and_settled() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), (":authority", "gw"), ("x-request-id", "r")];
    let body = chat("Hello", json!({}));

    let s = stream(&mut vm, "acme");
    assert_eq!(vm.request_headers(s, &headers, false).unwrap(), Action::Pause, "body-reading filters hold the headers");
    assert_eq!(vm.request_body(s, body.as_bytes(), false).unwrap(), Action::Pause);
    assert_eq!(vm.request_trailers(s, &[("x-t", "1")]).unwrap(), Action::Continue);
    let sent: Value = serde_json::from_slice(&vm.stream(s).unwrap().sent_request_body).unwrap();
    assert_eq!(sent["max_completion_tokens"], 100, "the default cap was written in");
    let estimated: u64 = vm.field(s, "warden.audit", "token_budget.tokens.estimated").unwrap().parse().unwrap();
    assert!(estimated > 0);
    // The JSON answer ends in trailers: its usage is settled all the same.
    vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false).unwrap();
    let answer = json!({"choices": [], "usage": {"prompt_tokens": 2000, "completion_tokens": 900}}).to_string();
    vm.response_body(s, answer.as_bytes(), false).unwrap();
    vm.response_trailers(s, &[("x-t", "1")]).unwrap();
    assert_eq!(vm.field(s, "warden.audit", "token_budget.tokens.input").as_deref(), Some("2000"));
    assert_eq!(vm.field(s, "warden.audit", "token_budget.tokens.output").as_deref(), Some("900"));
    vm.finish(s).unwrap();

    // 2,900 of 3,000 are spent: the next request, ending in trailers, is refused.
    let s = stream(&mut vm, "acme");
    assert_eq!(vm.request_headers(s, &headers, false).unwrap(), Action::Pause, "body-reading filters hold the headers");
    vm.request_body(s, body.as_bytes(), false).unwrap();
    assert_eq!(vm.request_trailers(s, &[("x-t", "1")]).unwrap(), Action::Pause);
    assert_eq!(status(&vm, s), Some(429));
    assert!(vm.stream(s).unwrap().sent_request_body.is_empty());
}

/// Only the policy's model paths are model traffic: an MCP message to a path that merely ends
/// in `/messages` is not read as Anthropic Messages, and goes on untouched.
#[test]
fn paths_outside_the_model_routes_are_not_read() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let s = stream(&mut vm, "acme");
    let headers = [(":method", "POST"), (":path", "/mcp/chat/messages"), (":authority", "gw")];
    assert_eq!(vm.request_headers(s, &headers, false).unwrap(), Action::Continue);
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    assert_eq!(vm.request_body(s, body, true).unwrap(), Action::Continue);
    assert!(vm.local_reply(s).is_none());
    assert_eq!(vm.stream(s).unwrap().sent_request_body, body);
    assert!(vm.forwarded_header(s, "accept-encoding").is_none(), "not touched at all");
}

/// Posts a chat request with `extra` members; the reply status (`None`: forwarded).
fn ask(vm: &mut Vm, extra: Value) -> (u32, Option<u32>) {
    let s = stream(vm, "acme");
    post(vm, s, &chat("Hello", extra));
    (s, status(vm, s))
}

/// A forwarded request that never gets its whole answer (the client hangs up, Envoy times
/// out or the upstream resets) is charged its reservation; one the provider itself refused
/// with an error is charged nothing.
#[test]
fn a_request_cut_short_is_charged_its_reservation_unless_the_provider_answered_an_error() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    // The provider answers 503 itself: not billed, nothing charged.
    let (s, refused) = ask(&mut vm, json!({"max_tokens": 1400}));
    assert_eq!(refused, None);
    vm.set_property(s, "response.code_details", b"via_upstream");
    vm.response_headers(s, &[(":status", "503"), ("content-type", "application/json")], false).unwrap();
    vm.response_body(s, b"{\"error\":{}}", true).unwrap();
    vm.finish(s).unwrap();
    // The client hangs up before any answer: charged the reservation (~1,400 of 3,000).
    let (s, refused) = ask(&mut vm, json!({"max_tokens": 1400}));
    assert_eq!(refused, None, "the 503 gave everything back");
    vm.finish(s).unwrap();
    // Envoy times the upstream out and answers 504 in its place: charged the reservation too.
    let (s, refused) = ask(&mut vm, json!({"max_tokens": 1400}));
    assert_eq!(refused, None);
    vm.set_property(s, "response.code_details", b"upstream_response_timeout");
    vm.response_headers(s, &[(":status", "504"), ("content-type", "text/plain")], false).unwrap();
    vm.response_body(s, b"upstream request timeout", true).unwrap();
    vm.finish(s).unwrap();
    // ~2,830 of 3,000 are charged: a request reserving 200 more no longer fits.
    assert_eq!(ask(&mut vm, json!({"max_tokens": 200})).1, Some(429));
}

/// `n` answers reserve `n` caps; with both cap members, the larger is reserved; an uncapped
/// request under a per-request maximum gets the room it leaves written in as its cap.
#[test]
fn every_answer_and_the_larger_cap_are_reserved_and_a_per_request_maximum_caps_the_request() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    assert_eq!(ask(&mut vm, json!({"max_tokens": 800, "n": 4})).1, Some(429), "4 x 800 > 3,000");
    assert_eq!(ask(&mut vm, json!({"max_completion_tokens": 10, "max_tokens": 3500})).1, Some(429));
    assert_eq!(ask(&mut vm, json!({"n": 0})).1, Some(400));

    let policy = "tokenBudget:\n  budgets:\n    - { id: one-request, scope: [request], unit: totalTokens, limit: 100, window: request }\n";
    let mut vm = plugin().start(&env, policy.as_bytes()).unwrap();
    let (s, refused) = ask(&mut vm, json!({"n": 2}));
    assert_eq!(refused, None);
    let sent: Value = serde_json::from_slice(&vm.stream(s).unwrap().sent_request_body).unwrap();
    let estimated: u64 = vm.field(s, "warden.audit", "token_budget.tokens.estimated").unwrap().parse().unwrap();
    let cap = sent["max_completion_tokens"].as_u64().expect("a cap was written in");
    assert_eq!(cap, (100 - estimated) / 2, "{sent}");
    assert!(vm.field(s, "warden.audit", "token_budget.tokens.reserved").unwrap().parse::<u64>().unwrap() <= 100);
}

/// Found in review: a request Envoy could not get to the provider at all (no healthy host, a
/// connection that failed) generated nothing, and is charged nothing.
#[test]
fn a_request_that_never_reached_the_provider_is_charged_nothing() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, LOCAL.as_bytes()).unwrap();
    let (s, refused) = ask(&mut vm, json!({"max_tokens": 2900}));
    assert_eq!(refused, None);
    vm.set_property(s, "response.code_details", b"upstream_reset_before_response_started{remote_connection_failure}");
    vm.response_headers(s, &[(":status", "503"), ("content-type", "text/plain")], false).unwrap();
    vm.response_body(s, b"upstream connect error", true).unwrap();
    vm.finish(s).unwrap();
    assert_eq!(ask(&mut vm, json!({"max_tokens": 2900})).1, None, "nothing was charged");
}
