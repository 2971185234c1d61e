//! Host calls per request, counted at the VM boundary for each filter on the request the chain
//! benchmark sends it. Each call crosses from the module into Envoy; with the body copies they
//! are most of a filter's cost, so a change that adds calls shows up here (the README's
//! "host calls per request" table comes from `--nocapture`). The ceilings are the counts as
//! shipped: raising one is a decision, taken in review, not an accident.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::Algorithm;
use serde_json::json;
use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin, Vm};
use warden_integration_tests::repo;
use warden_integration_tests::tool_fixtures::{call_request, example_policy};
use warden_policy::testing::principal;
use warden_policy::testing::tokens;

const ISSUER: &str = "https://idp.warden.test";

/// One request through `vm`: headers, body, a JSON answer, the log. Returns its host calls.
fn one_request(vm: &mut Vm, path: &str, headers: &[(&str, &str)], body: &str, answer: &str) -> u64 {
    let before = vm.host_calls();
    let s = vm.new_stream().unwrap();
    if !headers.iter().any(|(name, _)| *name == "authorization") {
        // Written by the identity filter before this one.
        vm.set_principal(s, &principal::example());
    }
    let length = body.len().to_string();
    let mut all = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gw"),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    all.extend_from_slice(headers);
    vm.request_headers(s, &all, false).unwrap();
    vm.request_body(s, body.as_bytes(), true).unwrap();
    assert!(vm.local_reply(s).is_none(), "the request is allowed: {:?}", vm.local_reply(s));
    vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false).unwrap();
    vm.response_body(s, answer.as_bytes(), true).unwrap();
    vm.finish(s).unwrap();
    vm.host_calls() - before
}

fn chat() -> String {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(2000)}]}).to_string()
}

const CHAT_ANSWER: &str = r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":600,"completion_tokens":2}}"#;

/// The second request of one agent: its token's verification is cached.
fn identity() -> u64 {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let jwks = tokens::jwks(&[&rsa]).replace('\'', "''");
    let policy = format!(
        "identity:\n  issuers:\n    - {{ name: corp, issuer: {ISSUER}, algorithms: [RS256], tenantClaim: tenant, jwks: {{ inline: '{jwks}' }} }}\n  session: {{ header: x-agent-session }}\n  routes: [{{ name: api, agent: [jwt] }}]\n"
    );
    let mut vm = Plugin::load(&repo::filter_wasm("warden_identity")).unwrap().start(&env, policy.as_bytes()).unwrap();
    let now = env.now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let token = tokens::token(&rsa, &json!({"iss": ISSUER, "sub": "planner", "exp": now + 600, "tenant": "acme"}));
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("x-agent-session", "sess-1")];
    one_request(&mut vm, "/v1/chat/completions", &headers, &chat(), CHAT_ANSWER);
    one_request(&mut vm, "/v1/chat/completions", &headers, &chat(), CHAT_ANSWER)
}

fn tool_acl() -> u64 {
    let env = HostEnv::default();
    let mut vm =
        Plugin::load(&repo::filter_wasm("warden_tool_acl")).unwrap().start(&env, example_policy().as_bytes()).unwrap();
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": "notes"}]}});
    let call = call_request(1, "read_file", "/srv/notes/plan.txt", 1000);
    one_request(&mut vm, "/mcp/files", &[("mcp-session-id", "sess-1")], &call, &answer.to_string())
}

fn token_budget() -> u64 {
    let env = HostEnv::default();
    let policy = "tokenBudget:\n  defaultMaxOutputTokens: 100\n  budgets:\n    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 1000000, window: day }\n";
    let mut vm =
        Plugin::load(&repo::filter_wasm("warden_token_budget")).unwrap().start(&env, policy.as_bytes()).unwrap();
    // The first request of a tenant and model defines their usage metrics (once per VM): count
    // the next one.
    one_request(&mut vm, "/v1/chat/completions", &[], &chat(), CHAT_ANSWER);
    one_request(&mut vm, "/v1/chat/completions", &[], &chat(), CHAT_ANSWER)
}

/// Redaction on the chain's 2 KB chat with an e-mail address in it (a placeholder made, and
/// restored in the answer).
fn redaction() -> u64 {
    let env = HostEnv::default();
    let policy = std::fs::read_to_string(repo::root().join("examples/redaction/policy.yaml")).unwrap();
    let mut vm = Plugin::load(&repo::filter_wasm("warden_redaction")).unwrap().start(&env, policy.as_bytes()).unwrap();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("{} mail ann@example.com", "x ".repeat(1000))}]});
    let answer = r#"{"choices":[{"message":{"role":"assistant","content":"Mailed ⟦EMAIL_1⟧"}}]}"#;
    one_request(&mut vm, "/v1/chat/completions", &[], &body.to_string(), answer)
}

/// The router's two plugins on one same-API request: the router (plan) and one attempt.
fn router() -> (u64, u64) {
    let env = HostEnv::default();
    let policy = std::fs::read_to_string(repo::root().join("examples/router/policy.yaml"))
        .unwrap()
        .replace("credential: { env: OPENAI_API_KEY }", "credential: { sds: openai-key }");
    let plugin = Plugin::load(&repo::filter_wasm("warden_router")).unwrap();
    let (mut router, _) = plugin.start_as(&env, "warden.router", policy.as_bytes()).unwrap();
    let (mut attempt, _) = plugin.start_as(&env, "warden.router_attempt", policy.as_bytes()).unwrap();
    let body = chat().replace("gpt-4o", "fast");
    let length = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    let ok = [(":status", "200"), ("content-type", "application/json")];
    let (r0, a0) = (router.host_calls(), attempt.host_calls());
    let s = router.new_stream().unwrap();
    router.set_principal(s, &principal::example());
    router.request_headers(s, &headers, false).unwrap();
    router.request_body(s, body.as_bytes(), true).unwrap();
    let plan = router.property(s, "warden.route").unwrap();
    let sent = router.stream(s).unwrap().sent_request_body.clone();
    let a = attempt.new_stream().unwrap();
    attempt.set_property(a, "warden.route", plan.as_bytes());
    attempt.request_headers(a, &headers, false).unwrap();
    attempt.request_body(a, &sent, true).unwrap();
    attempt.response_headers(a, &ok, false).unwrap();
    attempt.response_body(a, CHAT_ANSWER.as_bytes(), true).unwrap();
    router.set_property(s, "warden.route", attempt.property(a, "warden.route").unwrap().as_bytes());
    attempt.finish(a).unwrap();
    router.response_headers(s, &ok, false).unwrap();
    router.response_body(s, CHAT_ANSWER.as_bytes(), true).unwrap();
    router.finish(s).unwrap();
    (router.host_calls() - r0, attempt.host_calls() - a0)
}

#[test]
fn each_filter_stays_within_its_host_calls_per_request() {
    let (router, attempt) = router();
    let counts = [
        ("identity", identity(), 8),
        // 24 until the session's call limits moved onto the budget engine's counters (their own
        // shared-data slot beside the loop memory's): +2 per call, +4 on a VM's first (the
        // slots are created), which this counts.
        ("tool-acl", tool_acl(), 28),
        ("redaction", redaction(), 18),
        ("token-budget", token_budget(), 30),
        ("router", router, 19),
        ("router's attempt", attempt, 11),
    ];
    println!("| filter | host calls per request |\n|---|---:|");
    for (filter, calls, _) in counts {
        println!("| {filter} | {calls} |");
    }
    for (filter, calls, ceiling) in counts {
        assert!(calls <= ceiling, "{filter} makes {calls} host calls per request (ceiling {ceiling})");
    }
}
