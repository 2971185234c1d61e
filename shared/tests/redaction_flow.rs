//! The redaction filter's flow against an in-memory host: what reaches the provider, what the
//! agent gets back, what is refused and what is recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::rc::Rc;
use warden_policy::attributes;
use warden_policy::host::{Action, Host};
use warden_policy::policy::parse_document;
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::flow::RedactionFlow;
use warden_policy::testing::{principal, MemoryHost};

const POLICY: &str = "redaction:
  actions: { email: placeholder, secret: block, ipv4: private }
  mcp:
    - { name: files, pathPrefix: /mcp/files }
";

fn flow(host: &Rc<MemoryHost>) -> RedactionFlow {
    let doc = parse_document(POLICY.as_bytes()).unwrap();
    let policy = Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).unwrap());
    RedactionFlow::new(host.clone(), Some(policy), true)
}

fn host(path: &str) -> Rc<MemoryHost> {
    let host = MemoryHost::with_headers(&[
        (":method", "POST"),
        (":path", path),
        ("x-request-id", "req-1"),
        ("content-type", "application/json"),
    ]);
    host.set_principal(&principal::with(|p| {
        p.agent = "planner".into();
        p.tenant = Some("acme".into());
    }));
    Rc::new(host)
}

fn post(flow: &mut RedactionFlow, host: &MemoryHost, body: &[u8]) -> Action {
    assert_eq!(flow.on_request_headers(false), Action::Pause, "headers are held while the body is read");
    *host.request_body.borrow_mut() = body.to_vec();
    flow.on_request_body(body.len(), true)
}

fn sent(host: &MemoryHost) -> Value {
    serde_json::from_slice(&host.request_body.borrow()).unwrap()
}

#[test]
fn every_place_a_user_or_tool_puts_text_reaches_the_provider_redacted() {
    let host = host("/v1/chat/completions");
    let mut flow = flow(&host);
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Support for ann@example.com"},
        {"role": "user", "content": [{"type": "text", "text": "my mail is ann@example.com, host 10.1.2.3"}]},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"email\":\"bob@example.com\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "found bob@example.com"}
    ]});
    assert_eq!(post(&mut flow, &host, body.to_string().as_bytes()), Action::Continue);
    let sent = sent(&host);
    assert_eq!(sent["messages"][0]["content"], "Support for ⟦EMAIL_1⟧");
    assert_eq!(sent["messages"][1]["content"][0]["text"], "my mail is ⟦EMAIL_1⟧, host 10.1.2.3");
    let args: Value =
        serde_json::from_str(sent["messages"][2]["tool_calls"][0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"email": "⟦EMAIL_2⟧"}));
    assert_eq!(sent["messages"][3]["content"], "found ⟦EMAIL_2⟧");
    assert_eq!(sent["model"], "gpt-4o");
    assert_eq!(host.header("content-length"), Some(host.request_body.borrow().len().to_string()));
    // The router reads the classes found; `private` marks the request for a private provider.
    let classes: Vec<String> = serde_json::from_slice(&host.properties.borrow()[attributes::DATA_CLASSES]).unwrap();
    assert_eq!(classes, ["email", "ipv4", "pii", "private"]);
    assert_eq!(host.field(attributes::AUDIT, "redaction.findings.email.placeholder").as_deref(), Some("4"));
    assert_eq!(host.metric("warden.redaction.findings.request.email.placeholder"), 4);

    // The answer echoes the placeholders: the agent sees its own data again.
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    assert_eq!(flow.on_response_headers(), Action::Continue);
    let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Mailed ⟦EMAIL_2⟧ for ⟦EMAIL_1⟧."}}]}).to_string();
    *host.response_body.borrow_mut() = answer.clone().into_bytes();
    assert_eq!(flow.on_response_body(answer.len(), true), Action::Continue);
    let got: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "Mailed bob@example.com for ann@example.com.");
    assert_eq!(host.response_header("content-length"), None);
}

#[test]
fn a_blocked_class_is_refused_in_the_callers_protocol_naming_the_class_never_the_value() {
    for (path, key) in [("/v1/chat/completions", "error"), ("/v1/messages", "error")] {
        let host = host(path);
        let mut flow = flow(&host);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "use AKIAIOSFODNN7EXAMPLE"}]});
        assert_eq!(post(&mut flow, &host, body.to_string().as_bytes()), Action::Pause);
        let reply = host.reply.borrow().clone().unwrap();
        let text = String::from_utf8(reply.body.clone()).unwrap();
        assert_eq!(reply.status, 400);
        assert!(text.contains("aws_access_key") && !text.contains("AKIA"), "{text}");
        assert!(serde_json::from_str::<Value>(&text).unwrap().get(key).is_some());
        assert_eq!(
            host.field(attributes::AUDIT, "redaction.decision").unwrap(),
            "deny;rule=actions;reason=sensitive_data"
        );
        assert_eq!(host.field(attributes::AUDIT, "redaction.blocked_class").as_deref(), Some("aws_access_key"));
    }
}

#[test]
fn mcp_is_recorded_only_unless_the_server_opts_in() {
    let host = host("/mcp/files");
    let mut flow = flow(&host);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send", "arguments": {"to": "ann@example.com"}}}).to_string();
    assert_eq!(post(&mut flow, &host, body.as_bytes()), Action::Continue);
    assert_eq!(host.request_body.borrow().as_slice(), body.as_bytes(), "recorded, not changed");
    assert_eq!(host.field(attributes::AUDIT, "redaction.mode").as_deref(), Some("record"));
    assert_eq!(host.field(attributes::AUDIT, "redaction.findings.email.placeholder").as_deref(), Some("1"));
    // Found, not redacted: the record says nothing was changed.
    assert_eq!(host.field(attributes::AUDIT, "redaction.decision").unwrap(), "allow;rule=actions;reason=found");
}

#[test]
fn what_cannot_be_read_is_refused_not_passed() {
    let host = host("/v1/chat/completions");
    let mut flow = flow(&host);
    assert_eq!(post(&mut flow, &host, b"{\"messages\": [\"ann@example.com\""), Action::Pause);
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 400);

    let encoded = host_with_encoding();
    let mut flow = self::flow(&encoded);
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(encoded.reply.borrow().as_ref().unwrap().status, 415);
}

fn host_with_encoding() -> Rc<MemoryHost> {
    let host = host("/v1/chat/completions");
    host.set_request_header("content-encoding", Some("gzip")).unwrap();
    host
}

/// An answer the upstream compressed anyway cannot be read: it never reaches the agent unread.
#[test]
fn an_encoded_answer_is_withheld_and_an_answer_ending_in_trailers_is_read() {
    let host = host("/v1/chat/completions");
    let mut flow = flow(&host);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "mail ann@example.com"}]});
    assert_eq!(post(&mut flow, &host, body.to_string().as_bytes()), Action::Continue);
    *host.response_headers.borrow_mut() = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
        ("content-encoding".into(), "gzip".into()),
    ];
    assert_eq!(flow.on_response_headers(), Action::Continue);
    assert_eq!(host.response_header("content-encoding"), None);
    *host.response_body.borrow_mut() = b"\x1f\x8b\x08 compressed ann@example.com".to_vec();
    flow.on_response_body(30, true);
    let got = String::from_utf8(host.response_body.borrow().clone()).unwrap();
    assert!(got.contains("answer_withheld") && !got.contains("ann@"), "{got}");
    assert_eq!(host.metric("warden.redaction.answers_withheld"), 1);

    // A JSON answer whose last frame is its trailers is read when they come.
    let host = self::host("/v1/chat/completions");
    let mut flow = self::flow(&host);
    assert_eq!(post(&mut flow, &host, body.to_string().as_bytes()), Action::Continue);
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    flow.on_response_headers();
    let answer = json!({"choices": [{"message": {"content": "to ⟦EMAIL_1⟧"}}]}).to_string();
    *host.response_body.borrow_mut() = answer.clone().into_bytes();
    assert_eq!(flow.on_response_body(answer.len(), false), Action::Pause, "held until the answer ends");
    assert_eq!(flow.on_response_trailers(), Action::Continue);
    let got: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "to ann@example.com");
}

/// Found in review: secrets under keys that look structural, under secret names, behind an
/// escape no reader agrees on; answers left unscanned when the policy says so.
#[test]
fn no_key_hides_a_secret_and_an_undecodable_string_is_refused() {
    let host = host("/mcp/files");
    let policy = "redaction:\n  actions: { secret: mask }\n  mcp:\n    - { name: files, pathPrefix: /mcp/files, scan: enforce }\n";
    let doc = parse_document(policy.as_bytes()).unwrap();
    let compiled = Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).unwrap());
    let mut flow = RedactionFlow::new(host.clone(), Some(compiled), true);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "fetch", "arguments": {
        "url": "https://x.test/?k=AKIAIOSFODNN7EXAMPLE", "type": "key AKIAIOSFODNN7EXAMPLE", "password": "Xk9vQ2mL8pR4tZ7wN3bY"}}});
    assert_eq!(post(&mut flow, &host, call.to_string().as_bytes()), Action::Continue);
    let sent = sent(&host);
    assert_eq!(sent["params"]["arguments"]["url"], "https://x.test/?k=[AWS_ACCESS_KEY]");
    assert_eq!(sent["params"]["arguments"]["type"], "key [AWS_ACCESS_KEY]");
    assert_eq!(sent["params"]["arguments"]["password"], "[GENERIC_SECRET]");

    let host = self::host("/v1/chat/completions");
    let mut flow = self::flow(&host);
    let body = br#"{"model":"m","messages":[{"role":"user","content":"\ud800 key AKIAIOSFODNN7EXAMPLE"}]}"#;
    assert_eq!(post(&mut flow, &host, body), Action::Pause);
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 400);

    // A PUT with a body is not read, so it is not passed on.
    let host = self::host("/v1/chat/completions");
    host.set_request_header(":method", Some("PUT")).unwrap();
    let mut flow = self::flow(&host);
    assert_eq!(flow.on_request_headers(false), Action::Pause);
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 405);
}

#[test]
fn with_answers_unscanned_placeholders_are_still_restored() {
    let host = host("/v1/chat/completions");
    let doc = parse_document(b"redaction:\n  scanAnswers: false\n  actions: { email: placeholder }\n").unwrap();
    let compiled = Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).unwrap());
    let mut flow = RedactionFlow::new(host.clone(), Some(compiled), true);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "mail ann@example.com"}]});
    assert_eq!(post(&mut flow, &host, body.to_string().as_bytes()), Action::Continue);
    *host.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    flow.on_response_headers();
    let answer = json!({"choices": [{"message": {"content": "⟦EMAIL_1⟧ and bob@example.org"}}]}).to_string();
    *host.response_body.borrow_mut() = answer.clone().into_bytes();
    flow.on_response_body(answer.len(), true);
    let got: Value = serde_json::from_slice(&host.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "ann@example.com and bob@example.org");
}

/// "What did the agent see?": an opted-in tenant's request and answer are copied after
/// redaction (the answer with its placeholders, never the values restored to the agent), tied
/// to the request id and session; a tenant not opted in is not copied at all.
#[test]
fn a_capture_holds_the_redacted_request_and_answer_of_opted_in_callers_only() {
    let policy = format!("{POLICY}  capture: {{ when: {{ tenants: [acme] }}, maxBytes: 4096 }}\n");
    let doc = parse_document(policy.as_bytes()).unwrap();
    let compiled = Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).unwrap());
    let acme = host("/v1/chat/completions");
    let mut flow = RedactionFlow::new(acme.clone(), Some(compiled.clone()), true);
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "mail ann@example.com"}]});
    assert_eq!(post(&mut flow, &acme, body.to_string().as_bytes()), Action::Continue);
    *acme.response_headers.borrow_mut() =
        vec![(":status".into(), "200".into()), ("content-type".into(), "application/json".into())];
    flow.on_response_headers();
    let answer = json!({"choices": [{"message": {"role": "assistant", "content": "Mailed ⟦EMAIL_1⟧."}}]}).to_string();
    *acme.response_body.borrow_mut() = answer.clone().into_bytes();
    flow.on_response_body(answer.len(), true);
    let got: Value = serde_json::from_slice(&acme.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "Mailed ann@example.com.", "the agent gets its value back");

    let capture: Value = serde_json::from_slice(&acme.properties.borrow()["warden.capture"]).unwrap();
    assert_eq!(capture["request_id"], "req-1");
    let request: Value = serde_json::from_str(capture["request"].as_str().unwrap()).unwrap();
    assert_eq!(request["messages"][0]["content"], "mail ⟦EMAIL_1⟧");
    let captured_answer: Value = serde_json::from_str(capture["answer"].as_str().unwrap()).unwrap();
    assert_eq!(captured_answer["choices"][0]["message"]["content"], "Mailed ⟦EMAIL_1⟧.");
    assert!(!capture.to_string().contains("ann@example.com"), "{capture}");

    // Another tenant: nothing is copied.
    let other = host("/v1/chat/completions");
    other.set_principal(&principal::with(|p| {
        p.agent = "globex-agent".into();
        p.tenant = Some("globex".into());
    }));
    let mut flow = RedactionFlow::new(other.clone(), Some(compiled), true);
    post(&mut flow, &other, body.to_string().as_bytes());
    assert!(!other.properties.borrow().contains_key("warden.capture"));
}
