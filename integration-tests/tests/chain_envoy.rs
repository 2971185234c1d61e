//! The chain as shipped (`envoy/warden.yaml`: identity → tool-acl → token-budget → router) end to
//! end through the real Envoy binary (`WARDEN_ENVOY_VERSION`), with the agents' own SDKs
//! unchanged: `rmcp` for MCP, `async-openai` with its API key in `Authorization: Bearer`, and the
//! Anthropic API's `x-api-key`. Real MCP server, rate-limit service and Redis; mock providers
//! (the far side we cannot run) that count the connections and requests they see, so a refusal is
//! proven from the upstream's side.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use warden_integration_tests::audit;
use warden_integration_tests::envoy::{config_policy, Envoy, EnvoyBuilder};
use warden_integration_tests::fixtures::{ChatProvider, McpFileServer, Script};
use warden_integration_tests::services::{RateLimitService, Redis};
use warden_integration_tests::tool_fixtures::tool_definitions;
use warden_integration_tests::{h2c, repo, sdk};

/// The providers' keys, in the proxy's environment only.
const OPENAI_KEY: &str = "sk-openai-chain-test";
const ANTHROPIC_KEY: &str = "sk-ant-chain-test";
const CONFIG: &str = "envoy/warden.yaml";
const PLANNER_KEY: &str = "wk-planner-7f3a9c1e5b2d4068";
const ADMIN_KEY: &str = "wk-admin-2b8e6d4a1c9f3057";
const GLOBEX_KEY: &str = "wk-globex-5d1c8a3f7e2b9046";

fn example_policy() -> String {
    std::fs::read_to_string(repo::root().join("examples/warden/policy.yaml")).unwrap()
}

/// Everything the chain talks to, and the chain itself.
struct Chain {
    envoy: Envoy,
    mcp: McpFileServer,
    llm: ChatProvider,
    llm_mini: ChatProvider,
    _rls: RateLimitService,
    _redis: Redis,
}

impl Chain {
    async fn start(policy: &str) -> Chain {
        Self::start_with(policy, |b| b).await
    }

    /// The chain with `customize` applied to its Envoy (a filter added, the access log changed).
    async fn start_with(policy: &str, customize: impl FnOnce(EnvoyBuilder) -> EnvoyBuilder) -> Chain {
        let redis = Redis::start().unwrap();
        let rls = RateLimitService::start(Some(&redis.url())).unwrap();
        let mcp = McpFileServer::start(tool_definitions(6), true).await.unwrap();
        let llm = ChatProvider::start(Script::default()).await.unwrap();
        let llm_mini = ChatProvider::start(Script::default()).await.unwrap();
        let mut builder = Envoy::builder(CONFIG)
            .cluster("mcp_files", mcp.port)
            .cluster("llm", llm.port())
            .cluster("llm_mini", llm_mini.port())
            .cluster("ratelimit", rls.port)
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("ANTHROPIC_API_KEY", ANTHROPIC_KEY);
        for filter in [
            "warden.identity",
            "warden.tool_acl",
            "warden.redaction",
            "warden.token_budget",
            "warden.router",
            "warden.router_attempt",
        ] {
            builder = builder.policy(filter, policy);
        }
        let envoy = customize(builder).start().await.unwrap();
        Chain { envoy, mcp, llm, llm_mini, _rls: rls, _redis: redis }
    }

    /// OpenAI's SDK as an agent uses it: the key as its API key (sent as a Bearer token).
    fn openai(&self, key: &str, session: &str) -> async_openai::Client<OpenAIConfig> {
        let config = OpenAIConfig::new().with_api_base(format!("{}/v1", self.envoy.url("agents"))).with_api_key(key);
        let headers = [("x-agent-session".parse().unwrap(), session.parse().unwrap())];
        let http = reqwest::Client::builder().default_headers(headers.into_iter().collect()).build().unwrap();
        async_openai::Client::with_config(config).with_http_client(http)
    }

    async fn mcp_client(&self, key: &str, session: &str) -> RunningService<RoleClient, ClientConfig> {
        let mut headers = HashMap::new();
        headers.insert("x-api-key".parse().unwrap(), key.parse().unwrap());
        headers.insert("x-agent-session".parse().unwrap(), session.parse().unwrap());
        let url = format!("{}/mcp/files", self.envoy.url("agents"));
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
        );
        let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new("warden-chain-e2e", "1.0"));
        match info.serve(transport).await {
            Ok(client) => client,
            Err(e) => panic!("MCP session through the chain failed: {e}\n{}", self.envoy.log()),
        }
    }

    /// Model upstream connections and requests: what the providers themselves saw.
    fn upstream_seen(&self) -> (usize, usize) {
        let servers = [&self.llm.server, &self.llm_mini.server];
        (servers.iter().map(|s| s.connections()).sum(), servers.iter().map(|s| s.requests()).sum())
    }

    /// The access-log record of the request with this path and status.
    async fn record(&self, path: &str, status: u16) -> Value {
        for _ in 0..100 {
            let found = self
                .envoy
                .access_log()
                .into_iter()
                .find(|r| r["path"].as_str() == Some(path) && r["status"].as_u64() == Some(u64::from(status)));
            if let Some(record) = found {
                return record;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no access-log record for {path} with status {status}: {:#?}", self.envoy.access_log());
    }
}

fn chat(model: &str, prompt: &str) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessage::from(prompt).into()])
        .build()
        .unwrap()
}

fn api_error(e: &OpenAIError) -> (String, String) {
    match e {
        OpenAIError::ApiError(api) => (api.api_error.code.clone().unwrap_or_default(), api.api_error.message.clone()),
        other => (String::new(), other.to_string()),
    }
}

/// A field of an access-log record that a filter never wrote: Envoy prints `-` (or null).
/// No section from this filter: it never saw the request.
fn absent(line: &Value, part: &str) -> bool {
    audit::part(line, part).is_none()
}

/// One agent session through the whole chain: identity (an API key where each SDK sends it),
/// tool-acl (listing filtered, a call allowed, a call denied), token-budget (metered and
/// settled), each model served by its own upstream, and one audit line per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_session_runs_through_the_whole_chain() {
    let chain = Chain::start(&example_policy()).await;
    let session = "chain-session-1";

    let mcp = chain.mcp_client(PLANNER_KEY, session).await;
    let tools: Vec<String> = mcp.list_all_tools().await.unwrap().iter().map(|t| t.name.to_string()).collect();
    assert!(!tools.contains(&"exec_shell".to_string()) && tools.contains(&"read_file".to_string()), "{tools:?}");
    let params = |path: &str| -> CallToolRequestParams {
        serde_json::from_value(json!({"name": "read_file", "arguments": {"path": path}})).unwrap()
    };
    let allowed = serde_json::to_value(mcp.call_tool(params("/srv/notes.txt")).await.unwrap()).unwrap();
    assert_ne!(allowed["isError"], true, "{allowed}");
    let denied = serde_json::to_value(mcp.call_tool(params("/srv/../etc/shadow")).await.unwrap()).unwrap();
    assert_eq!(denied["_meta"]["warden/denial"]["rule"], "no-system-paths", "{denied}");
    let calls: Vec<Value> = chain.mcp.calls().into_iter().map(|(_, args)| args).collect();
    assert_eq!(calls, [json!({"path": "/srv/notes.txt"})], "only the allowed call reached the server");
    mcp.cancel().await.unwrap();

    // OpenAI's SDK, unchanged: its API key goes as `Authorization: Bearer`.
    let openai = chain.openai(PLANNER_KEY, session);
    let answer = openai.chat().create(chat("gpt-4o", "Summarise the notes.")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o");
    let answer = openai.chat().create(chat("gpt-4o-mini", "And now briefly.")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o-mini");
    // Each model went to its own upstream; neither saw the agent's key.
    assert_eq!(chain.llm.seen().len(), 1);
    assert_eq!(chain.llm_mini.seen().len(), 1);
    // Warden's own headers stay inside the gateway: a provider sees none.
    assert_eq!(chain.llm_mini.seen()[0].model_header, None);
    // Redaction: the provider gets a placeholder for the agent's contact, never the address.
    let answer = openai.chat().create(chat("gpt-4o", "Draft a note to ann@example.com.")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o");
    let sent = chain.llm.seen().last().unwrap().body["messages"][0]["content"].clone();
    assert_eq!(sent, "Draft a note to ⟦EMAIL_1⟧.");
    // A credential never leaves: refused in OpenAI's shape, naming the class, not the value.
    let err = openai.chat().create(chat("gpt-4o", "use AKIAIOSFODNN7EXAMPLE")).await.unwrap_err();
    assert!(matches!(&err, OpenAIError::ApiError(e) if e.api_error.message.contains("aws_access_key")), "{err:?}");
    assert_eq!(chain.llm.seen().len(), 2, "the refused request never reached the provider");
    // A card number stays readable for private models only (`payment_card: private`): redaction
    // records the class, and the router finds no private target for gpt-4o.
    let err = openai.chat().create(chat("gpt-4o", "charge 4111 1111 1111 1111")).await.unwrap_err();
    let (code, message) = api_error(&err);
    assert_eq!(code, "provider_not_permitted", "{message}");
    assert!(message.contains("sensitive-data"), "{message}");
    assert_eq!(chain.llm.seen().len(), 2, "no provider saw the card number");

    // Anthropic's API: the key bare in x-api-key.
    let anthropic = reqwest::Client::new()
        .post(format!("{}/v1/messages", chain.envoy.url("agents")))
        .header("x-api-key", PLANNER_KEY)
        .header("anthropic-version", "2023-06-01")
        .header("x-agent-session", session)
        .json(&json!({"model": "claude-sonnet-4", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 200, "{}", anthropic.text().await.unwrap());
    // Anthropic's Python SDK, unchanged: given `api_key=`, 2.x sends it as `Authorization: Bearer`.
    let session_header = format!("x-agent-session={session}");
    let answer =
        sdk::anthropic(&chain.envoy.url("agents"), PLANNER_KEY, "claude-sonnet-4", &["--header", &session_header]);
    assert_eq!(answer["status"], 200, "{answer}");

    let record = chain.record("/v1/chat/completions", 200).await;
    let principal = audit::part(&record, "principal").unwrap_or_else(|| panic!("{record:#}"));
    assert_eq!(principal["agent"], "planner");
    assert_eq!(principal["tenant"], "acme");
    assert_eq!(principal["session"], session);
    assert_eq!(principal["auth_methods"], json!(["api_key"]));
    assert_eq!(audit::field(&record, "identity", "decision").unwrap(), "allow;rule=openai;reason=authenticated");
    let budget = audit::part(&record, "token_budget").unwrap();
    assert_eq!(budget["verdict"], "allow", "{record:#}");
    assert_eq!(budget["model_served"], "gpt-4o");
    assert!(budget["tokens"]["input"].as_u64().unwrap() > 0, "{record:#}");
    assert_eq!(record["upstream"], "warden_providers");
    assert_eq!(audit::field(&record, "router", "provider").as_deref(), Some("openai"), "{record:#}");
    assert_eq!(audit::field(&record, "router", "model").as_deref(), Some("gpt-4o"));
    let tool_record = chain
        .envoy
        .access_log()
        .into_iter()
        .find(|r| audit::field(r, "tool_acl", "calls.rule").is_some_and(|d| d.contains("no-system-paths")));
    let tool_record = tool_record.unwrap_or_else(|| panic!("{:#?}", chain.envoy.access_log()));
    assert_eq!(audit::field(&tool_record, "tool_acl", "calls.tool").unwrap(), "read_file");
    assert_eq!(audit::field(&tool_record, "tool_acl", "calls.args_sha256").unwrap().len(), 64);
    assert!(absent(&tool_record, "token_budget"), "token-budget does not govern MCP: {tool_record}");
    // Every line of the session, as Envoy wrote it, matches the published schema.
    audit::check_schema(&chain.envoy.access_log()).unwrap();
    // The chain ships as one module (warden.wasm): its four filters share one VM per thread
    // (two workers and the main thread) and the base VM Envoy clones those from, where one
    // module per filter would need four each. The router's attempt filter, an upstream filter,
    // has VMs of its own (warden_router.wasm): four more.
    assert_eq!(chain.envoy.stat("wasm.envoy.wasm.runtime.v8.active").await, 8);
}

/// Each filter refuses in the caller's protocol, and a request refused by one filter is seen
/// by no later filter (its audit fields stay empty) and by no upstream: with the headers held,
/// not even a connection is opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_refused_by_one_filter_reaches_no_later_filter_and_no_upstream() {
    let chain = Chain::start(&example_policy()).await;

    // identity: an unknown key.
    let e = chain.openai("wk-nobody", "s-1").chat().create(chat("gpt-4o", "hi")).await.unwrap_err();
    assert_eq!(api_error(&e).0, "unknown_api_key", "{e:?}");
    let record = chain.record("/v1/chat/completions", 401).await;
    assert_eq!(audit::part(&record, "identity").unwrap()["verdict"], "deny", "{record}");
    assert!(absent(&record, "principal"), "nothing was verified: {record}");
    assert!(absent(&record, "tool_acl") && absent(&record, "token_budget"), "{record}");

    // identity: a tenant's agent without the model scope.
    let e = chain.openai(GLOBEX_KEY, "s-2").chat().create(chat("gpt-4o", "hi")).await.unwrap_err();
    assert_eq!(api_error(&e).0, "insufficient_scope", "{e:?}");

    // tool-acl: a model request it cannot read (malformed JSON) never reaches token-budget.
    let malformed = reqwest::Client::new()
        .post(format!("{}/v1/responses", chain.envoy.url("agents")))
        .bearer_auth(PLANNER_KEY)
        .header("x-agent-session", "s-3")
        .header("content-type", "application/json")
        .body(r#"{"model": "gpt-4o", "input": "#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    let record = chain.record("/v1/responses", 400).await;
    assert_eq!(audit::part(&record, "tool_acl").unwrap()["verdict"], "deny", "{record}");
    assert!(absent(&record, "token_budget"), "{record}");

    // token-budget: a request over the per-request budget.
    let mut big = chat("gpt-4o", "hi");
    big.max_completion_tokens = Some(50_000);
    let e = chain.openai(PLANNER_KEY, "s-4").chat().create(big).await.unwrap_err();
    let (code, message) = api_error(&e);
    assert!(message.contains("per-request"), "{code}: {message}");

    assert_eq!(chain.upstream_seen(), (0, 0), "no refused request reached a provider, not even as a connection");
    assert_eq!(chain.envoy.stat("cluster.llm.upstream_rq_total").await, 0);
    assert_eq!(chain.envoy.stat("cluster.llm.upstream_cx_total").await, 0);
}

/// What `requestHeaders: release` costs: the headers go upstream before the body is read, so
/// the provider sees a request open that the chain then refuses (and Envoy resets).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn released_headers_let_the_upstream_see_a_request_that_is_then_refused() {
    let policy = example_policy().replace("requestHeaders: hold", "requestHeaders: release");
    // The router needs held headers (it must choose before the request leaves): without it, the
    // model route goes straight to gpt-4o's provider.
    let chain = Chain::start_with(&policy, |b| b.without_filter("warden.router").route_to("models", "llm")).await;
    let mut big = chat("gpt-4o", "hi");
    big.max_completion_tokens = Some(50_000);
    let e = chain.openai(PLANNER_KEY, "s-1").chat().create(big).await.unwrap_err();
    assert!(api_error(&e).1.contains("per-request"), "{e:?}");
    let (connections, _) = chain.upstream_seen();
    assert!(connections >= 1, "the upstream saw a connection opened for the refused request");
    assert!(chain.llm.seen().is_empty(), "but no body, and nothing was served");
}

/// A budget that moves a request to the cheaper model changes its alias: the router serves the
/// cheaper model from its own provider, and the one asked for sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_fallback_is_served_by_the_cheaper_models_own_upstream() {
    let policy = example_policy().replace("      limit: 0.02\n", "      limit: 0.000001\n");
    assert_ne!(policy, example_policy());
    let chain = Chain::start(&policy).await;
    let answer = chain.openai(PLANNER_KEY, "s-1").chat().create(chat("gpt-4o", "hello")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o-mini", "the provider was asked for the fallback model");
    assert!(chain.llm.seen().is_empty(), "gpt-4o's upstream saw nothing");
    assert_eq!(chain.llm.server.connections(), 0);
    let seen = chain.llm_mini.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["model"], "gpt-4o-mini");
    let record = chain.record("/v1/chat/completions", 200).await;
    let budget = audit::part(&record, "token_budget").unwrap();
    assert_eq!(budget["model_requested"], "gpt-4o");
    assert_eq!(budget["model_served"], "gpt-4o-mini");
    assert_eq!(budget["reason"], "fallback_model", "{record}");
    // The fallback is an alias like any other: the router sent it to the cheaper model's provider.
    assert_eq!(audit::field(&record, "router", "alias").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(audit::field(&record, "router", "provider").as_deref(), Some("local"));
    assert_eq!(audit::field(&record, "router", "private").as_deref(), Some("true"));
}

/// A 1 MB request body, sent in many HTTP/2 DATA frames, through every body-reading filter of
/// the chain and then Envoy's own `buffer` filter, reaches the provider byte for byte (its
/// SHA-256 checked there), with a `content-length` that matches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_megabyte_body_reaches_the_upstream_intact_beside_envoys_buffer_filter() {
    let policy = example_policy()
        .replace("  maxBodyBytes: 65536\n", "  maxBodyBytes: 4194304\n")
        .replace("tokenBudget:\n", "tokenBudget:\n  maxBodyBytes: 4194304\n")
        .replace("      limit: 16000\n", "      limit: 4000000\n")
        .replace("      limit: 6000\n", "      limit: 4000000\n")
        .replace("      limit: 200000\n", "      limit: 4000000\n")
        .replace("      limit: 0.02\n", "      limit: 100\n");
    let buffer = r#"
name: envoy.filters.http.buffer
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
  max_request_bytes: 8388608
"#;
    let chain = Chain::start_with(&policy, |b| b.filter_before_router(buffer)).await;
    // Varied text, so that no two chunks are alike and a lost or repeated chunk shows.
    let mut prompt = String::with_capacity(1 << 20);
    let mut i = 0u64;
    while prompt.len() < (1 << 20) {
        prompt.push_str(&format!("line {i} of the long document, word{} ", i * 7919 % 1000));
        i += 1;
    }
    let body = json!({"model": "gpt-4o", "max_tokens": 16, "messages": [{"role": "user", "content": prompt}]})
        .to_string()
        .into_bytes();
    let length = body.len().to_string();
    let auth = format!("Bearer {PLANNER_KEY}");
    let headers = [
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
        ("authorization", auth.as_str()),
        ("x-agent-session", "s-big"),
    ];
    let answer = h2c::post(chain.envoy.port("agents"), "/v1/chat/completions", &headers, &body, None).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = chain.llm.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body_sha256, hex::encode(Sha256::digest(&body)), "the body arrived byte for byte");
}

#[test]
fn the_config_inlines_the_example_policy() {
    for filter in
        ["warden.identity", "warden.tool_acl", "warden.token_budget", "warden.router", "warden.router_attempt"]
    {
        assert_eq!(config_policy(CONFIG, filter).unwrap(), example_policy(), "{filter}");
    }
}

/// Not named by the issue: a client sends the header the cheaper model's route matches
/// (`x-warden-model`). Envoy chose the route on it before any filter ran. With released headers
/// token-budget never names the model, so only identity stands between the client and that
/// route: it strips the header, the route is chosen again (Envoy does so on a header edit by a
/// proxy-wasm ABI 0.2.1 module; identity also asks for it explicitly, for newer ABIs), and
/// gpt-4o goes to gpt-4o's upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_model_header_cannot_steer_the_route() {
    let policy = example_policy().replace("requestHeaders: hold", "requestHeaders: release");
    // The router needs held headers (it must choose before the request leaves): without it, the
    // model route goes straight to gpt-4o's provider.
    let chain = Chain::start_with(&policy, |b| b.without_filter("warden.router").route_to("models", "llm")).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", chain.envoy.url("agents")))
        .bearer_auth(PLANNER_KEY)
        .header("x-agent-session", "s-forged")
        .header("x-warden-model", "gpt-4o-mini")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(chain.llm_mini.server.requests(), 0, "the forged header chose the route");
    assert_eq!(chain.llm.seen().len(), 1);
    assert_eq!(chain.llm.seen()[0].model_header, None, "and it never reached the provider");
}

/// With `auditFormat: struct` the record is a `google.protobuf.Struct`, which an access log
/// prints as nested JSON with `TYPED` (at a cost in Envoy's CPU, see the README): the same
/// record, checked against the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_record_as_a_struct_is_printed_as_nested_json() {
    let policy = format!("auditFormat: struct\n{}", example_policy());
    let access_log = r#"
- name: warden.audit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
    log_format:
      json_format:
        time: "%START_TIME%"
        request_id: "%REQ(X-REQUEST-ID)%"
        method: "%REQ(:METHOD)%"
        path: "%REQ(:PATH)%"
        status: "%RESPONSE_CODE%"
        warden: "%FILTER_STATE(wasm.warden.audit:TYPED)%"
"#;
    let chain = Chain::start_with(&policy, |b| b.hcm("access_log", access_log)).await;
    chain.openai(PLANNER_KEY, "s-typed").chat().create(chat("gpt-4o", "hi")).await.unwrap();
    let e = chain.openai("wk-nobody", "s-typed").chat().create(chat("gpt-4o", "hi")).await.unwrap_err();
    assert_eq!(api_error(&e).0, "unknown_api_key");
    let line = chain.record("/v1/chat/completions", 200).await;
    assert_eq!(line["warden"]["@type"], "type.googleapis.com/google.protobuf.Struct", "{line:#}");
    let record = &line["warden"]["value"];
    assert_eq!(record["v"], 1);
    assert_eq!(record["principal"]["agent"], "planner");
    assert_eq!(record["token_budget"]["model_served"], "gpt-4o");
    assert!(record["token_budget"]["tokens"]["input"].as_u64().unwrap() > 0, "{line:#}");
    let refused = chain.record("/v1/chat/completions", 401).await;
    assert_eq!(refused["warden"]["value"]["identity"]["reason"], "unknown_api_key");
    audit::check_schema(&chain.envoy.access_log()).unwrap();
}

/// The router's rules see the principal identity verified: an agent kept on private providers
/// is refused a model only public providers serve (403 naming the rule, in the agent's API),
/// and served a model its private provider has; the provider sees its own key, never the
/// agent's, nor Warden's headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_kept_on_private_providers_reaches_only_those() {
    let policy = example_policy().replace("when: { tenants: [bank] }", "when: { agents: [admin-bot] }");
    assert_ne!(policy, example_policy());
    let chain = Chain::start(&policy).await;
    let e = chain.openai(ADMIN_KEY, "s-g").chat().create(chat("gpt-4o", "hi")).await.unwrap_err();
    let (code, message) = api_error(&e);
    assert_eq!(code, "provider_not_permitted", "{message}");
    assert!(message.contains("bank-private"), "{message}");
    assert!(chain.llm.seen().is_empty());
    let answer = chain.openai(ADMIN_KEY, "s-g").chat().create(chat("gpt-4o-mini", "hi")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o-mini");
    assert_eq!(chain.llm_mini.seen().len(), 1);
    let refused = chain.record("/v1/chat/completions", 403).await;
    assert_eq!(audit::field(&refused, "router", "rule").as_deref(), Some("bank-private"));
    let served = chain.record("/v1/chat/completions", 200).await;
    assert_eq!(audit::field(&served, "router", "private").as_deref(), Some("true"));
    // The planner's request to gpt-4o carries OpenAI's key from the proxy's environment.
    chain.openai(PLANNER_KEY, "s-p").chat().create(chat("gpt-4o", "hi")).await.unwrap();
    assert_eq!(chain.llm.seen().len(), 1);
    assert_eq!(chain.llm.seen()[0].authorization, Some(format!("Bearer {OPENAI_KEY}")));
    assert_eq!(chain.llm_mini.seen()[0].authorization, None, "the private provider needs no key, and got none");
    audit::check_schema(&chain.envoy.access_log()).unwrap();
}

/// The metrics as a Prometheus server scrapes them: a session through the chain that makes
/// every kind of Warden metric count (an identity refusal, allowed and denied tool calls, a
/// placeholder and a blocked key, budgeted chats and a budget refusal), then
/// `/stats/prometheus`. Every metric `docs/metrics.md` documents is there under its documented
/// name with its documented labels, and every query of the Grafana dashboard
/// (`examples/grafana/warden.json`) names a metric the scrape has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_prometheus_scrape_has_every_documented_metric_and_the_dashboard_only_those() {
    use warden_integration_tests::prometheus;
    let chain = Chain::start(&example_policy()).await;
    let session = "metrics-session";
    let openai = chain.openai(PLANNER_KEY, session);
    openai.chat().create(chat("gpt-4o", "Write to ann@example.com.")).await.unwrap();
    openai.chat().create(chat("gpt-4o-mini", "Hello.")).await.unwrap();
    openai.chat().create(chat("gpt-4o", "use AKIAIOSFODNN7EXAMPLE")).await.unwrap_err();
    let huge = json!({"model": "gpt-4o", "max_tokens": 100000, "messages": [{"role": "user", "content": "hi"}]});
    let refused = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", chain.envoy.url("agents")))
        .bearer_auth(PLANNER_KEY)
        .header("x-agent-session", session)
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "{}", refused.text().await.unwrap());
    chain.openai("wk-not-a-key", session).chat().create(chat("gpt-4o", "hi")).await.unwrap_err();
    let mcp = chain.mcp_client(PLANNER_KEY, session).await;
    let params = |path: &str| -> CallToolRequestParams {
        serde_json::from_value(json!({"name": "read_file", "arguments": {"path": path}})).unwrap()
    };
    mcp.call_tool(params("/srv/notes.txt")).await.unwrap();
    mcp.call_tool(params("/etc/shadow")).await.unwrap();
    mcp.cancel().await.unwrap();

    let url = format!("http://127.0.0.1:{}/stats/prometheus", chain.envoy.admin_port);
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let scraped = prometheus::parse(&text);
    std::fs::write(std::env::temp_dir().join(format!("warden-scrape-{}.txt", repo::envoy_version())), &text).unwrap();

    let documented = documented_metrics();
    assert!(documented.len() > 40, "docs/metrics.md lists the metrics: {}", documented.len());
    let newest = repo::envoy_version() == repo::ENVOY_VERSIONS[0];
    for (name, labels, older_name) in &documented {
        let name = if newest { name } else { older_name.as_ref().unwrap_or(name) };
        let found = scraped.iter().any(|s| &s.name == name && labels.iter().all(|l| s.labels.contains_key(l)));
        assert!(found, "{name} with labels {labels:?} is not in the scrape:\n{}", relevant(&text));
    }
    for query in dashboard_queries() {
        for metric in metric_names(&query) {
            assert!(
                scraped.iter().any(|s| s.name == metric),
                "the dashboard's {query:?} names {metric}, not in the scrape"
            );
        }
    }
}

fn relevant(text: &str) -> String {
    text.lines().filter(|l| l.contains("warden")).collect::<Vec<_>>().join("\n")
}

/// `docs/metrics.md`'s rows: the Prometheus name, its labels, and its name on the oldest Envoy
/// when it differs there.
fn documented_metrics() -> Vec<(String, Vec<String>, Option<String>)> {
    let doc = std::fs::read_to_string(repo::root().join("docs/metrics.md")).unwrap();
    let code = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_string).collect() };
    doc.lines()
        .filter(|l| l.starts_with("| `warden_") || l.starts_with("| `envoy_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = code(cells[1]).remove(0);
            let labels = code(cells[2]);
            let older = code(cells[3]).into_iter().next();
            (name, labels, older)
        })
        .collect()
}

fn dashboard_queries() -> Vec<String> {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo::root().join("examples/grafana/warden.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 7, "the dashboard has its panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect()
}

/// The metric names in a PromQL expression: identifiers starting with `warden_` or `envoy_`,
/// outside label matchers (`{…}`) and grouping clauses (`by (…)`).
fn metric_names(query: &str) -> Vec<String> {
    let mut bare = String::new();
    let mut rest = query;
    while let Some(c) = rest.chars().next() {
        let (skip_to, close) = if c == '{' {
            (Some(0), '}')
        } else if rest.starts_with("by (") || rest.starts_with("without (") {
            (rest.find('('), ')')
        } else {
            (None, ' ')
        };
        match skip_to {
            Some(open) => {
                let end = rest[open..].find(close).map_or(rest.len(), |i| open + i + 1);
                bare.push(' ');
                rest = &rest[end..];
            }
            None => {
                bare.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("warden_") || w.starts_with("envoy_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn metric_names_are_read_outside_matchers_and_groupings() {
    let q =
        r#"sum by (envoy_cluster_name) (rate(envoy_x_bucket{envoy_http_conn_manager_prefix="agents"}[5m])) / warden_a"#;
    assert_eq!(metric_names(q), ["envoy_x_bucket", "warden_a"]);
}

/// Attributes in OpenTelemetry's GenAI and MCP conventions, as a collector receives them: an
/// OTLP receiver on loopback gets what Envoy exports for a model call and two MCP tool calls
/// through the chain. The OTLP audit log records carry the attributes `docs/tracing.md` lists
/// on both Envoys (with the request's trace id); on Envoy ≥ 1.37 the spans carry them too
/// (`examples/tracing/span-tags.yaml`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn genai_and_mcp_attributes_reach_the_collector_on_logs_and_spans() {
    use warden_integration_tests::otlp::{self, OtlpReceiver};
    let receiver = OtlpReceiver::start().await.unwrap();
    let spans_tagged = repo::envoy_version() == repo::ENVOY_VERSIONS[0];
    let span_tags = std::fs::read_to_string(repo::root().join("examples/tracing/span-tags.yaml")).unwrap();
    // Tenant acme opts in to the capture of what its agents saw.
    let policy =
        example_policy().replacen("\nredaction:\n", "\nredaction:\n  capture: { when: { tenants: [acme] } }\n", 1);
    assert!(policy.contains("capture:"));
    let chain = Chain::start_with(&policy, |b| {
        let b = b.cluster("otel", receiver.port);
        if spans_tagged {
            b.hcm("tracing", &span_tags)
        } else {
            b
        }
    })
    .await;
    let session = "trace-session";
    let answer = chain.openai(PLANNER_KEY, session).chat().create(chat("gpt-4o", "Hello.")).await.unwrap();
    assert_eq!(answer.model, "gpt-4o");
    chain.openai(PLANNER_KEY, session).chat().create(chat("gpt-4o-mini", "Write to ann@example.com.")).await.unwrap();
    let mcp = chain.mcp_client(PLANNER_KEY, session).await;
    let params = |path: &str| -> CallToolRequestParams {
        serde_json::from_value(json!({"name": "read_file", "arguments": {"path": path}})).unwrap()
    };
    mcp.call_tool(params("/srv/notes.txt")).await.unwrap();
    mcp.call_tool(params("/etc/shadow")).await.unwrap();
    mcp.cancel().await.unwrap();

    // Envoy's exporters flush every few seconds.
    // An attribute a request does not have is `-` in a log record, empty on a span.
    let has = |a: &std::collections::BTreeMap<String, String>, key: &str| {
        a.get(key).is_some_and(|v| !v.is_empty() && v != "-")
    };
    let tool_calls = |sets: &[std::collections::BTreeMap<String, String>]| {
        sets.iter().filter(|a| has(a, "gen_ai.tool.name")).count()
    };
    let mut logs = Vec::new();
    let mut spans = Vec::new();
    for _ in 0..200 {
        logs = receiver.logs().iter().map(|l| otlp::attributes(&l.attributes)).collect::<Vec<_>>();
        spans = receiver.spans().iter().map(|s| otlp::attributes(&s.attributes)).collect::<Vec<_>>();
        if tool_calls(&logs) >= 2 && (!spans_tagged || tool_calls(&spans) >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut carriers = vec![("logs", logs.clone())];
    if spans_tagged {
        carriers.push(("spans", spans.clone()));
    }
    for (what, sets) in carriers {
        let model = sets
            .iter()
            .find(|a| a.get("gen_ai.request.model").is_some_and(|m| m == "gpt-4o"))
            .unwrap_or_else(|| panic!("{what}: {sets:#?}"));
        assert_eq!(model["gen_ai.operation.name"], "chat", "{what}");
        assert_eq!(model["gen_ai.provider.name"], "openai", "{what}");
        assert_eq!(model["gen_ai.response.model"], "gpt-4o", "{what}");
        assert!(model["gen_ai.usage.input_tokens"].parse::<u64>().unwrap() > 0, "{what}: {model:?}");
        assert!(model["gen_ai.usage.output_tokens"].parse::<u64>().unwrap() > 0, "{what}: {model:?}");
        assert_eq!(model["gen_ai.conversation.id"], session, "{what}");
        assert_eq!(model["warden.agent"], "planner", "{what}");
        assert_eq!(model["warden.tenant"], "acme", "{what}");
        assert_eq!(model["warden.decision"], "allow", "{what}");
        assert!(model["warden.cost_usd"].parse::<f64>().unwrap() > 0.0, "{what}: {model:?}");

        let calls: Vec<_> = sets.iter().filter(|a| has(a, "gen_ai.tool.name")).collect();
        assert_eq!(calls.len(), 2, "{what}: {sets:#?}");
        for call in &calls {
            assert_eq!(call["gen_ai.operation.name"], "execute_tool", "{what}");
            assert_eq!(call["gen_ai.tool.name"], "read_file", "{what}");
            assert_eq!(call["mcp.method.name"], "tools/call", "{what}");
            assert_eq!(call["gen_ai.conversation.id"], session, "{what}");
        }
        let decisions: Vec<&str> = calls.iter().map(|c| c["warden.decision"].as_str()).collect();
        assert!(
            decisions.contains(&"allow") && decisions.contains(&"deny:tool_acl:denied_by_rule"),
            "{what}: {decisions:?}"
        );
    }
    // Each log record is the request's audit record, joined to its span by the trace id.
    let records = receiver.logs();
    let chat_log = records
        .iter()
        .find(|l| otlp::attributes(&l.attributes).get("gen_ai.request.model").is_some_and(|m| m == "gpt-4o"))
        .unwrap();
    let body: Value = serde_json::from_str(&otlp::text(chat_log.body.as_ref().unwrap()).unwrap()).unwrap();
    assert_eq!(body["principal"]["session"], session);
    assert_eq!(body["router"]["provider"], "openai");
    assert_eq!(chat_log.trace_id.len(), 16, "the record carries its request's trace id");
    let mut traced = false;
    for _ in 0..100 {
        traced = receiver.spans().iter().any(|s| s.trace_id == chat_log.trace_id);
        if traced {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(traced, "the record's trace id is a span's");

    // The capture of what the agent saw: its own log records, the request after redaction.
    let captures: Vec<Value> = receiver
        .logs()
        .iter()
        .filter(|l| otlp::attributes(&l.attributes).get("log.kind").is_some_and(|k| k == "warden.capture"))
        .filter_map(|l| serde_json::from_str(&otlp::text(l.body.as_ref()?)?).ok())
        .collect();
    let mailed = captures
        .iter()
        .find(|c| c["request"].as_str().is_some_and(|r| r.contains("Write to")))
        .unwrap_or_else(|| panic!("no capture of the chat: {captures:#?}"));
    assert!(mailed["request"].as_str().unwrap().contains("⟦EMAIL_1⟧"), "{mailed}");
    assert!(!mailed.to_string().contains("ann@example.com"), "{mailed}");
    assert!(mailed["answer"].as_str().is_some_and(|a| a.contains("choices")), "{mailed}");
    assert_eq!(mailed["session"], session);
    let audit_logs = chain.envoy.access_log();
    assert!(audit_logs.iter().any(|r| r["request_id"] == mailed["request_id"]), "tied to the audit line by request id");
}

/// Tool calls against budgets, on the wire: tool-acl records the calls it lets through,
/// token-budget counts them (a session's writes locally, the tenant's calls at the rate-limit
/// service over Redis) and refuses the one over a limit in JSON-RPC, as rmcp reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tool_calls_are_counted_against_session_and_tenant_budgets() {
    let budgets = "  budgets:
    - { id: writes-per-session, scope: [session, agent], unit: toolCalls, limit: 3, window: session, when: { tools: [write_file] } }
    - { id: tenant-tool-calls, scope: [tenant], unit: toolCalls, limit: 5, window: day, store: global }
";
    let policy = example_policy().replacen("  budgets:\n", budgets, 1);
    assert_ne!(policy, example_policy());
    let chain = Chain::start(&policy).await;
    let call = |tool: &str, path: &str| -> CallToolRequestParams {
        serde_json::from_value(json!({"name": tool, "arguments": {"path": path, "content": "x"}})).unwrap()
    };

    let mcp = chain.mcp_client(PLANNER_KEY, "tools-1").await;
    for i in 1..=3 {
        let result = serde_json::to_value(mcp.call_tool(call("write_file", &format!("/srv/w{i}.txt"))).await.unwrap());
        assert_ne!(result.unwrap()["isError"], true, "write {i}");
    }
    let refused = mcp.call_tool(call("write_file", "/srv/w4.txt")).await.unwrap_err();
    let refused = format!("{refused:?}");
    assert!(refused.contains("-32001") && refused.contains("writes-per-session"), "{refused}");
    // A read is not a write: within the session's writes, the tenant's fourth call.
    mcp.call_tool(call("read_file", "/srv/w1.txt")).await.unwrap();
    mcp.cancel().await.unwrap();

    // Another session of the tenant: its fifth call passes, its sixth is over the tenant's
    // day at the rate-limit service.
    let mcp = chain.mcp_client(PLANNER_KEY, "tools-2").await;
    mcp.call_tool(call("read_file", "/srv/w2.txt")).await.unwrap();
    let refused = format!("{:?}", mcp.call_tool(call("read_file", "/srv/w3.txt")).await.unwrap_err());
    assert!(refused.contains("tenant-tool-calls"), "{refused}");
    mcp.cancel().await.unwrap();

    let reached: Vec<String> = chain.mcp.calls().into_iter().map(|(tool, _)| tool).collect();
    assert_eq!(reached.len(), 5, "only the calls within budget reached the server: {reached:?}");
    let refusals = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter_map(|r| audit::part(r, "token_budget"))
            .filter(|p| p["verdict"] == "deny")
            .map(|p| p["rule"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let mut records = chain.envoy.access_log();
    for _ in 0..100 {
        if refusals(&records).len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        records = chain.envoy.access_log();
    }
    assert_eq!(refusals(&records), ["writes-per-session", "tenant-tool-calls"], "{records:#?}");
    audit::check_schema(&records).unwrap();
}

/// A credential a client puts in the URL never reaches the audit log: the path is logged
/// without its query string, and the policy takes no token from the query (so the request is
/// refused, and that refusal is logged without it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_in_the_query_string_stays_out_of_the_logs() {
    let chain = Chain::start(&example_policy()).await;
    let secret = "sk-in-the-url-7c1d9e";
    let url = format!("{}/v1/chat/completions?access_token={secret}&api_key={secret}", chain.envoy.url("agents"));
    let refused = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a token in the URL is not a credential here");
    let record = chain.record("/v1/chat/completions", 401).await;
    assert_eq!(record["path"], "/v1/chat/completions", "{record}");
    let logged = serde_json::to_string(&chain.envoy.access_log()).unwrap();
    assert!(!logged.contains(secret), "the audit log holds the URL's token: {logged}");
    assert!(!chain.envoy.log().contains(secret), "Envoy's own log holds the URL's token");
}
