//! The router's two plugins as built (`warden_router.wasm`), driven through the wasmtime host:
//! the router writes its plan, the attempt plugin shapes each attempt from it and records the
//! answer, a translated answer is rewritten as it passes, and host faults (a principal or data
//! classes another filter wrote wrongly) refuse the request in the caller's shape rather than
//! send it anywhere unrouted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use warden_integration_tests::proxy_wasm_host::{Action, HostEnv, Plugin, Vm};
use warden_integration_tests::repo;

/// The example policy, with openai's key from SDS (the wasm host gives a VM no environment).
fn policy() -> String {
    std::fs::read_to_string(repo::root().join("examples/router/policy.yaml"))
        .unwrap()
        .replace("credential: { env: OPENAI_API_KEY }", "credential: { sds: openai-key }")
}

fn start(env: &HostEnv, root_id: &str, policy: &str) -> (Vm, bool) {
    Plugin::load(&repo::filter_wasm("warden_router")).unwrap().start_as(env, root_id, policy.as_bytes()).unwrap()
}

fn headers<'a>(path: &'a str, length: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gw"),
        ("x-request-id", "r-1"),
        ("content-type", "application/json"),
        ("content-length", length),
        ("authorization", "Bearer agent-key"),
    ]
}

/// Routes `body` through the router plugin; the plan it wrote, and the body it let go (what
/// Envoy replays to every attempt).
fn route(router: &mut Vm, path: &str, body: &str) -> (u32, Option<String>, String) {
    let s = router.new_stream().unwrap();
    let length = body.len().to_string();
    assert_eq!(router.request_headers(s, &headers(path, &length), false).unwrap(), Action::Pause);
    router.request_body(s, body.as_bytes(), true).unwrap();
    let sent = String::from_utf8(router.stream(s).unwrap().sent_request_body.clone()).unwrap();
    (s, router.property(s, "warden.route"), sent)
}

/// One attempt in the attempt plugin, given the plan; the forwarded headers, the body sent and
/// the plan after the answer's headers.
fn attempt(
    vm: &mut Vm,
    plan: &str,
    path: &str,
    body: &str,
    status: &str,
) -> (u32, Vec<(String, String)>, Value, String) {
    let s = vm.new_stream().unwrap();
    vm.set_property(s, "warden.route", plan.as_bytes());
    let length = body.len().to_string();
    assert_eq!(vm.request_headers(s, &headers(path, &length), false).unwrap(), Action::Continue);
    vm.request_body(s, body.as_bytes(), true).unwrap();
    let sent: Value = serde_json::from_slice(&vm.stream(s).unwrap().sent_request_body).unwrap();
    let forwarded = vm.forwarded_headers(s);
    vm.response_headers(s, &[(":status", status), ("content-type", "application/json")], false).unwrap();
    (s, forwarded, sent, vm.property(s, "warden.route").unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn the_router_plans_and_each_attempt_takes_the_next_target() {
    let env = HostEnv::default();
    let (mut router, ok) = start(&env, "warden.router", &policy());
    assert!(ok, "{}", router.log_text());
    let (mut attempts, ok) = start(&env, "warden.router_attempt", &policy());
    assert!(ok, "{}", attempts.log_text());
    let body = r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#;
    let (s, plan, body) = route(&mut router, "/v1/chat/completions", body);
    let plan = plan.expect("a plan");
    assert_eq!(router.forwarded_header(s, "x-envoy-max-retries").as_deref(), Some("2"));
    assert!(body.contains(r#""model":"gpt-4o-mini""#), "the router wrote the first target's model: {body}");

    let (_, forwarded, sent, plan) = attempt(&mut attempts, &plan, "/v1/chat/completions", &body, "503");
    assert_eq!(header(&forwarded, "x-warden-cluster"), Some("llm_openai"));
    assert_eq!(header(&forwarded, "authorization"), None, "the agent's key is removed; SDS adds openai's");
    assert_eq!(sent["model"], "gpt-4o-mini");
    let (_, forwarded, sent, plan) = attempt(&mut attempts, &plan, "/v1/chat/completions", &body, "200");
    assert_eq!(header(&forwarded, "x-warden-cluster"), Some("llm_backup"));
    assert_eq!(sent["model"], "gpt-4o-mini");
    let plan: Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(plan["attempts"][0]["outcome"], "server_error");
    assert_eq!(plan["attempts"][1]["outcome"], "answered");
}

#[test]
fn a_translated_answer_is_rewritten_in_the_vm_json_and_streamed() {
    let env = HostEnv::default();
    let (mut router, _) = start(&env, "warden.router", &policy());
    let (mut attempts, _) = start(&env, "warden.router_attempt", &policy());
    let body = r#"{"model":"claude","max_tokens":20,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}"#;
    let (_, plan, body) = route(&mut router, "/v1/chat/completions", body);
    let (s, forwarded, sent, _) = attempt(&mut attempts, &plan.unwrap(), "/v1/chat/completions", &body, "200");
    assert_eq!(header(&forwarded, ":path"), Some("/v1/messages"));
    assert_eq!(sent["system"], "Be brief.");
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "Hi."}], "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 2}});
    attempts.response_body(s, answer.to_string().as_bytes(), true).unwrap();
    let out: Value = serde_json::from_slice(&attempts.stream(s).unwrap().sent_response_body).unwrap();
    assert_eq!(out["choices"][0]["message"]["content"], "Hi.");
    assert_eq!(out["usage"]["prompt_tokens"], 5);

    // Streamed: an Anthropic agent, an OpenAI provider; chunks cut mid-event.
    let body = r#"{"model":"fast","max_tokens":20,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, plan, _) = route(&mut router, "/v1/messages", body);
    let s = attempts.new_stream().unwrap();
    attempts.set_property(s, "warden.route", plan.unwrap().as_bytes());
    let length = body.len().to_string();
    attempts.request_headers(s, &headers("/v1/messages", &length), false).unwrap();
    attempts.request_body(s, body.as_bytes(), true).unwrap();
    attempts.response_headers(s, &[(":status", "200"), ("content-type", "text/event-stream")], false).unwrap();
    let stream = concat!(
        "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
    );
    let (a, b) = stream.split_at(37);
    attempts.response_body(s, a.as_bytes(), false).unwrap();
    attempts.response_body(s, b.as_bytes(), true).unwrap();
    let out = String::from_utf8(attempts.stream(s).unwrap().sent_response_body.clone()).unwrap();
    let names: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(out.contains("\"text\":\"Hel\"") && out.contains("\"text\":\"lo\""), "{out}");
    assert!(out.contains("\"output_tokens\":2"), "{out}");
}

#[test]
fn a_principal_or_data_classes_written_wrongly_refuse_the_request_in_its_shape() {
    let env = HostEnv::default();
    let (mut router, _) = start(&env, "warden.router", &policy());
    for (key, value) in [("warden.principal", &b"not a record"[..]), ("warden.data_classes", &b"pii"[..])] {
        let s = router.new_stream().unwrap();
        router.set_property(s, key, value);
        let body = r#"{"model":"claude","max_tokens":5,"messages":[]}"#;
        let length = body.len().to_string();
        router.request_headers(s, &headers("/v1/messages", &length), false).unwrap();
        router.request_body(s, body.as_bytes(), true).unwrap();
        let reply = router.local_reply(s).expect("refused");
        assert_eq!(reply.status, 503, "{key}");
        assert_eq!(reply.json()["type"], "error", "Anthropic's shape");
        assert_eq!(reply.json()["error"]["code"], "router_unavailable");
        assert_eq!(router.property(s, "warden.route"), None, "no plan, so no attempt can go anywhere");
    }
    assert_eq!(env.metric("warden.router.faults"), 2);
}

#[test]
fn an_attempt_plugin_without_its_environment_credential_is_refused_naming_the_field() {
    let example = std::fs::read_to_string(repo::root().join("examples/router/policy.yaml")).unwrap();
    let (vm, accepted) = start(&HostEnv::default(), "warden.router_attempt", &example);
    assert!(!accepted);
    assert!(vm.log_text().contains("router.providers[0].credential.env"), "{}", vm.log_text());
    let (vm, accepted) = start(&HostEnv::default(), "warden.nothing", &example);
    assert!(!accepted);
    assert!(vm.log_text().contains("warden.router_attempt"), "{}", vm.log_text());
}
