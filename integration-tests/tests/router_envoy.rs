//! End to end through the real Envoy binary (`WARDEN_ENVOY_VERSION`) with `envoy/router.yaml`:
//! `async-openai` and the official Anthropic Python SDK as agents, mock providers of both
//! shapes that can be told to fail. Each attempt goes to its own provider with its own
//! credential (from the proxy's environment or an SDS secret); the agent's never does; every
//! fault fails over; a rotated SDS secret is used without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs};
use async_openai::types::embeddings::CreateEmbeddingRequestArgs;
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden_integration_tests::audit;
use warden_integration_tests::envoy::{config_policy, Envoy};
use warden_integration_tests::fixtures::{Fault, ProviderMock, Received, ANSWER_TEXT};
use warden_integration_tests::{h2c, repo, sdk};

const CONFIG: &str = "envoy/router.yaml";
const OPENAI_KEY: &str = "sk-openai-test-4242";
const AGENT_KEY: &str = "agent-own-key-never-forwarded";

struct Gateway {
    envoy: Envoy,
    openai: ProviderMock,
    backup: ProviderMock,
    anthropic: ProviderMock,
    local: ProviderMock,
    secrets: tempfile::TempDir,
}

fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    let text = format!(
        "resources:\n  - \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n    name: {name}\n    generic_secret:\n      secret: {{ inline_string: \"{value}\" }}\n"
    );
    // Written aside and moved into place: Envoy watches for the move.
    let staged = dir.join(format!(".{name}.yaml"));
    std::fs::write(&staged, text).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::rename(&staged, &path).unwrap();
    path
}

async fn gateway_with(
    change: impl FnOnce(warden_integration_tests::envoy::EnvoyBuilder) -> warden_integration_tests::envoy::EnvoyBuilder,
) -> Gateway {
    let (openai, backup) = (ProviderMock::start("openai").await.unwrap(), ProviderMock::start("backup").await.unwrap());
    let (anthropic, local) =
        (ProviderMock::start("anthropic").await.unwrap(), ProviderMock::start("local").await.unwrap());
    let secrets = tempfile::tempdir().unwrap();
    let anthropic_key = secret_file(secrets.path(), "anthropic-key", "sk-ant-test-1");
    let backup_key = secret_file(secrets.path(), "backup-key", "Bearer sk-backup-test-1");
    let builder = Envoy::builder(CONFIG)
        .cluster("llm_openai", openai.port)
        .cluster("llm_backup", backup.port)
        .cluster("llm_anthropic", anthropic.port)
        .cluster("llm_local", local.port)
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .replace_value("envoy/secrets/anthropic-key.yaml", &anthropic_key.display().to_string())
        .replace_value("envoy/secrets/backup-key.yaml", &backup_key.display().to_string());
    let envoy = change(builder).start().await.unwrap();
    Gateway { envoy, openai, backup, anthropic, local, secrets }
}

async fn gateway() -> Gateway {
    gateway_with(|b| b).await
}

impl Gateway {
    fn openai(&self) -> async_openai::Client<OpenAIConfig> {
        let config =
            OpenAIConfig::new().with_api_base(format!("{}/v1", self.envoy.url("agents"))).with_api_key(AGENT_KEY);
        async_openai::Client::with_config(config)
    }

    /// The official Anthropic SDK, run by the project's Python: what it made of the answer.
    fn anthropic_sdk(&self, model: &str, extra: &[&str]) -> Value {
        sdk::anthropic(&self.envoy.url("agents"), "agent-dummy-key", model, extra)
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(format!("{}{path}", self.envoy.url("agents"))).json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn everyone(&self) -> Vec<Received> {
        [&self.openai, &self.backup, &self.anthropic, &self.local].iter().flat_map(|m| m.received()).collect()
    }
}

fn chat(model: &str, stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessage::from("Say hello").into()])
        .stream(stream)
        .build()
        .unwrap()
}

/// No agent credential reached any provider, and no Warden routing header either.
fn assert_clean(received: &[Received]) {
    for r in received {
        for (name, value) in &r.headers {
            assert!(!value.contains(AGENT_KEY) && !value.contains("agent-dummy-key"), "{name}: {value} at {}", r.path);
            assert!(!name.starts_with("x-warden-"), "{name} reached a provider");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_reach_their_providers_with_each_providers_own_credential() {
    let gw = gateway().await;
    let client = gw.openai();
    let answer = client.chat().create(chat("fast", false)).await.unwrap();
    assert_eq!(answer.choices[0].message.content.as_deref(), Some(ANSWER_TEXT));
    assert_eq!(answer.model, "gpt-4o-mini");
    let seen = gw.openai.received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    assert_eq!(seen[0].body["model"], "gpt-4o-mini");

    let mut stream = client.chat().create_stream(chat("fast", true)).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(chunk.unwrap().choices.first().and_then(|c| c.delta.content.as_deref()).unwrap_or_default());
    }
    assert_eq!(text, ANSWER_TEXT);

    let embedding = client
        .embeddings()
        .create(CreateEmbeddingRequestArgs::default().model("embed").input("hello").build().unwrap())
        .await
        .unwrap();
    assert_eq!(embedding.data[0].embedding.len(), 3);
    assert_eq!(gw.openai.received().last().unwrap().path, "/v1/embeddings");
    assert_eq!(gw.openai.received().last().unwrap().body["model"], "text-embedding-3-small");

    let (status, body) = gw.post("/v1/responses", &[], &json!({"model": "fast", "input": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.openai.received().last().unwrap().path, "/v1/responses");

    // Anthropic's SDK, to the Anthropic provider: its SDS key, its API version.
    for stream in [false, true] {
        let args: &[&str] = if stream { &["--stream"] } else { &[] };
        let answer = gw.anthropic_sdk("claude", args);
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["text"], ANSWER_TEXT);
        assert_eq!(answer["stop_reason"], "end_turn");
    }
    let seen = gw.anthropic.received();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.path, "/v1/messages");
        assert_eq!(r.header("x-api-key"), Some("sk-ant-test-1"));
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.body["model"], "claude-sonnet-4-5");
    }
    assert_clean(&gw.everyone());

    let lines = gw.envoy.wait_for_access_log(6).await;
    audit::check_schema(&lines).unwrap();
    let first = &lines[0];
    assert_eq!(audit::field(first, "router", "provider").as_deref(), Some("openai"));
    assert_eq!(audit::field(first, "router", "model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(audit::field(first, "router", "alias").as_deref(), Some("fast"));
    let log = gw.envoy.log() + &lines.iter().map(Value::to_string).collect::<String>();
    for secret in [OPENAI_KEY, "sk-ant-test-1", "sk-backup-test-1"] {
        assert!(!log.contains(secret), "a credential reached Envoy's log or the audit line");
    }
    assert_eq!(gw.envoy.stat("wasmcustom.warden.router.provider.openai.answered").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_fails_over_to_the_next_target_with_that_targets_credential() {
    let gw = gateway_with(|b| b.replace_value("300s", "1s")).await;
    let client = gw.openai();
    let faults = [
        (Fault::Status { status: 500, retry_after: None }, "server_error"),
        (Fault::Reset, "no_answer"),
        (Fault::Stall(Duration::from_secs(3)), "no_answer"),
        (Fault::Status { status: 429, retry_after: Some(20) }, "rate_limited"),
    ];
    for (i, (fault, reason)) in faults.iter().enumerate() {
        gw.openai.fail_next(std::slice::from_ref(fault));
        let answer = client.chat().create(chat("fast", false)).await.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(answer.choices[0].message.content.as_deref(), Some(ANSWER_TEXT), "{fault:?}");
        let backup = gw.backup.received();
        assert_eq!(backup.len(), i + 1, "{fault:?} failed over to the backup");
        assert_eq!(backup[i].header("authorization"), Some("Bearer sk-backup-test-1"));
        assert_eq!(backup[i].body["model"], "gpt-4o-mini");
        let lines = gw.envoy.wait_for_access_log(i + 1).await;
        let line = &lines[i];
        assert_eq!(audit::field(line, "router", "provider").as_deref(), Some("backup"), "{line}");
        assert_eq!(audit::field(line, "router", "failover_reason").as_deref(), Some(*reason), "{line}");
        assert_eq!(audit::field(line, "router", "attempts.provider").as_deref(), Some("openai,backup"));
    }
    for r in gw.openai.received() {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
    }
    // The 429's Retry-After (20 s) keeps openai last: the next request goes to the backup first.
    let before = gw.openai.received().len();
    client.chat().create(chat("fast", false)).await.unwrap();
    assert_eq!(gw.openai.received().len(), before, "openai is cooling down");
    assert_clean(&gw.everyone());
    audit::check_schema(&gw.envoy.wait_for_access_log(5).await).unwrap();
    assert!(gw.envoy.stat("wasmcustom.warden.router.provider.openai.failovers").await >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_fails_the_agent_gets_an_error_in_its_own_api() {
    let gw = gateway().await;
    for mock in [&gw.openai, &gw.backup, &gw.local] {
        mock.fail_next(&[Fault::Reset]);
    }
    let (status, body) = gw
        .post("/v1/chat/completions", &[], &json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "providers_unavailable", "{body}");
    gw.anthropic.fail_next(&[Fault::Reset]);
    let answer = gw.anthropic_sdk("claude", &[]);
    assert_eq!(answer["status"], 503, "{answer}");
    assert_eq!(answer["error"]["type"], "error");
    assert_eq!(answer["error"]["error"]["code"], "providers_unavailable");
    // A provider's own error is its answer: passed on as it is.
    gw.anthropic.fail_next(&[Fault::Status { status: 400, retry_after: None }]);
    let answer = gw.anthropic_sdk("claude", &[]);
    assert_eq!(answer["status"], 400, "{answer}");
    let lines = gw.envoy.wait_for_access_log(3).await;
    audit::check_schema(&lines).unwrap();
    assert_eq!(audit::field(&lines[0], "router", "outcome").as_deref(), Some("no_answer"), "{}", lines[0]);
    assert_eq!(audit::field(&lines[0], "router", "attempts.outcome").as_deref(), Some("no_answer,no_answer,no_answer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_sds_credential_is_used_without_a_restart() {
    let gw = gateway().await;
    assert_eq!(gw.anthropic_sdk("claude", &[])["status"], 200);
    secret_file(gw.secrets.path(), "anthropic-key", "sk-ant-test-2-rotated");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(gw.anthropic_sdk("claude", &[])["status"], 200);
        if gw.anthropic.received().last().unwrap().header("x-api-key") == Some("sk-ant-test-2-rotated") {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated key never reached the provider");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_bypass_attempts_are_refused_or_defused() {
    let gw = gateway().await;
    let chat_body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    // Unknown alias, malformed JSON, an endpoint no target serves.
    let (status, body) = gw.post("/v1/chat/completions", &[], &json!({"model": "gpt-9", "messages": []})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("model_not_found")));
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.envoy.url("agents")))
        .body(r#"{"model":"fast","model":"claude"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (status, body) = gw.post("/v1/embeddings", &[], &json!({"model": "claude", "input": "x"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unsupported_endpoint")));
    // Encodings: a compressed body is refused, not routed unread.
    let (status, body) = gw.post("/v1/chat/completions", &[("content-encoding", "gzip")], &chat_body).await;
    assert_eq!((status, body["error"]["code"].as_str()), (415, Some("unsupported_encoding")));
    // Control headers: a client cannot pick the provider's cluster or turn failover off.
    gw.openai.fail_next(&[Fault::Status { status: 503, retry_after: None }]);
    let (status, body) = gw
        .post(
            "/v1/chat/completions",
            &[("x-warden-cluster", "llm_local"), ("x-envoy-max-retries", "0"), ("x-envoy-retry-on", "none")],
            &chat_body,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["served_by"], "backup");
    assert!(gw.local.received().is_empty(), "the client's x-warden-cluster was obeyed");
    // Paths: dot segments are resolved before the router reads the endpoint.
    let (status, body) = gw.post("/v1/embeddings/../chat/completions", &[], &chat_body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.openai.received().last().unwrap().path, "/v1/chat/completions");
    // Trailers: a request that ends in HTTP/2 trailers is routed on its body.
    let answer = h2c::post(
        gw.envoy.port("agents"),
        "/v1/chat/completions",
        &[("content-type", "application/json")],
        chat_body.to_string().as_bytes(),
        Some(&[("x-checksum", "0")]),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(gw.openai.received().last().unwrap().body["model"], "gpt-4o-mini");
    assert_clean(&gw.everyone());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_refuses_a_policy_with_a_typo_or_a_credential_it_cannot_see() {
    let policy = std::fs::read_to_string(repo::root().join("examples/router/policy.yaml")).unwrap();
    let typo = policy.replace("maxAttempts: 3", "maxAttempt: 3");
    let err = Envoy::builder(CONFIG)
        .policy("warden.router", &typo)
        .policy("warden.router_attempt", &typo)
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .start()
        .await
        .err()
        .expect("Envoy refused the policy");
    assert!(format!("{err:#}").contains("router.maxAttempt"), "{err:#}");
    let err = Envoy::builder(CONFIG).start().await.err().expect("Envoy refused the missing variable");
    assert!(format!("{err:#}").contains("router.providers[0].credential.env"), "{err:#}");
}

#[test]
fn the_config_inlines_the_example_policy() {
    let example = std::fs::read_to_string(repo::root().join("examples/router/policy.yaml")).unwrap();
    for filter in ["warden.router", "warden.router_attempt"] {
        assert_eq!(config_policy(CONFIG, filter).unwrap(), example, "{filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_is_served_by_a_provider_of_the_other_translated_both_ways() {
    use async_openai::types::chat::{ChatCompletionRequestSystemMessage, ChatCompletionStreamOptions, FinishReason};
    let gw = gateway().await;
    let client = gw.openai();
    // An OpenAI agent, an Anthropic provider.
    let request = CreateChatCompletionRequestArgs::default()
        .model("claude")
        .messages([
            ChatCompletionRequestSystemMessage::from("Be brief.").into(),
            ChatCompletionRequestUserMessage::from("Say hello").into(),
        ])
        .max_completion_tokens(40u32)
        .build()
        .unwrap();
    let answer = client.chat().create(request.clone()).await.unwrap();
    assert_eq!(answer.choices[0].message.content.as_deref(), Some(ANSWER_TEXT));
    assert_eq!(answer.choices[0].finish_reason, Some(FinishReason::Stop));
    let usage = answer.usage.unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 5));
    let seen = gw.anthropic.received();
    assert_eq!(seen[0].path, "/v1/messages");
    assert_eq!(seen[0].body["system"], "Be brief.");
    assert_eq!(seen[0].body["max_tokens"], 40);
    assert_eq!(seen[0].body["messages"], json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]));
    assert_eq!(seen[0].header("x-api-key"), Some("sk-ant-test-1"));

    let mut streamed = request;
    streamed.stream = Some(true);
    streamed.stream_options =
        Some(ChatCompletionStreamOptions { include_usage: Some(true), include_obfuscation: None });
    let mut stream = client.chat().create_stream(streamed).await.unwrap();
    let (mut text, mut finish, mut usage) = (String::new(), None, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
            finish = choice.finish_reason.or(finish);
        }
        usage = chunk.usage.or(usage);
    }
    assert_eq!(text, ANSWER_TEXT);
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(usage.map(|u| (u.prompt_tokens, u.completion_tokens)), Some((12, 5)));

    // An Anthropic agent, an OpenAI provider.
    for stream in [false, true] {
        let mut args = vec!["--system", "Be brief.", "--tool", "read_file"];
        if stream {
            args.push("--stream");
        }
        let answer = gw.anthropic_sdk("fast", &args);
        assert_eq!(answer["status"], 200, "{answer}");
        assert_eq!(answer["text"], ANSWER_TEXT);
        assert_eq!(answer["stop_reason"], "end_turn");
        assert_eq!(answer["usage"]["input_tokens"], 12);
        assert_eq!(answer["usage"]["output_tokens"], 5);
        let seen = gw.openai.received();
        let last = seen.last().unwrap();
        assert_eq!(last.path, "/v1/chat/completions");
        assert_eq!(last.body["messages"][0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(last.body["tools"][0]["function"]["name"], "read_file");
        assert_eq!(last.body["max_completion_tokens"], 64);
        assert_eq!(last.header("authorization"), Some(format!("Bearer {OPENAI_KEY}").as_str()));
        assert_eq!(last.header("anthropic-version"), None);
    }

    // A provider's error, in the caller's shape.
    gw.openai.fail_next(&[Fault::Status { status: 400, retry_after: None }]);
    let answer = gw.anthropic_sdk("fast", &[]);
    assert_eq!(answer["status"], 400, "{answer}");
    assert_eq!(
        answer["error"],
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "mock failure 400"}})
    );
    gw.anthropic.fail_next(&[Fault::Status { status: 400, retry_after: None }]);
    let (status, body) = gw
        .post("/v1/chat/completions", &[], &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "mock failure 400");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_clean(&gw.everyone());
    audit::check_schema(&gw.envoy.wait_for_access_log(6).await).unwrap();
}

/// A failover across API families: each attempt is shaped from the agent's request as sent,
/// not from what the previous attempt made of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_across_api_families_translates_each_attempt_from_the_agents_request() {
    let gw = gateway().await;
    gw.anthropic.fail_next(&[Fault::Status { status: 503, retry_after: None }]);
    let body = json!({"model": "smart", "max_tokens": 30, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]});
    let (status, answer) = gw.post("/v1/chat/completions", &[], &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["served_by"], "openai");
    let tried = gw.anthropic.received();
    assert_eq!(tried[0].body["system"], "Be brief.", "the first attempt was translated");
    let served = gw.openai.received();
    assert_eq!(served[0].path, "/v1/chat/completions");
    assert_eq!(
        served[0].body,
        json!({"model": "gpt-4o", "max_tokens": 30, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]})
    );
    assert_eq!(served[0].header("anthropic-version"), None, "nothing of the Anthropic attempt is left");
    assert_eq!(served[0].header("x-api-key"), None);

    // And the reverse: an Anthropic agent, Anthropic fails natively, OpenAI serves translated.
    gw.anthropic.fail_next(&[Fault::Reset]);
    let answer = gw.anthropic_sdk("smart", &["--system", "Be brief."]);
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["text"], ANSWER_TEXT);
    let served = gw.openai.received();
    assert_eq!(served[1].body["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(served[1].header("x-api-key"), None);
    let lines = gw.envoy.wait_for_access_log(2).await;
    assert_eq!(audit::field(&lines[0], "router", "attempts.provider").as_deref(), Some("anthropic,openai"));
    // Envoy shares the request's headers with its attempts; the router puts the agent's path
    // back when the answer comes, so the access log shows what the agent called.
    assert_eq!(lines[1]["path"], "/v1/messages");
    assert_eq!(audit::field(&lines[1], "router", "endpoint").as_deref(), Some("messages"));
}

/// What the last attempt wrote into the request's shared header map (the provider key from the
/// environment) is gone before the access log reads it; a provider refusing the gateway's key
/// is failed over, and its words (which may quote the key) never reach the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_key_stays_out_of_the_access_log_and_a_providers_refusal_of_it() {
    let access_log = r#"
- name: warden.audit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format:
      json_format:
        path: "%REQ(:PATH)%"
        authorization: "%REQ(AUTHORIZATION)%"
        status: "%RESPONSE_CODE%"
"#;
    let gw = gateway_with(|b| b.hcm("access_log", access_log)).await;
    let chat_body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = gw.post("/v1/chat/completions", &[], &chat_body).await;
    assert_eq!(status, 200);
    // openai refuses the gateway's key: the backup serves.
    gw.openai.fail_next(&[Fault::Status { status: 401, retry_after: None }]);
    let (status, body) = gw.post("/v1/chat/completions", &[], &chat_body).await;
    assert_eq!((status, body["served_by"].as_str()), (200, Some("backup")), "{body}");
    // Every provider refuses it: a 502 of the gateway's own, not the provider's words.
    for mock in [&gw.openai, &gw.backup, &gw.local] {
        mock.fail_next(&[Fault::Status { status: 401, retry_after: None }]);
    }
    let (status, body) = gw.post("/v1/chat/completions", &[], &chat_body).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "provider_auth_failed");
    assert!(!body.to_string().contains("mock failure"), "{body}");
    let lines = gw.envoy.wait_for_access_log(3).await;
    for line in &lines {
        assert!(!line.to_string().contains(OPENAI_KEY), "the key reached the access log: {line}");
        assert_eq!(line["path"], "/v1/chat/completions");
    }
}
