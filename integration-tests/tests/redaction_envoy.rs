//! The redaction filter end to end, through a real Envoy (`envoy/redaction.yaml`), with the
//! official clients: `async-openai` against a mock provider that echoes what it was sent (so
//! what comes back is exactly what left the gateway), and `rmcp` against the demo MCP server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs};
use futures::StreamExt;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use warden_integration_tests::envoy::{config_policy, Envoy};
use warden_integration_tests::fixtures::{ChatProvider, McpFileServer, Script};
use warden_integration_tests::tool_fixtures::tool_definitions;
use warden_integration_tests::{audit, gzip, h2c, repo};

const CONFIG: &str = "envoy/redaction.yaml";
const PLANNER_KEY: &str = "wk-planner-7f3a9c1e5b2d4068";
const GLOBEX_KEY: &str = "wk-globex-5d1c8a3f7e2b9046";
const PROMPT: &str = "Write to ann@example.com or call +44 20 7946 0958 about bluebird.";

struct Bed {
    envoy: Envoy,
    provider: ChatProvider,
    mcp: McpFileServer,
}

async fn start() -> Bed {
    let provider = ChatProvider::start(Script { echo: true, ..Script::default() }).await.unwrap();
    let mcp = McpFileServer::start(tool_definitions(6), true).await.unwrap();
    let envoy =
        Envoy::builder(CONFIG).cluster("llm", provider.port()).cluster("mcp_files", mcp.port).start().await.unwrap();
    Bed { envoy, provider, mcp }
}

fn client(bed: &Bed, key: &str) -> async_openai::Client<OpenAIConfig> {
    let config = OpenAIConfig::new().with_api_base(format!("{}/v1", bed.envoy.url("agents"))).with_api_key(key);
    async_openai::Client::with_config(config)
}

fn chat(prompt: &str, stream: bool) -> async_openai::types::chat::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model("gpt-4o")
        .messages([ChatCompletionRequestUserMessage::from(prompt).into()])
        .stream(stream)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_sees_placeholders_and_the_agent_its_own_data_json_and_streamed() {
    let bed = start().await;
    let openai = client(&bed, PLANNER_KEY);
    let answer = openai.chat().create(chat(PROMPT, false)).await.unwrap();
    let sent = bed.provider.seen()[0].body["messages"][0]["content"].as_str().unwrap().to_string();
    assert_eq!(sent, "Write to ⟦EMAIL_1⟧ or call ⟦PHONE_1⟧ about [PROJECT_CODENAME].");
    // The provider echoed what it got; the agent reads its own data again.
    let restored = answer.choices[0].message.content.clone().unwrap();
    assert_eq!(restored, "Write to ann@example.com or call +44 20 7946 0958 about [PROJECT_CODENAME].");

    // Streamed three characters a delta: placeholders split across deltas are restored whole.
    let mut stream = openai.chat().create_stream(chat(PROMPT, true)).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for choice in chunk.choices {
            text.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    assert_eq!(text, restored);

    let records = bed.envoy.wait_for_access_log(2).await;
    let record = &records[0];
    assert_eq!(audit::field(record, "redaction", "findings.email.placeholder").as_deref(), Some("1"), "{record:#}");
    assert_eq!(audit::field(record, "redaction", "decision").as_deref(), Some("allow;rule=actions;reason=redacted"));
    let text = record.to_string();
    assert!(!text.contains("ann@example.com") && !text.contains("7946"), "no value in the record: {text}");
    audit::check_schema(&records).unwrap();
    assert!(bed.envoy.stat("wasmcustom.warden.redaction.findings.request.email.placeholder").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_secret_never_reaches_the_provider_whatever_the_framing() {
    let bed = start().await;
    let openai = client(&bed, PLANNER_KEY);
    let err = openai.chat().create(chat("deploy with AKIAIOSFODNN7EXAMPLE please", false)).await.unwrap_err();
    match err {
        OpenAIError::ApiError(api) => {
            assert!(
                api.api_error.message.contains("aws_access_key") && !api.api_error.message.contains("AKIA"),
                "{api:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // globex sends no personal data at all.
    let err = client(&bed, GLOBEX_KEY).chat().create(chat("mail ann@example.com", false)).await.unwrap_err();
    assert!(matches!(err, OpenAIError::ApiError(ref api) if api.api_error.message.contains("email")), "{err:?}");

    let port = bed.envoy.port("agents");
    let bearer = format!("Bearer {PLANNER_KEY}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let secret = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "key AKIAIOSFODNN7EXAMPLE"}]});
    // A body that ends in HTTP/2 trailers is read when they come.
    let answer =
        h2c::post(port, "/v1/chat/completions", &headers, secret.to_string().as_bytes(), Some(&[("x-checksum", "0")]))
            .await
            .unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    // An encoded body cannot be read as the provider will: refused, not passed.
    let gz = gzip::encode(secret.to_string().as_bytes());
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", bed.envoy.url("agents")))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 415);
    // A byte order mark before the JSON: providers' parsers differ, so it is refused.
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(secret.to_string().as_bytes());
    let answer = h2c::post(port, "/v1/chat/completions", &headers, &bom, None).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    // The provider saw none of them.
    assert!(bed.provider.seen().is_empty(), "{:?}", bed.provider.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_call_reaches_the_server_redacted_and_its_result_comes_back_restored() {
    let bed = start().await;
    let mut headers = HashMap::new();
    headers.insert("x-api-key".parse().unwrap(), PLANNER_KEY.parse().unwrap());
    let url = format!("{}/mcp/files", bed.envoy.url("agents"));
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    let info = ClientConfig::new(ClientCapabilities::default(), Implementation::new("warden-e2e", "1.0"));
    let mcp = info.serve(transport).await.unwrap_or_else(|e| panic!("{e}\n{}", bed.envoy.log()));
    let params: CallToolRequestParams = serde_json::from_value(
        json!({"name": "search_files", "arguments": {"path": "/srv", "echo": "contact ann@example.com"}}),
    )
    .unwrap();
    let result = serde_json::to_value(mcp.call_tool(params).await.unwrap()).unwrap();
    let calls = bed.mcp.calls();
    assert_eq!(calls.last().unwrap().1["echo"], "contact ⟦EMAIL_1⟧", "the server got the placeholder");
    assert_eq!(result["content"][0]["text"], "done: search_files, echo: contact ann@example.com", "{result}");
    mcp.cancel().await.unwrap();
}

#[test]
fn the_envoy_config_carries_the_example_policy() {
    let example = std::fs::read_to_string(repo::root().join("examples/redaction/policy.yaml")).unwrap();
    let example: Value = serde_norway::from_str(&example).unwrap();
    for filter in ["warden.identity", "warden.redaction"] {
        let inline: Value = serde_norway::from_str(&config_policy(CONFIG, filter).unwrap()).unwrap();
        assert_eq!(inline, example, "{CONFIG} {filter} must inline examples/redaction/policy.yaml");
    }
}
