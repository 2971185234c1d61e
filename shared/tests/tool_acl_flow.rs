//! The tool-acl flow, callback by callback, over an in-memory host: the scenarios of the wasm
//! harness (`integration-tests/tests/tool_acl_harness.rs`) without a VM. Held headers and body,
//! decisions recorded and replied in the caller's protocol, `tools/list` answers filtered,
//! declared model tools removed with the body's length kept right, encodings refused or
//! withheld, requests that end in trailers, and the legacy SSE transport refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::rc::Rc;
use warden_policy::host::{Action, Host};
use warden_policy::policy::parse_document;
use warden_policy::testing::principal;
use warden_policy::testing::MemoryHost;
use warden_policy::tool_acl::compile::CompiledToolAcl;
use warden_policy::tool_acl::flow::ToolAclFlow;

fn example_policy() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tool-acl/policy.yaml");
    std::fs::read_to_string(root).unwrap()
}

fn acl(policy: &str) -> (Rc<CompiledToolAcl>, bool) {
    let document = parse_document(policy.as_bytes()).unwrap();
    let acl = CompiledToolAcl::compile(document.tool_acl.as_ref().unwrap()).unwrap();
    (Rc::new(acl), document.request_headers.held())
}

fn flow(policy: &str, host: &Rc<MemoryHost>) -> ToolAclFlow {
    let (acl, hold) = acl(policy);
    ToolAclFlow::new(host.clone(), Some(acl), hold)
}

/// A host with the principal identity recorded and a POST to `path`.
fn host(method: &str, path: &str, extra: &[(&str, &str)]) -> Rc<MemoryHost> {
    let mut headers = vec![(":method", method), (":path", path), (":authority", "gw"), ("x-request-id", "req-1")];
    headers.extend_from_slice(extra);
    let host = MemoryHost::with_headers(&headers);
    host.now_secs.set(1_800_000_000);
    host.set_principal(&principal::with(|p| p.agent = "planner".into()));
    Rc::new(host)
}

fn post(flow: &mut ToolAclFlow, host: &MemoryHost, body: &str) -> (Action, Action) {
    host.set_request_header("content-length", Some(&body.len().to_string())).unwrap();
    let headers = flow.on_request_headers(false);
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    (headers, flow.on_request_body(body.len(), true))
}

fn field(host: &MemoryHost, key: &str, path: &str) -> Option<String> {
    host.field(key, path)
}

fn reply(host: &MemoryHost) -> (u32, Value) {
    let reply = host.reply.borrow();
    let reply = reply.as_ref().expect("a local reply");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

fn call(id: u64, tool: &str, path: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"path": path}}})
        .to_string()
}

#[test]
fn an_allowed_call_is_held_then_forwarded_and_recorded() {
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    let body = call(1, "read_file", "/srv/notes.txt");
    assert_eq!(post(&mut flow, &host, &body), (Action::Pause, Action::Continue));
    assert!(host.reply.borrow().is_none());
    assert_eq!(*host.request_body.borrow(), body.as_bytes(), "forwarded unchanged");
    assert_eq!(host.header("accept-encoding").as_deref(), Some("identity"));
    assert_eq!(
        field(&host, "warden.audit", "tool_acl.decision").as_deref(),
        Some("allow;rule=acme-agents-use-files;reason=allowed")
    );
    assert_eq!(field(&host, "warden.audit", "tool_acl.calls.tool").as_deref(), Some("read_file"));
    assert_eq!(field(&host, "warden.audit", "tool_acl.calls.class").as_deref(), Some("read"));
    assert_eq!(host.metric("warden.tool_acl.allowed"), 1);
}

#[test]
fn a_denied_call_is_answered_as_a_tool_error_and_never_forwarded() {
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    let (_, action) = post(&mut flow, &host, &call(7, "read_file", "/srv/../etc/shadow"));
    assert_eq!(action, Action::Pause);
    let (status, body) = reply(&host);
    assert_eq!(status, 200);
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["isError"], true);
    // MCP 2026-07-28 clients refuse a result that does not say it is complete.
    assert_eq!(body["result"]["resultType"], "complete");
    assert_eq!(body["result"]["_meta"]["warden/denial"]["rule"], "no-system-paths");
    assert_eq!(
        field(&host, "warden.audit", "tool_acl.decision").as_deref(),
        Some("deny;rule=no-system-paths;reason=denied_by_rule")
    );
    assert!(field(&host, "warden.audit", "tool_acl.calls.args_sha256").is_some_and(|h| h.len() == 64));
}

#[test]
fn a_listing_answer_is_filtered_and_its_length_dropped() {
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    assert_eq!(post(&mut flow, &host, list).1, Action::Continue);
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    assert_eq!(flow.on_response_headers(), Action::Continue);
    assert_eq!(host.response_header("content-length"), None);
    let tools = json!([
        {"name": "read_file", "inputSchema": {"type": "object"}},
        {"name": "exec_shell", "inputSchema": {"type": "object"}}
    ]);
    // MCP 2026-07-28: a listing may say shared caches can keep it; filtered, it is this caller's.
    let answer = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": tools, "cacheScope": "public", "ttlMs": 60000}})
        .to_string();
    *host.response_body.borrow_mut() = answer.as_bytes().to_vec();
    assert_eq!(flow.on_response_body(answer.len() / 2, false), Action::Pause, "held whole");
    assert_eq!(flow.on_response_body(answer.len(), true), Action::Continue);
    let filtered: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    let names: Vec<&str> =
        filtered["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["read_file"], "a tool no rule allows is never shown");
    assert_eq!(filtered["result"]["cacheScope"], "private");
    assert_eq!(filtered["result"]["ttlMs"], 60000);
    assert_eq!(host.metric("warden.tool_acl.tools_hidden"), 1);
}

#[test]
fn declared_model_tools_the_agent_may_not_use_are_removed_with_the_length_kept_right() {
    let host = host("POST", "/v1/chat/completions", &[]);
    let mut flow = flow(&example_policy(), &host);
    let request = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}},
                  {"type": "function", "function": {"name": "transfer_funds"}}]})
    .to_string();
    assert_eq!(post(&mut flow, &host, &request), (Action::Pause, Action::Continue));
    let sent: Value = serde_json::from_slice(&host.request_body.borrow()).unwrap();
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    assert_eq!(host.header("content-length"), Some(host.request_body.borrow().len().to_string()));
    assert_eq!(host.metric("warden.tool_acl.llm_tools_removed"), 1);
}

#[test]
fn a_model_body_that_cannot_be_read_is_refused_and_recorded() {
    let host = host("POST", "/v1/responses", &[]);
    let mut flow = flow(&example_policy(), &host);
    assert_eq!(post(&mut flow, &host, r#"{"model": "gpt-4o", "input": "#).1, Action::Pause);
    let (status, body) = reply(&host);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["request_id"], "req-1");
    assert_eq!(
        field(&host, "warden.audit", "tool_acl.decision").as_deref(),
        Some("deny;rule=protocol;reason=invalid_request")
    );
}

#[test]
fn an_encoded_request_is_refused_and_an_encoded_answer_withheld() {
    let host = host("POST", "/mcp/files", &[("content-encoding", "gzip")]);
    let mut flow = flow(&example_policy(), &host);
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(reply(&host).0, 415);

    let host = self::host("POST", "/mcp/files", &[]);
    let mut flow = self::flow(&example_policy(), &host);
    post(&mut flow, &host, r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#);
    *host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
        ("content-encoding".into(), "gzip".into()),
    ];
    flow.on_response_headers();
    assert_eq!(host.response_header("content-encoding"), None);
    *host.response_body.borrow_mut() = vec![0x1f, 0x8b, 0, 1, 2, 3];
    assert_eq!(flow.on_response_body(6, true), Action::Continue);
    let withheld: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(withheld["id"], 4);
    assert!(withheld["error"].is_object(), "{withheld}");
}

/// HTTP/2 lets a request end in trailers: it is decided on the body held so far.
#[test]
fn a_request_ending_in_trailers_is_decided_there() {
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    let body = call(2, "read_file", "/etc/passwd");
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    *host.request_body.borrow_mut() = body.as_bytes().to_vec();
    assert_eq!(flow.on_request_body(body.len(), false), Action::Pause);
    assert_eq!(flow.on_request_trailers(), Action::Pause);
    assert_eq!(reply(&host).1["result"]["isError"], true);
}

#[test]
fn a_server_stream_without_a_session_is_the_legacy_transport_and_refused() {
    let host = host("GET", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    assert_eq!(flow.on_request_headers(true), Action::Pause);
    let (status, body) = reply(&host);
    assert_eq!(status, 405);
    assert!(body["error"]["message"].as_str().unwrap().contains("legacy"), "{body}");
    // With a session: the stream is opened and read.
    let host = self::host("GET", "/mcp/files", &[("mcp-session-id", "m-1")]);
    let mut flow = self::flow(&example_policy(), &host);
    assert_eq!(flow.on_request_headers(true), Action::Continue);
    assert!(host.reply.borrow().is_none());
}

#[test]
fn released_headers_go_first_and_a_shrinking_body_loses_its_length() {
    let policy = format!("requestHeaders: release\n{}", example_policy());
    let host = host("POST", "/v1/chat/completions", &[]);
    let mut flow = flow(&policy, &host);
    let request =
        json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "transfer_funds"}}]})
            .to_string();
    assert_eq!(post(&mut flow, &host, &request), (Action::Continue, Action::Continue));
    assert_eq!(host.header("content-length"), None);
    // An MCP call may lose its approval before it is forwarded: its length goes too.
    let host = self::host("POST", "/mcp/files", &[]);
    let mut flow = self::flow(&policy, &host);
    assert_eq!(post(&mut flow, &host, &call(1, "read_file", "/srv/a")), (Action::Continue, Action::Continue));
    assert_eq!(host.header("content-length"), None);
}

#[test]
fn routing_headers_must_name_what_the_body_does() {
    // MCP 2026-07-28 repeats the method and the tool in headers a server or a route may act on.
    let agreeing = host("POST", "/mcp/files", &[("mcp-method", "tools/call"), ("mcp-name", "read_file")]);
    let mut flow = flow(&example_policy(), &agreeing);
    assert_eq!(post(&mut flow, &agreeing, &call(1, "read_file", "/srv/a")).1, Action::Continue);
    let steering = host("POST", "/mcp/files", &[("mcp-method", "tools/call"), ("mcp-name", "delete_file")]);
    let mut flow = self::flow(&example_policy(), &steering);
    assert_eq!(post(&mut flow, &steering, &call(1, "read_file", "/srv/a")).1, Action::Pause);
    let (status, answer) = reply(&steering);
    assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(-32600)), "{answer}");
    assert_eq!(
        field(&steering, "warden.audit", "tool_acl.decision").as_deref(),
        Some("deny;rule=protocol;reason=routing_header_mismatch")
    );
}

#[test]
fn a_body_that_cannot_be_rewritten_is_refused_before_anything_is_decided() {
    // A duplicate member the call's own fields do not name: refused whole, no call counted.
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = flow(&example_policy(), &host);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/a"},"_meta":{"k":1,"k":2}}}"#;
    assert_eq!(post(&mut flow, &host, body).1, Action::Pause);
    let (status, answer) = reply(&host);
    assert_eq!((status, answer["error"]["code"].as_i64()), (400, Some(-32600)), "{answer}");
    assert_eq!(host.metric("warden.tool_acl.allowed"), 0);
}

#[test]
fn without_a_policy_every_request_is_refused() {
    let host = host("POST", "/mcp/files", &[]);
    let mut flow = ToolAclFlow::new(host.clone(), None, true);
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(reply(&host).0, 503);
}

/// `maxCallsPerSession` and `maxWriteCallsPerSession` are counted by the budget engine (its
/// session counters in shared data), loop protection by tool-acl's own memory; a call refused
/// for a loop is not counted, and another session has its own counts.
#[test]
fn session_call_and_write_limits_count_in_the_budget_engine() {
    let policy = example_policy().replace(
        "    maxCallsPerSession: 100\n    maxWriteCallsPerSession: 20\n    loopProtection: { maxRepeats: 3, window: 60s }",
        "    maxCallsPerSession: 3\n    maxWriteCallsPerSession: 1\n    loopProtection: { maxRepeats: 1, window: 60s }",
    );
    assert_ne!(policy, example_policy());
    let host = host("POST", "/mcp/files", &[]);
    let mut id = 0;
    let mut send = |session: &str, tool: &str, path: &str| -> Option<String> {
        id += 1;
        *host.reply.borrow_mut() = None;
        host.set_principal(&principal::with(|p| {
            p.agent = "planner".into();
            p.session = Some(session.into());
        }));
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": {"path": path, "content": "x"}}});
        let mut flow = flow(&policy, &host);
        post(&mut flow, &host, &body.to_string());
        let refused = host.reply.borrow().is_some();
        refused.then(|| field(&host, "warden.audit", "tool_acl.decision").unwrap_or_default())
    };
    assert_eq!(send("s-1", "write_file", "/srv/a.txt"), None);
    let write = send("s-1", "write_file", "/srv/b.txt").unwrap();
    assert!(write.contains("reason=session_write_limit"), "{write}");
    assert_eq!(send("s-1", "read_file", "/srv/a.txt"), None);
    let again = send("s-1", "read_file", "/srv/a.txt").unwrap();
    assert!(again.contains("reason=loop_detected"), "{again}");
    assert_eq!(send("s-1", "read_file", "/srv/c.txt"), None, "the loop refused was not counted: the third call");
    let fourth = send("s-1", "read_file", "/srv/d.txt").unwrap();
    assert!(fourth.contains("reason=session_call_limit"), "{fourth}");
    assert_eq!(send("s-2", "read_file", "/srv/d.txt"), None, "another session counts its own");
    let keys = host.shared_keys();
    assert!(keys.iter().any(|k| k.starts_with("warden.budget.toolAcl-session-calls.")), "{keys:?}");
    assert!(keys.iter().any(|k| k.starts_with("warden.budget.toolAcl-session-writes.")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.starts_with("warden.tool_acl.session.")), "no second counter store: {keys:?}");
}

/// With tool-call budgets in the document, tool-acl records the calls it forwards for
/// token-budget: ids, server, tool, risk; and the other requests' ids of the body.
#[test]
fn forwarded_calls_are_recorded_for_token_budget_when_asked() {
    use warden_policy::budget::tool_call::ToolCalls;
    let document = parse_document(example_policy().as_bytes()).unwrap();
    let compile = || CompiledToolAcl::compile(document.tool_acl.as_ref().unwrap()).unwrap();
    let host = host("POST", "/mcp/files", &[]);
    let list = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/list"});
    let body = format!("[{},{list}]", call(7, "read_file", "/srv/notes.txt"));
    let mut flow = ToolAclFlow::new(host.clone(), Some(Rc::new(compile())), true);
    post(&mut flow, &host, &body);
    assert_eq!(ToolCalls::read(&*host).unwrap(), None, "nothing recorded unless a budget counts calls");
    let mut acl = compile();
    acl.record_calls = true;
    let host = self::host("POST", "/mcp/files", &[]);
    let mut flow = ToolAclFlow::new(host.clone(), Some(Rc::new(acl)), true);
    assert_eq!(post(&mut flow, &host, &body).1, Action::Continue);
    let calls = ToolCalls::read(&*host).unwrap().expect("recorded");
    assert!(calls.batch);
    assert_eq!(calls.calls.len(), 1);
    assert_eq!(
        (calls.calls[0].id.as_str(), calls.calls[0].server.as_str(), calls.calls[0].tool.as_str()),
        ("7", "files", "read_file")
    );
    assert_eq!(calls.other_ids, ["8"]);
}
