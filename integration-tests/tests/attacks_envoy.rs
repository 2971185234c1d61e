//! Attacks that happen on the wire, tried through the real Envoy binary
//! (`WARDEN_ENVOY_VERSION`) with the shipped configs: what an agent can send that the SDK
//! clients never would. Each test names the attack; the README's threat model points here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use warden_integration_tests::audit;
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

/// The token-budget example's identity section with one tenant budget of `limit` tokens a day
/// and a default cap of 50.
fn tiny_budget(limit: u64) -> String {
    let example = std::fs::read_to_string(repo::root().join("examples/token-budget/policy.yaml")).unwrap();
    let identity = &example[..example.find("tokenBudget:").unwrap()];
    format!(
        "{identity}tokenBudget:\n  defaultMaxOutputTokens: 50\n  budgets:\n    - {{ id: tiny, scope: [tenant], unit: totalTokens, limit: {limit}, window: day }}\n"
    )
}

/// A model request that ends in trailers is counted and reserved like any other: the provider
/// sees the cap Warden writes, and the audit record the reservation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_do_not_carry_a_model_request_past_token_budget() {
    let provider = ChatProvider::start(Script { output_tokens: 5, ..Script::default() }).await.unwrap();
    let policy = tiny_budget(60);
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
    let reserved = audit::field(&records[0], "token_budget", "tokens.reserved");
    assert!(reserved.is_some_and(|t| t.parse::<u64>().unwrap() > 50), "{records:?}");
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

/// Every shipped Envoy config normalises paths before any filter sees them and refuses
/// headers with underscores; none turns HTTP/1.1 trailers on.
#[test]
fn every_shipped_config_normalises_paths_and_refuses_underscored_headers() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo::root().join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let mut config: serde_norway::Value = serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let managers = warden_integration_tests::envoy::http_connection_managers(&mut config);
        assert!(!managers.is_empty(), "{}", path.display());
        for hcm in managers {
            let at = |keys: &[&str]| {
                let mut value = Some(&*hcm);
                for key in keys {
                    value = value.and_then(|v| v.get(*key));
                }
                value.cloned()
            };
            let name = path.display();
            assert_eq!(at(&["normalize_path"]), Some(true.into()), "{name}");
            assert_eq!(at(&["merge_slashes"]), Some(true.into()), "{name}");
            assert_eq!(at(&["path_with_escaped_slashes_action"]), Some("REJECT_REQUEST".into()), "{name}");
            assert_eq!(
                at(&["common_http_protocol_options", "headers_with_underscores_action"]),
                Some("REJECT_REQUEST".into()),
                "{name}"
            );
            assert_ne!(at(&["http_protocol_options", "enable_trailers"]), Some(true.into()), "{name}");
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} connection managers checked");
}

/// A header spelled with underscores is refused by Envoy before any filter or upstream sees
/// it (an upstream that folds `_` into `-` would read `x_warden_agent` as `x-warden-agent`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscored_twins_of_warden_headers_are_refused() {
    let bed = tool_bed().await;
    let client = warden_integration_tests::http_client::plain().unwrap();
    let response = client
        .post(format!("{}/mcp/files", bed.envoy.url("agents")))
        .header("x-api-key", PLANNER_KEY)
        .header("x_warden_tenant", "globex")
        .body(tool_call(1, "read_file", json!({"path": "/srv/a"})))
        .send()
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 400),
        Err(e) => assert!(e.is_request() || e.is_connect(), "{e}"),
    }
    assert!(bed.mcp.calls().is_empty());
}

/// An agent cannot steer Envoy's router: even where the operator calls every loopback peer
/// internal (so Envoy itself would honour them), client-sent retry and timeout headers are
/// stripped on entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_control_headers_from_agents_are_not_honoured() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let failing = warden_integration_tests::fixtures::TestServer::start(0, move |_req| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { warden_integration_tests::fixtures::json_response(503, r#"{"error":{"message":"down"}}"#.into()) }
    })
    .await
    .unwrap();
    let mcp = McpFileServer::start(tool_definitions(1), true).await.unwrap();
    let envoy = Envoy::builder("envoy/tool-acl.yaml")
        .cluster("mcp_files", mcp.port)
        .cluster("llm", failing.port)
        .hcm("use_remote_address", "true")
        .hcm("internal_address_config", "{cidr_ranges: [{address_prefix: 127.0.0.1, prefix_len: 32}]}")
        .start()
        .await
        .unwrap();
    let client = warden_integration_tests::http_client::plain().unwrap();
    let response = client
        .post(format!("{}/v1/chat/completions", envoy.url("agents")))
        .header("x-api-key", PLANNER_KEY)
        .header("content-type", "application/json")
        .header("x-envoy-retry-on", "5xx")
        .header("x-envoy-max-retries", "5")
        .header("x-envoy-upstream-rq-timeout-ms", "1")
        .body(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "one attempt: the retry headers were not honoured");
}

/// An upstream that answers with this body, gzip-encoded whatever it was asked, and records
/// the `accept-encoding` each request carried.
async fn compressing_upstream(
    body: String,
    content_type: &'static str,
) -> (warden_integration_tests::fixtures::TestServer, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::Full;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&asked);
    let server = warden_integration_tests::fixtures::TestServer::start(0, move |req| {
        let accept = req.headers().get("accept-encoding").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        seen.lock().unwrap().push(accept);
        let encoded = warden_integration_tests::gzip::encode(body.as_bytes());
        async move {
            let mut response = hyper::Response::new(Full::new(bytes::Bytes::from(encoded)));
            response.headers_mut().insert("content-type", content_type.parse().unwrap());
            response.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            response
        }
    })
    .await
    .unwrap();
    (server, asked)
}

/// Bodies Warden must read are read as sent: an encoded request is refused with a clear error
/// in the caller's protocol, upstreams are asked for `identity`, and an answer encoded anyway
/// is withheld (tool listings) or failed closed (metered model answers), never passed unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_are_refused_and_encoded_answers_are_never_passed_unread() {
    let listing = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tool_definitions(6)}}).to_string();
    let (mcp, asked) = compressing_upstream(listing, "application/json").await;
    let provider = ModelProvider::start().await.unwrap();
    let envoy = Envoy::builder("envoy/tool-acl.yaml")
        .cluster("mcp_files", mcp.port)
        .cluster("llm", provider.port())
        .start()
        .await
        .unwrap();
    let port = envoy.port("agents");
    let gzip_headers = [MCP_HEADERS[0], MCP_HEADERS[1], MCP_HEADERS[2], ("content-encoding", "gzip")];
    let body = warden_integration_tests::gzip::encode(&tool_call(1, "exec_shell", json!({})));
    let answer = h2c::post(port, "/mcp/files", &gzip_headers, &body, None).await.unwrap();
    assert_eq!(answer.status, 415, "{}", answer.text());
    assert!(
        answer.json()["error"]["message"].as_str().unwrap().contains("Content-Encoding: gzip"),
        "{}",
        answer.text()
    );
    assert!(asked.lock().unwrap().is_empty(), "nothing reached the server");

    let list = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let answer = h2c::post(port, "/mcp/files", &MCP_HEADERS, list, None).await.unwrap();
    assert_eq!(asked.lock().unwrap().as_slice(), ["identity"], "the server was asked for a plain answer");
    assert!(answer.headers.get("content-encoding").is_none());
    assert_eq!(answer.json()["error"]["code"], -32001, "withheld: {}", answer.text());
    assert!(!answer.text().contains("exec_shell"));

    // A model provider that compresses its metered answer anyway.
    let completion = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o", "choices": [],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    .to_string();
    let (compressing, asked) = compressing_upstream(completion, "application/json").await;
    let envoy = Envoy::builder("envoy/token-budget.yaml").cluster("llm", compressing.port).start().await.unwrap();
    let port = envoy.port("agents");
    let headers = [("x-api-key", PLANNER_KEY), ("content-type", "application/json"), ("x-agent-session", "e-1")];
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    let gzipped = warden_integration_tests::gzip::encode(chat.as_bytes());
    let with_gzip = [headers[0], headers[1], headers[2], ("content-encoding", "gzip")];
    let answer = h2c::post(port, "/v1/chat/completions", &with_gzip, &gzipped, None).await.unwrap();
    assert_eq!(answer.status, 415, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "unsupported_encoding");
    let answer = h2c::post(port, "/v1/chat/completions", &headers, chat.as_bytes(), None).await.unwrap();
    assert_eq!(asked.lock().unwrap().as_slice(), ["identity"]);
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(answer.json()["error"]["code"], "answer_unreadable");
    assert!(answer.headers.get("content-encoding").is_none());
}

/// A model route whose API Warden cannot meter is refused, never forwarded uncounted; an
/// encoded spelling of a metered path is normalised by Envoy and metered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_apis_that_cannot_be_metered_are_refused() {
    let provider = ChatProvider::start(Script { output_tokens: 3, ..Script::default() }).await.unwrap();
    let envoy = Envoy::builder("envoy/token-budget.yaml").cluster("llm", provider.port()).start().await.unwrap();
    let port = envoy.port("agents");
    let headers = [("x-api-key", PLANNER_KEY), ("content-type", "application/json"), ("x-agent-session", "p-1")];
    let body =
        json!({"model": "gpt-4o", "prompt": "Hello", "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    for path in ["/v1/completions", "/v1/assistants", "/v1/batches", "/v1/embeddings", "/v1/chat/completions/x"] {
        let answer = h2c::post(port, path, &headers, body.as_bytes(), None).await.unwrap();
        assert_eq!(answer.status, 403, "{path}: {}", answer.text());
        assert_eq!(answer.json()["error"]["code"], "unmetered_api", "{path}");
    }
    assert!(provider.seen().is_empty(), "nothing unmetered reached the provider");
    let answer = h2c::post(port, "/v1/chat/%63ompletions", &headers, body.as_bytes(), None).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let seen = provider.seen();
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].body["max_completion_tokens"], 512, "metered: the policy's default cap was written in");
}

/// An agent that hangs up once its request is forwarded does not get the call for free: the
/// request is charged its reservation, so the budget runs out as if it had been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_after_forwarding_does_not_give_the_reservation_back() {
    use std::time::Duration;
    let slow = warden_integration_tests::fixtures::TestServer::start(0, |_req| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        warden_integration_tests::fixtures::json_response(
            200,
            json!({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 1}}).to_string(),
        )
    })
    .await
    .unwrap();
    let policy = tiny_budget(100);
    let envoy = Envoy::builder("envoy/token-budget.yaml")
        .policy("warden.identity", &policy)
        .policy("warden.token_budget", &policy)
        .cluster("llm", slow.port)
        .start()
        .await
        .unwrap();
    let port = envoy.port("agents");
    let headers = [("x-api-key", PLANNER_KEY), ("content-type", "application/json"), ("x-agent-session", "h-1")];
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello"}]}).to_string();
    let hung_up = tokio::time::timeout(
        Duration::from_millis(500),
        h2c::post(port, "/v1/chat/completions", &headers, body.as_bytes(), None),
    )
    .await;
    assert!(hung_up.is_err(), "the agent hung up before the answer");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The first request's ~58 reserved tokens stay charged: a second one no longer fits.
    let answer = h2c::post(port, "/v1/chat/completions", &headers, body.as_bytes(), None).await.unwrap();
    assert_eq!(answer.status, 429, "{}", answer.text());
}

/// A server that pushes a `tools/list` answer nobody asked for down the GET stream (a
/// TypeScript client would take it as the answer to its pending listing, whatever stream it
/// came on): withheld. The legacy HTTP+SSE transport's GET is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cannot_push_an_unfiltered_listing_down_the_get_stream() {
    use http_body_util::Full;
    let listing = json!({"jsonrpc": "2.0", "id": 0, "result": {"tools": tool_definitions(6)}});
    let note = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    let events = format!("event: message\ndata: {note}\n\nevent: message\ndata: {listing}\n\n");
    let server = warden_integration_tests::fixtures::TestServer::start(0, move |_req| {
        let events = events.clone();
        async move {
            let mut response = hyper::Response::new(Full::new(bytes::Bytes::from(events)));
            response.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
            response
        }
    })
    .await
    .unwrap();
    let provider = ModelProvider::start().await.unwrap();
    let envoy = Envoy::builder("envoy/tool-acl.yaml")
        .cluster("mcp_files", server.port)
        .cluster("llm", provider.port())
        .start()
        .await
        .unwrap();
    let client = warden_integration_tests::http_client::plain().unwrap();
    let url = format!("{}/mcp/files", envoy.url("agents"));
    let get = |session: Option<&'static str>| {
        let mut request = client.get(&url).header("x-api-key", PLANNER_KEY).header("accept", "text/event-stream");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let response = get(Some("m-1")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body.contains("list_changed"), "the server's notification passes: {body}");
    assert!(!body.contains("exec_shell") && !body.contains("read_file"), "the unsolicited listing is withheld: {body}");
    let response = get(None).await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.text().await.unwrap().contains("legacy HTTP+SSE"));
}

/// One agent opening session after session (client-chosen ids) runs into its own cap; another
/// tenant's requests, and its own first session, go on working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_of_sessions_is_capped_for_that_agent_alone() {
    let mcp = McpFileServer::start(tool_definitions(1), true).await.unwrap();
    let provider = ModelProvider::start().await.unwrap();
    let policy = warden_integration_tests::tool_fixtures::example_policy().replace(
        "  session:\n    header: x-agent-session\n",
        "  session:\n    header: x-agent-session\n    maxPerAgent: 8\n",
    );
    assert!(policy.contains("maxPerAgent: 8"));
    let envoy = Envoy::builder("envoy/tool-acl.yaml")
        .policy("warden.identity", &policy)
        .policy("warden.tool_acl", &policy)
        .cluster("mcp_files", mcp.port)
        .cluster("llm", provider.port())
        .start()
        .await
        .unwrap();
    let client = warden_integration_tests::http_client::plain().unwrap();
    let url = format!("{}/v1/chat/completions", envoy.url("agents"));
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let ask = |key: &'static str, session: String| {
        client
            .post(&url)
            .header("x-api-key", key)
            .header("x-agent-session", session)
            .header("content-type", "application/json")
            .body(chat.clone())
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(ask(PLANNER_KEY, format!("churn-{i}")).await.unwrap().status().as_u16());
    }
    assert!(statuses[..8].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[8..].iter().all(|s| *s == 429), "{statuses:?}");
    let refused = ask(PLANNER_KEY, "churn-99".into()).await.unwrap();
    assert_eq!(refused.json::<Value>().await.unwrap()["error"]["code"], "too_many_sessions");
    assert_eq!(ask(PLANNER_KEY, "churn-0".into()).await.unwrap().status(), 200, "its open sessions still work");
    for i in 0..5 {
        let other = ask("wk-globex-5d1c8a3f7e2b9046", format!("globex-{i}")).await.unwrap();
        assert_eq!(other.status(), 200, "another tenant is not affected");
    }
}

/// Only gateways may draw on or settle a budget: the rate-limit service serves mutual TLS and
/// accepts only client certificates its own CA signed. A peer with no certificate, or with an
/// agent's certificate from the mesh's CA, is refused before any gRPC is read.
#[test]
fn only_gateways_can_reach_the_rate_limit_service() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::io::{Read, Write};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let service = warden_integration_tests::services::RateLimitService::start(None).unwrap();
    let tls = |name: &str| repo::testdata(&format!("tls/{name}"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(tls("ratelimit-ca.pem")).unwrap()).unwrap();
    let talk = |identity: Option<&str>| -> std::io::Result<usize> {
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots.clone());
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some(name) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_file(tls(&format!("{name}.pem"))).unwrap()],
                    PrivateKeyDer::from_pem_file(tls(&format!("{name}.key"))).unwrap(),
                )
                .unwrap(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connection =
            rustls::ClientConnection::new(std::sync::Arc::new(config), ServerName::try_from("ratelimit").unwrap())
                .unwrap();
        let socket = std::net::TcpStream::connect(("127.0.0.1", service.port))?;
        socket.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        let mut stream = rustls::StreamOwned::new(connection, socket);
        // The HTTP/2 preface and an empty SETTINGS frame; a server that accepted us answers.
        stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")?;
        let mut answer = [0u8; 9];
        stream.read(&mut answer)
    };
    assert!(talk(Some("gateway")).is_ok_and(|n| n > 0), "a gateway is served");
    assert!(talk(None).is_err(), "no certificate: refused");
    assert!(talk(Some("agent-planner")).is_err(), "a certificate from another CA: refused");
}
