//! The router's two filters over an in-memory host: the router chooses and records, the attempt
//! filter shapes each attempt for its own provider, and what passes between them is the plan
//! in filter state. Each attempt starts from the request's headers as Envoy replays them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;
use warden_policy::attributes;
use warden_policy::host::Action;
use warden_policy::policy::parse_document;
use warden_policy::principal::Principal;
use warden_policy::router::attempt::AttemptFlow;
use warden_policy::router::flow::RouteFlow;
use warden_policy::router::vm::{Role, RouterVm};
use warden_policy::testing::{principal, MemoryHost};

const SECRET_A: &str = "sk-openai-secret-1";
const SECRET_B: &str = "azure-secret-2";

const POLICY: &str = r#"
router:
  providers:
    - { name: openai, kind: openai, cluster: llm_openai, credential: { env: OPENAI_KEY } }
    - { name: azure, kind: azureOpenai, cluster: llm_azure, apiVersion: "2024-10-21", credential: { env: AZURE_KEY } }
    - { name: claude, kind: anthropic, cluster: llm_anthropic, credential: { sds: anthropic-key } }
    - { name: local, kind: openaiCompatible, cluster: vllm, private: true }
  models:
    - alias: smart
      targets:
        - { provider: openai, model: gpt-4o }
        - { provider: azure, model: gpt-4o-prod, priority: 1 }
        - { provider: local, model: llama-70b, priority: 2 }
    - alias: mixed
      targets:
        - { provider: claude, model: claude-sonnet-4 }
        - { provider: openai, model: gpt-4o }
    - alias: claude
      targets: [{ provider: claude, model: claude-sonnet-4 }]
  rules:
    - { id: bank-private, when: { tenants: [bank] }, allow: { privateOnly: true } }
    - { id: sensitive-data, dataClasses: [pii, secret], allow: { privateOnly: true } }
"#;

fn vms() -> (Rc<RouterVm>, Rc<RouterVm>) {
    let document = parse_document(POLICY.as_bytes()).unwrap();
    let env = |name: &str| match name {
        "OPENAI_KEY" => Some(SECRET_A.to_string()),
        "AZURE_KEY" => Some(SECRET_B.to_string()),
        _ => None,
    };
    let router = RouterVm::configure(&document, Role::Router, &env).unwrap();
    let attempt = RouterVm::configure(&document, Role::Attempt, &env).unwrap();
    (Rc::new(router), Rc::new(attempt))
}

struct Request {
    host: Rc<MemoryHost>,
    body: Vec<u8>,
    router: RouteFlow,
    attempt_vm: Rc<RouterVm>,
}

fn request(path: &str, body: &str, tenant: &str) -> Request {
    let (router_vm, attempt_vm) = vms();
    let headers = vec![
        (":method".to_string(), "POST".to_string()),
        (":path".to_string(), path.to_string()),
        ("x-request-id".to_string(), "req-1".to_string()),
        ("content-length".to_string(), body.len().to_string()),
        ("authorization".to_string(), "Bearer agent-token".to_string()),
        ("x-api-key".to_string(), "agent-key".to_string()),
    ];
    let host = Rc::new(MemoryHost::default());
    *host.headers.borrow_mut() = headers;
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    host.set_principal(&principal::with(|p: &mut Principal| p.tenant = Some(tenant.to_string())));
    let router = RouteFlow::new(host.clone(), Some(router_vm));
    Request { host, body: body.as_bytes().to_vec(), router, attempt_vm }
}

impl Request {
    fn send(&mut self) -> Action {
        assert_eq!(self.router.on_request_headers(false), Action::Pause);
        let size = self.body.len();
        let action = self.router.on_request_body(size, true);
        // What Envoy buffers for its attempts is the body as the router let it go.
        self.body = self.host.request_body.borrow().clone();
        action
    }

    /// One attempt as Envoy runs it: a new upstream filter gets the request's header map (the
    /// same map every attempt, with what earlier attempts changed in it) and the body as the
    /// agent sent it; then the answer's status.
    fn attempt(&self, status: Option<u16>, extra: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<u8>) {
        *self.host.request_body.borrow_mut() = self.body.clone();
        *self.host.response_headers.borrow_mut() = Vec::new();
        let mut flow = AttemptFlow::new(self.host.clone(), Some(self.attempt_vm.clone()));
        assert_eq!(flow.on_request_headers(false), Action::Continue);
        assert_eq!(flow.on_request_body(self.body.len(), true), Action::Continue);
        let sent = (self.host.headers.borrow().clone(), self.host.request_body.borrow().clone());
        if let Some(status) = status {
            let mut answer = vec![(":status".to_string(), status.to_string())];
            answer.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            *self.host.response_headers.borrow_mut() = answer;
            flow.on_response_headers();
        }
        sent
    }

    fn answer(&mut self, status: u16) -> Action {
        *self.host.response_headers.borrow_mut() = vec![(":status".to_string(), status.to_string())];
        self.router.on_response_headers()
    }

    fn field(&self, path: &str) -> Option<String> {
        self.host.field(attributes::AUDIT, path)
    }

    fn reply(&self) -> (u32, serde_json::Value) {
        let reply = self.host.reply.borrow().clone().expect("a local reply");
        (reply.status, serde_json::from_slice(&reply.body).unwrap())
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn each_attempt_goes_to_its_own_provider_with_its_own_credential_and_model() {
    let mut r =
        request("/v1/chat/completions", r#"{"model":"smart","messages":[{"role":"user","content":"hi"}]}"#, "acme");
    assert_eq!(r.send(), Action::Continue);
    assert_eq!(r.host.header("x-envoy-max-retries").as_deref(), Some("2"));

    let (headers, body) = r.attempt(Some(503), &[]);
    assert_eq!(header(&headers, ":path"), Some("/v1/chat/completions"));
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_openai"));
    assert_eq!(header(&headers, "authorization"), Some(format!("Bearer {SECRET_A}").as_str()));
    assert_eq!(header(&headers, "x-api-key"), None, "the agent's key never goes on");
    // The router wrote the first target's model, with the length, while it held the headers.
    let first = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(String::from_utf8(body).unwrap(), first);
    assert_eq!(header(&headers, "content-length"), Some(first.len().to_string().as_str()));

    let (headers, body) = r.attempt(Some(200), &[]);
    assert_eq!(
        header(&headers, ":path"),
        Some("/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21")
    );
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_azure"));
    assert_eq!(header(&headers, "api-key"), Some(SECRET_B));
    assert_eq!(header(&headers, "authorization"), None, "the agent's token never goes on");
    assert!(String::from_utf8(body).unwrap().contains(r#""model":"gpt-4o-prod""#));

    assert_eq!(r.answer(200), Action::Continue);
    assert_eq!(r.field("router.verdict").as_deref(), Some("allow"));
    assert_eq!(r.field("router.provider").as_deref(), Some("azure"));
    assert_eq!(r.field("router.model").as_deref(), Some("gpt-4o-prod"));
    assert_eq!(r.field("router.private").as_deref(), Some("false"));
    assert_eq!(r.field("router.failovers").as_deref(), Some("1"));
    assert_eq!(r.field("router.failover_reason").as_deref(), Some("server_error"));
    assert_eq!(r.field("router.attempts.outcome").as_deref(), Some("server_error,answered"));
    assert_eq!(r.host.metric("warden.router.provider.openai.failovers"), 1);
    assert_eq!(r.host.metric("warden.router.provider.openai.server_error"), 1);
    assert_eq!(r.host.metric("warden.router.provider.azure.answered"), 1);

    // No secret in anything Warden wrote.
    for (key, value) in r.host.properties.borrow().iter() {
        let text = String::from_utf8_lossy(value);
        assert!(!text.contains(SECRET_A) && !text.contains(SECRET_B), "{key}: {text}");
    }
}

#[test]
fn an_attempt_with_no_answer_is_recorded_and_the_exhausted_request_answers_in_the_callers_shape() {
    let mut r = request("/v1/messages", r#"{"model":"claude","max_tokens":5,"messages":[]}"#, "acme");
    assert_eq!(r.send(), Action::Continue);
    assert_eq!(r.host.header("x-envoy-max-retries").as_deref(), Some("0"));
    let (headers, _) = r.attempt(None, &[]);
    assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
    assert_eq!(header(&headers, "x-api-key"), None, "SDS credentials are Envoy's to add");
    // Envoy's own 503 after the reset.
    *r.host.response_body.borrow_mut() = b"upstream connect error or disconnect/reset before headers".to_vec();
    assert_eq!(r.answer(503), Action::Continue);
    assert_eq!(r.router.on_response_body(57, true), Action::Continue);
    let body: serde_json::Value = serde_json::from_slice(&r.host.response_body.borrow()).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["code"], "providers_unavailable");
    assert_eq!(r.field("router.attempts.outcome").as_deref(), Some("no_answer"));
    assert_eq!(r.host.metric("warden.router.exhausted"), 1);
}

#[test]
fn a_429_with_retry_after_sends_the_provider_last_until_then() {
    let mut r = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "acme");
    r.host.now_secs.set(1_000);
    r.send();
    r.attempt(Some(429), &[("retry-after", "30")]);
    r.attempt(Some(200), &[]);
    r.answer(200);
    assert_eq!(r.field("router.failover_reason").as_deref(), Some("rate_limited"));

    let mut next = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "acme");
    *next.host.shared.borrow_mut() = r.host.shared.borrow().clone();
    next.host.now_secs.set(1_010);
    next.send();
    let (headers, _) = next.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_azure"), "openai is cooling down");

    let mut later = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "acme");
    *later.host.shared.borrow_mut() = r.host.shared.borrow().clone();
    later.host.now_secs.set(1_031);
    later.send();
    let (headers, _) = later.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_openai"));
}

#[test]
fn rules_keep_a_tenant_or_sensitive_data_on_private_providers() {
    let mut bank = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "bank");
    bank.send();
    assert_eq!(bank.host.header("x-envoy-max-retries").as_deref(), Some("0"));
    let (headers, _) = bank.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("vllm"));
    assert_eq!(header(&headers, "authorization"), None);
    bank.answer(200);
    assert_eq!(bank.field("router.private").as_deref(), Some("true"));

    let mut pii = request("/v1/chat/completions", r#"{"model":"mixed","messages":[]}"#, "acme");
    pii.host.properties.borrow_mut().insert(attributes::DATA_CLASSES.into(), br#"["pii"]"#.to_vec());
    assert_eq!(pii.send(), Action::Pause);
    let (status, body) = pii.reply();
    assert_eq!(status, 403);
    assert_eq!(body["error"]["rule"], "sensitive-data");
    assert_eq!(body["error"]["code"], "provider_not_permitted");
    assert_eq!(pii.field("router.verdict").as_deref(), Some("deny"));
    assert_eq!(pii.field("router.rule").as_deref(), Some("sensitive-data"));
}

#[test]
fn a_target_of_the_other_api_is_translated_and_one_that_cannot_carry_the_request_is_dropped() {
    // OpenAI Chat to an Anthropic target: translated, with Anthropic's path and headers.
    let mut mixed = request(
        "/v1/chat/completions",
        r#"{"model":"mixed","max_tokens":50,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}"#,
        "acme",
    );
    mixed.send();
    assert_eq!(mixed.host.header("x-envoy-max-retries").as_deref(), Some("1"));
    let (headers, body) = mixed.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_anthropic"));
    assert_eq!(header(&headers, ":path"), Some("/v1/messages"));
    assert_eq!(header(&headers, "anthropic-version"), Some("2023-06-01"));
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["system"], "Be brief.");
    assert_eq!(body["model"], "claude-sonnet-4");
    assert_eq!(body["max_tokens"], 50);

    // A member with no Anthropic counterpart: the Anthropic target is dropped, OpenAI serves.
    let mut n2 = request("/v1/chat/completions", r#"{"model":"mixed","n":2,"messages":[]}"#, "acme");
    n2.send();
    assert_eq!(n2.host.header("x-envoy-max-retries").as_deref(), Some("0"));
    let (headers, _) = n2.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_openai"));
    n2.answer(200);
    assert_eq!(n2.field("router.dropped").as_deref(), Some("1"));

    // None left: a 400 naming what could not be carried.
    let mut claude = request("/v1/chat/completions", r#"{"model":"claude","n":2,"messages":[]}"#, "acme");
    assert_eq!(claude.send(), Action::Pause);
    let (status, body) = claude.reply();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "unsupported_endpoint");
    assert!(body["error"]["message"].as_str().unwrap().contains("n cannot be translated"), "{body}");
    let mut embeddings = request("/v1/embeddings", r#"{"model":"claude","input":"x"}"#, "acme");
    embeddings.send();
    assert_eq!(embeddings.reply().0, 400);
}

#[test]
fn bad_requests_are_refused_in_the_callers_shape() {
    let mut unknown = request("/v1/messages", r#"{"model":"gpt-5","max_tokens":1,"messages":[]}"#, "acme");
    unknown.send();
    let (status, body) = unknown.reply();
    assert_eq!((status, body["type"].as_str()), (404, Some("error")));
    assert_eq!(body["error"]["code"], "model_not_found");

    let mut malformed = request("/v1/chat/completions", r#"{"model":"smart","model":"claude"}"#, "acme");
    malformed.send();
    assert_eq!(malformed.reply().0, 400);

    let r = request("/v1/chat/completions", "{}", "acme");
    r.host.headers.borrow_mut().push(("content-encoding".into(), "gzip".into()));
    let mut router = RouteFlow::new(r.host.clone(), Some(vms().0));
    assert_eq!(router.on_request_headers(false), Action::Pause);
    assert_eq!(r.reply().0, 415);

    let r = request("/v1/completions", "{}", "acme");
    let mut router = RouteFlow::new(r.host.clone(), Some(vms().0));
    router.on_request_headers(false);
    assert_eq!(r.reply().1["error"]["code"], "unknown_endpoint");

    let r = request("/other", "{}", "acme");
    let mut router = RouteFlow::new(r.host.clone(), Some(vms().0));
    assert_eq!(router.on_request_headers(false), Action::Continue, "not the router's path");
}

#[test]
fn a_request_ending_in_trailers_is_routed_on_its_body() {
    let mut r = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "acme");
    assert_eq!(r.router.on_request_headers(false), Action::Pause);
    assert_eq!(r.router.on_request_body(r.body.len(), false), Action::Pause);
    assert_eq!(r.router.on_request_trailers(), Action::Continue);
    assert_eq!(r.host.header("x-envoy-max-retries").as_deref(), Some("2"));
}

#[test]
fn the_model_list_shows_only_what_the_caller_may_use() {
    let r = request("/v1/models", "", "bank");
    r.host.headers.borrow_mut().retain(|(k, _)| k != ":method");
    r.host.headers.borrow_mut().push((":method".into(), "GET".into()));
    let mut router = RouteFlow::new(r.host.clone(), Some(vms().0));
    assert_eq!(router.on_request_headers(true), Action::Pause);
    let (status, body) = r.reply();
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec!["smart"], "bank may only reach the private target of smart");
}

#[test]
fn an_attempt_without_a_plan_is_refused_and_not_retried() {
    let (_, attempt_vm) = vms();
    let host = Rc::new(MemoryHost::with_headers(&[(":path", "/v1/chat/completions"), ("authorization", "Bearer a")]));
    let mut flow = AttemptFlow::new(host.clone(), Some(attempt_vm));
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(host.reply.borrow().as_ref().map(|r| r.status), Some(421));
}

#[test]
fn a_target_this_attempt_filter_does_not_know_is_skipped_so_the_retry_takes_the_next() {
    let mut r = request("/v1/chat/completions", r#"{"model":"smart","messages":[]}"#, "acme");
    r.send();
    // The router's policy names openai first; this attempt filter's (mid-rollout) has no openai.
    let renamed =
        POLICY.replace("name: openai,", "name: openai-v2,").replace("provider: openai,", "provider: openai-v2,");
    let document = parse_document(renamed.as_bytes()).unwrap();
    let env = |_: &str| Some("k".to_string());
    let other = Rc::new(RouterVm::configure(&document, Role::Attempt, &env).unwrap());
    let mut flow = AttemptFlow::new(r.host.clone(), Some(other));
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(r.host.reply.borrow().as_ref().map(|reply| reply.status), Some(500));
    *r.host.reply.borrow_mut() = None;
    // Envoy retries: the next attempt goes to the next target.
    let (headers, _) = r.attempt(Some(200), &[]);
    assert_eq!(header(&headers, attributes::CLUSTER_HEADER), Some("llm_azure"));
    r.answer(200);
    assert_eq!(r.field("router.attempts.outcome").as_deref(), Some("no_answer,answered"));
}
