//! Attacks that happen on the wire, tried through the real Envoy binary
//! (`WARDEN_ENVOY_VERSION`) with the shipped configs: what an agent can send that the SDK
//! clients never would. Each test names the attack; the README's threat model points here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::{ChatProvider, McpFileServer, ModelProvider, Script};
use warden_integration_tests::h2c;
use warden_integration_tests::repo;
use warden_integration_tests::tool_fixtures::tool_definitions;

const PLANNER_KEY: &str = "wk-planner-7f3a9c1e5b2d4068";

struct ToolBed {
    envoy: Envoy,
    mcp: McpFileServer,
    _provider: ModelProvider,
}

async fn tool_bed() -> ToolBed {
    let mcp = McpFileServer::start(tool_definitions(6), true).await.unwrap();
    let provider = ModelProvider::start().await.unwrap();
    let envoy = Envoy::builder("envoy/tool-acl.yaml")
        .cluster("mcp_files", mcp.port)
        .cluster("llm", provider.port())
        .start()
        .await
        .unwrap();
    ToolBed { envoy, mcp, _provider: provider }
}

const MCP_HEADERS: [(&str, &str); 3] = [
    ("x-api-key", PLANNER_KEY),
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

fn tool_call(id: u64, tool: &str, arguments: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
        .into_bytes()
}

/// The reported bypass: the same denied `tools/call`, once ending with its DATA frame and once
/// with trailers. Both are refused, and the server never runs the tool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_do_not_carry_a_denied_tool_call_past_tool_acl() {
    let bed = tool_bed().await;
    let port = bed.envoy.port("agents");
    let call = tool_call(1, "exec_shell", json!({"cmd": "id"}));
    for trailers in [None, Some(&[("x-checksum", "0")][..])] {
        let answer = h2c::post(port, "/mcp/files", &MCP_HEADERS, &call, trailers).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let result = &answer.json()["result"];
        assert_eq!(result["isError"], true, "{}", answer.text());
        assert_eq!(result["_meta"]["warden/denial"]["reason"], "no_rule_allows");
    }
    // An allowed call that ends in trailers is forwarded whole and runs.
    let call = tool_call(2, "read_file", json!({"path": "/srv/notes.txt"}));
    let answer = h2c::post(port, "/mcp/files", &MCP_HEADERS, &call, Some(&[("x-checksum", "0")])).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("done: read_file"), "{}", answer.text());
    let reached: Vec<String> = bed.mcp.calls().into_iter().map(|(name, _)| name).collect();
    assert_eq!(reached, ["read_file"], "the denied call never reached the server");
}

/// A model request that ends in trailers is counted and reserved like any other: the provider
/// sees the cap Warden writes, and the audit record the reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_do_not_carry_a_model_request_past_token_budget() {
    let provider = ChatProvider::start(Script { output_tokens: 5, ..Script::default() }).await.unwrap();
    let example = std::fs::read_to_string(repo::root().join("examples/token-budget/policy.yaml")).unwrap();
    let identity = &example[..example.find("tokenBudget:").unwrap()];
    let policy = format!(
        "{identity}tokenBudget:\n  defaultMaxOutputTokens: 50\n  budgets:\n    - {{ id: tiny, scope: [tenant], unit: totalTokens, limit: 60, window: day }}\n"
    );
    let envoy = Envoy::builder("envoy/token-budget.yaml")
        .policy("warden.identity", &policy)
        .policy("warden.token_budget", &policy)
        .cluster("llm", provider.port())
        .start()
        .await
        .unwrap();
    let port = envoy.port("agents");
    let headers = [("x-api-key", PLANNER_KEY), ("content-type", "application/json"), ("x-agent-session", "t-1")];
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    let trailers: &[(&str, &str)] = &[("x-checksum", "0")];
    let answer = h2c::post(port, "/v1/chat/completions", &headers, body.as_bytes(), Some(trailers)).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(provider.seen()[0].body["max_completion_tokens"], 50, "Warden's cap reached the provider");
    // 60 tokens a day: the first used 13; a second reserves its prompt and 50 more, which no longer fit.
    let answer = h2c::post(port, "/v1/chat/completions", &headers, body.as_bytes(), Some(trailers)).await.unwrap();
    assert_eq!(answer.status, 429, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "budget_exhausted");
    assert_eq!(provider.seen().len(), 1, "the refused request never reached the provider");
    let records = envoy.wait_for_access_log(2).await;
    assert!(records[0]["tokens_reserved"].as_str().is_some_and(|t| t.parse::<u64>().unwrap() > 50), "{records:?}");
}

/// The reported bypass of the example policy's `no-system-paths`: paths that open a system
/// file without starting with its directory, and a path the rule cannot judge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_do_not_get_around_a_deny_rule() {
    let bed = tool_bed().await;
    let port = bed.envoy.port("agents");
    let arguments = [
        json!({"path": "/srv/../etc/shadow"}),
        json!({"path": "//etc/shadow"}),
        json!({"path": "/./etc/passwd"}),
        json!({"path": "\\etc\\shadow"}),
        json!({"path": ["/etc/shadow"]}),
        json!({"file": "/etc/shadow"}),
    ];
    for (i, args) in arguments.iter().enumerate() {
        let call = tool_call(i as u64, "read_file", args.clone());
        let answer = h2c::post(port, "/mcp/files", &MCP_HEADERS, &call, None).await.unwrap();
        let denial = &answer.json()["result"]["_meta"]["warden/denial"];
        assert_eq!(denial["rule"], "no-system-paths", "{args}: {}", answer.text());
    }
    let call = tool_call(99, "read_file", json!({"path": "/srv/a/../notes.txt"}));
    let answer = h2c::post(port, "/mcp/files", &MCP_HEADERS, &call, None).await.unwrap();
    assert!(answer.text().contains("done: read_file"), "{}", answer.text());
    assert_eq!(bed.mcp.calls().len(), 1, "only the call inside /srv reached the server");
}
