//! The tool-acl policy without a proxy: precedence, conditions, escalation, approvals, risk
//! classes, configuration errors, and whole MCP request bodies decided over an in-memory host.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::testing::tokens;
use warden_policy::testing::MemoryHost;
use warden_policy::tool_acl::compile::CompiledToolAcl;
use warden_policy::tool_acl::evaluate::{evaluate, Call, Hint, Outcome};
use warden_policy::tool_acl::mcp::{decide, Action, Context};
use warden_policy::tool_acl::risk::Risk;
use warden_policy::tool_acl::routing_headers::RoutingHeaders;

const NOW: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tool-acl/policy.yaml")).unwrap()
}

fn compile(yaml: &str) -> CompiledToolAcl {
    let document = parse_document(yaml.as_bytes()).unwrap();
    CompiledToolAcl::compile(document.tool_acl.as_ref().unwrap()).unwrap()
}

fn compile_err(yaml: &str) -> String {
    let document = match parse_document(yaml.as_bytes()) {
        Ok(d) => d,
        Err(e) => return e.to_string(),
    };
    CompiledToolAcl::compile(document.tool_acl.as_ref().unwrap()).unwrap_err().to_string()
}

fn planner() -> Caller {
    Caller {
        agent: Some("planner".into()),
        tenant: Some("acme".into()),
        session: Some("s-1".into()),
        scopes: vec!["tools:call".into()],
        ..Caller::default()
    }
}

fn call<'a>(tool: &'a str, risk: Risk, arguments: Option<&'a Value>) -> Call<'a> {
    Call { server: "files", tool, risk, arguments }
}

#[test]
fn precedence_is_deny_then_unmet_requirement_then_allow_then_default_deny() {
    let acl = compile(&example());
    let safe = json!({"path": "/srv/a", "content": "hi"});
    let system = json!({"path": "/etc/passwd"});
    let big = json!({"path": "/srv/a", "content": "x".repeat(5000)});
    assert!(matches!(evaluate(&acl, &planner(), &call("read_file", Risk::Read, Some(&safe))), Outcome::Allow { .. }));
    // An allow and a deny both apply: deny wins.
    let out = evaluate(&acl, &planner(), &call("read_file", Risk::Read, Some(&system)));
    assert_eq!(out, Outcome::Deny { rule: "no-system-paths".into(), reason: "denied_by_rule", hint: Hint::Nothing });
    // An allow and an unmet requirement: the requirement wins.
    let out = evaluate(&acl, &planner(), &call("write_file", Risk::Write, Some(&big)));
    assert!(matches!(out, Outcome::Deny { reason: "argument_constraint", .. }), "{out:?}");
    // Nothing applies: default deny.
    let out = evaluate(&acl, &planner(), &call("exec_shell", Risk::Write, Some(&safe)));
    assert_eq!(out, Outcome::Deny { rule: "default".into(), reason: "no_rule_allows", hint: Hint::Nothing });
}

#[test]
fn a_met_requirement_alone_never_grants() {
    let acl = compile(
        "toolAcl:\n  servers: [{name: files, pathPrefix: /mcp}]\n  rules:\n    - {id: need-scope, effect: require, require: {scopes: [a]}}\n",
    );
    let caller = Caller { scopes: vec!["a".into()], ..planner() };
    assert!(matches!(evaluate(&acl, &caller, &call("t", Risk::Read, Some(&json!({})))), Outcome::Deny { .. }));
}

#[test]
fn a_condition_on_an_absent_part_of_the_principal_never_holds() {
    let acl = compile(&example());
    let anonymous = Caller::default();
    let out = evaluate(&acl, &anonymous, &call("read_file", Risk::Read, Some(&json!({"path": "/srv"}))));
    assert!(matches!(out, Outcome::Deny { reason: "no_rule_allows", .. }));
}

#[test]
fn escalation_by_risk_class() {
    let acl = compile(&example());
    let args = json!({"path": "/srv/a", "content": "short"});
    // write: allowed; destructive: approval; a step-up names what it needs.
    assert!(matches!(evaluate(&acl, &planner(), &call("write_file", Risk::Write, Some(&args))), Outcome::Allow { .. }));
    assert!(matches!(
        evaluate(&acl, &planner(), &call("delete_file", Risk::Destructive, Some(&args))),
        Outcome::NeedsApproval { .. }
    ));
    let out = evaluate(&acl, &planner(), &call("admin_reindex", Risk::Write, Some(&args)));
    let Outcome::Deny { reason: "step_up_required", hint: Hint::Requirement(req), .. } = &out else {
        panic!("{out:?}")
    };
    assert_eq!(req.scopes, ["files:admin"]);
    let admin = Caller { scopes: vec!["tools:call".into(), "files:admin".into()], ..planner() };
    assert!(matches!(evaluate(&acl, &admin, &call("admin_reindex", Risk::Write, Some(&args))), Outcome::Allow { .. }));
    assert!(matches!(
        evaluate(&acl, &admin, &call("admin_reindex", Risk::Destructive, Some(&args))),
        Outcome::Deny { reason: "risk_not_allowed", .. }
    ));
    // A listing shows what can be called now or after a step-up or approval, nothing else.
    assert!(evaluate(&acl, &planner(), &call("admin_reindex", Risk::Write, None)).visible());
    assert!(evaluate(&acl, &planner(), &call("delete_file", Risk::Destructive, None)).visible());
    assert!(!evaluate(&acl, &planner(), &call("exec_shell", Risk::Write, None)).visible());
    // A deny on arguments cannot hide a tool: arguments are unknown when listing.
    assert!(evaluate(&acl, &planner(), &call("read_file", Risk::Read, None)).visible());
}

#[test]
fn step_up_by_acr() {
    let yaml = "toolAcl:\n  servers: [{name: files, pathPrefix: /mcp}]\n  rules:\n    - id: mfa\n      effect: allow\n      escalation: {write: stepUp, stepUp: {acr: [phr, phrh]}}\n";
    let acl = compile(yaml);
    let args = json!({});
    assert!(matches!(evaluate(&acl, &planner(), &call("t", Risk::Write, Some(&args))), Outcome::Deny { .. }));
    let strong = Caller { acr: Some("phrh".into()), ..planner() };
    assert!(matches!(evaluate(&acl, &strong, &call("t", Risk::Write, Some(&args))), Outcome::Allow { .. }));
}

#[test]
fn configuration_errors_name_the_field() {
    let base = "toolAcl:\n  servers: [{name: files, pathPrefix: /mcp}]\n  rules:\n";
    let cases = [
        (
            "    - {id: r, effect: allow, servers: [flies]}\n",
            "toolAcl.rules[0].servers[0]: no server is named \"flies\"",
        ),
        ("    - {id: r, effect: require}\n", "toolAcl.rules[0].require"),
        ("    - {id: r, effect: allow, escalation: {destructive: approval}}\n", "toolAcl.rules[0].escalation"),
        ("    - {id: r, effect: allow, escalation: {write: stepUp}}\n", "toolAcl.rules[0].escalation.stepUp"),
        ("    - {id: r, effect: alow}\n", "toolAcl.rules[0].effect"),
        (
            "    - {id: r, effect: allow, arguments: [{pointer: /a, regex: '['}]}\n",
            "toolAcl.rules[0].arguments[0].regex",
        ),
        ("    - {id: r, effect: allow}\n  limits: {loopProtection: {maxRepeats: 40, window: 1m}}\n", "maxRepeats"),
        ("    - {id: r, effect: allow}\n  limits: {loopProtection: {maxRepeats: 3, window: 60}}\n", "window"),
    ];
    for (rules, expected) in cases {
        let message = compile_err(&format!("{base}{rules}"));
        assert!(message.contains(expected), "{rules}: {message}");
    }
    let remote =
        example().replace("inline: '{\"keys\"", "remote: {cluster: x, path: /jwks}\n        #inline: '{\"keys\"");
    assert!(compile_err(&remote).contains("toolAcl.approvals.issuer.jwks"), "{}", compile_err(&remote));
}

fn host_with_pin(tool: &str, annotations: Value) -> MemoryHost {
    // A listing seen earlier pins the tool with its annotations.
    let host = MemoryHost::default();
    let risk = Risk::from_annotations(annotations["readOnlyHint"].as_bool(), annotations["destructiveHint"].as_bool());
    warden_policy::tool_acl::pins::observe(&host, "files", tool, "h", risk).unwrap();
    host
}

fn decide_body(host: &MemoryHost, acl: &CompiledToolAcl, caller: &Caller, body: &str) -> (Action, Vec<Value>) {
    let routing = RoutingHeaders::default();
    let cx = Context { host, acl, server: &acl.servers[0], caller, request_id: "req-9", now: now(), routing: &routing };
    let decided = decide(&cx, body.as_bytes()).unwrap();
    let records = decided
        .records
        .iter()
        .map(|r| json!({"tool": r.tool, "risk": r.risk.map(|k| k.as_str()), "decision": r.decision.to_string()}))
        .collect();
    (decided.action, records)
}

#[test]
fn annotations_count_only_for_trusted_servers_and_unknown_means_write() {
    let trusted = example().replace("pinning: refuse", "pinning: flag");
    let untrusted = trusted.replace("trustAnnotations: true", "trustAnnotations: false");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"archive","arguments":{}}}"#;
    let destructive = host_with_pin("archive", json!({"readOnlyHint": false, "destructiveHint": true}));
    // Allow `archive` for this test.
    let allow = |yaml: &str| {
        yaml.replace(
            "tools: [\"read_*\", \"search*\", write_file, \"delete_*\"]",
            "tools: [\"read_*\", \"search*\", write_file, \"delete_*\", archive]",
        )
    };
    let (_, records) = decide_body(&destructive, &compile(&allow(&trusted)), &planner(), body);
    assert_eq!(records[0]["risk"], "destructive");
    let (_, records) = decide_body(&destructive, &compile(&allow(&untrusted)), &planner(), body);
    assert_eq!(records[0]["risk"], "write", "untrusted annotations are ignored; unknown is write");
    // Configured classes win over annotations.
    let read_only_claim = host_with_pin("delete_file", json!({"readOnlyHint": true}));
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file","arguments":{"path":"/srv"}}}"#;
    let (_, records) = decide_body(&read_only_claim, &compile(&trusted), &planner(), body);
    assert_eq!(records[0]["risk"], "destructive");
}

fn approval(claims: Value) -> String {
    tokens::token(&tokens::ed25519(), &claims)
}

fn approval_claims(args_sha256: &str) -> Value {
    json!({"iss": "https://approvals.warden.test", "aud": "warden-tool-acl", "sub": "alice", "iat": NOW - 10, "exp": NOW + 110,
        "jti": "a-1", "tenant": "acme", "agent": "planner", "session": "s-1", "tool": "files/delete_file", "args_sha256": args_sha256})
}

fn delete_call(meta: Option<&str>) -> String {
    let mut body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "delete_file", "arguments": {"path": "/srv/tmp/x"}}});
    if let Some(token) = meta {
        body["params"]["_meta"] = json!({"warden/approval": token});
    }
    body.to_string()
}

fn reply_json(action: &Action) -> Value {
    match action {
        Action::Reply { body, .. } => serde_json::from_str(body).unwrap(),
        Action::Forward { .. } => Value::Null,
    }
}

#[test]
fn approvals_are_bound_to_the_call_and_usable_once() {
    let acl = compile(&example());
    let host = MemoryHost::default();
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(None));
    let asked = reply_json(&action)["result"]["_meta"]["warden/denial"].clone();
    assert_eq!(asked["reason"], "approval_required");
    let sha = asked["requires"]["approval"]["args_sha256"].as_str().unwrap().to_string();

    let mismatches = [
        ("tool", json!("files/read_file")),
        ("args_sha256", json!("00")),
        ("agent", json!("other")),
        ("tenant", json!("globex")),
        ("session", json!("s-2")),
    ];
    for (claim, value) in mismatches {
        let mut claims = approval_claims(&sha);
        claims[claim] = value;
        let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&approval(claims))));
        assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "approval_mismatch", "{claim}");
    }
    let mut long = approval_claims(&sha);
    long["exp"] = json!(NOW + 3600);
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&approval(long))));
    assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "approval_too_long");
    let mut expired = approval_claims(&sha);
    expired["exp"] = json!(NOW - 100);
    expired["iat"] = json!(NOW - 200);
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&approval(expired))));
    assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "approval_invalid");
    let forged = tokens::token(&tokens::ec256(), &approval_claims(&sha));
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&forged)));
    assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "approval_invalid");

    let token = approval(approval_claims(&sha));
    let (action, records) = decide_body(&host, &acl, &planner(), &delete_call(Some(&token)));
    // Forwarded without the approval: spent here, it is not the server's to hold.
    let Action::Forward { rewritten: Some(sent) } = action else { panic!("{action:?}") };
    let sent: Value = serde_json::from_str(&sent).unwrap();
    assert_eq!(sent["params"]["_meta"], json!({}));
    assert_eq!(sent["params"]["arguments"], json!({"path": "/srv/tmp/x"}));
    assert_eq!(records[0]["decision"], "allow;rule=acme-agents-use-files;reason=approved");
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&token)));
    assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "approval_reused");
    // Nothing in shared data names the approval id, the agent or the arguments.
    for key in host.shared_keys() {
        let (value, _) = warden_policy::host::Host::shared_data(&host, &key).unwrap();
        let text = String::from_utf8(value.unwrap()).unwrap();
        assert!(!text.contains("a-1") && !text.contains("planner") && !text.contains("/srv"), "{text}");
    }
}

#[test]
fn a_body_refused_for_another_message_spends_no_approval_and_counts_no_call() {
    // One call per session: a call left counted by a refused body would use it up.
    let acl = compile(&example().replace("maxCallsPerSession: 100", "maxCallsPerSession: 1"));
    let host = MemoryHost::default();
    let asked = reply_json(&decide_body(&host, &acl, &planner(), &delete_call(None)).0)["result"]["_meta"]
        ["warden/denial"]
        .clone();
    let token = approval(approval_claims(asked["requires"]["approval"]["args_sha256"].as_str().unwrap()));
    let approved: Value = serde_json::from_str(&delete_call(Some(&token))).unwrap();
    let denied =
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "exec_shell", "arguments": {}}});
    let batch = json!([approved, denied]).to_string();
    let (action, records) = decide_body(&host, &acl, &planner(), &batch);
    assert!(matches!(action, Action::Reply { .. }), "{action:?}");
    assert_eq!(records[0]["decision"], "allow;rule=acme-agents-use-files;reason=approved");
    // The approved call alone: its approval was not spent, its count was given back.
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&token)));
    assert!(matches!(action, Action::Forward { .. }), "{}", reply_json(&action));
    // Forwarded, it counts: the session's one call is used.
    let (action, _) = decide_body(&host, &acl, &planner(), &delete_call(Some(&token)));
    assert_eq!(reply_json(&action)["result"]["_meta"]["warden/denial"]["reason"], "session_call_limit");
}

#[test]
fn denials_can_be_json_rpc_errors_and_shadow_mode_forwards() {
    let acl = compile(&example().replace("toolAcl:\n", "toolAcl:\n  denyAs: jsonRpcError\n"));
    let body = r#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"name":"exec_shell","arguments":{}}}"#;
    let (action, _) = decide_body(&MemoryHost::default(), &acl, &planner(), body);
    let answer = reply_json(&action);
    assert_eq!(answer["id"], "x-1");
    assert_eq!(answer["error"]["code"], -32001);
    assert_eq!(answer["error"]["data"]["rule"], "default");

    let acl = compile(&example().replace("toolAcl:\n", "toolAcl:\n  mode: shadow\n"));
    let (action, records) = decide_body(&MemoryHost::default(), &acl, &planner(), body);
    assert_eq!(action, Action::Forward { rewritten: None });
    assert_eq!(records[0]["decision"], "shadow_deny;rule=default;reason=no_rule_allows");
    // Protocol faults are refused even in shadow mode.
    let (action, _) = decide_body(&MemoryHost::default(), &acl, &planner(), "{");
    assert!(matches!(action, Action::Reply { status: 400, .. }));
}

#[test]
fn random_and_mutated_bodies_never_panic_and_never_forward_what_was_not_checked() {
    let acl = compile(&example());
    let host = MemoryHost::default();
    let seeds = [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/a"}}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file", "arguments":{"path":"/srv/a"}, "_meta":{"progressToken":1, "warden/approval":"x.y.z"}}}"#,
    ];
    let routing = RoutingHeaders::default();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for seed in seeds {
        for _ in 0..3000 {
            let mut bytes = seed.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[i] = (next() % 256) as u8,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, b"{}[]\",:\\"[(next() % 8) as usize]),
                }
            }
            let cx = Context {
                host: &host,
                acl: &acl,
                server: &acl.servers[0],
                caller: &planner(),
                request_id: "r",
                now: now(),
                routing: &routing,
            };
            let decided = decide(&cx, &bytes).unwrap();
            if let Action::Forward { rewritten } = &decided.action {
                // Whatever goes on parsed, and every call in it was allowed.
                let text = std::str::from_utf8(&bytes).unwrap();
                let sent: Value = serde_json::from_str(text).unwrap();
                assert!(decided.records.iter().all(|r| r.decision.verdict == warden_policy::decision::Verdict::Allow));
                // What is forwarded is what was sent, less any approval.
                let mut expected = sent.clone();
                let messages = match &mut expected {
                    Value::Array(items) => items.iter_mut().collect::<Vec<_>>(),
                    one => vec![one],
                };
                for message in messages {
                    if let Some(meta) = message.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
                        meta.remove("warden/approval");
                    }
                }
                let forwarded = rewritten.as_deref().map_or(sent, |r| serde_json::from_str(r).unwrap());
                assert_eq!(forwarded, expected, "{text}");
            }
        }
    }
}

#[test]
fn the_acr_claim_reaches_the_principal_attributes() {
    let principal =
        warden_policy::principal::Principal { agent: "a".into(), acr: Some("phrh".into()), ..Default::default() };
    assert_eq!(principal.record()["acr"], "phrh");
}

#[test]
fn only_principals_some_rule_allows_may_reach_a_server() {
    let acl = compile(&example());
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;
    let (action, _) = decide_body(&MemoryHost::default(), &acl, &planner(), initialize);
    assert_eq!(action, Action::Forward { rewritten: None });
    let outsider = Caller { tenant: Some("globex".into()), ..planner() };
    let (action, records) = decide_body(&MemoryHost::default(), &acl, &outsider, initialize);
    assert_eq!(reply_json(&action)["error"]["data"]["reason"], "server_not_allowed");
    assert_eq!(records[0]["decision"], "deny;rule=default;reason=server_not_allowed");
    // A server-wide deny closes the server even to principals an allow is about.
    let closed = compile(&example().replace(
        "  rules:\n",
        "  rules:\n    - { id: files-closed, effect: deny, servers: [files], when: { agents: [planner] } }\n",
    ));
    let (action, _) = decide_body(&MemoryHost::default(), &closed, &planner(), initialize);
    assert_eq!(reply_json(&action)["error"]["data"]["rule"], "files-closed");
}

#[test]
fn reads_and_prompts_are_recorded_by_what_they_name() {
    let acl = compile(&example());
    let read = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///srv/notes.txt"}}"#;
    let (action, records) = decide_body(&MemoryHost::default(), &acl, &planner(), read);
    assert_eq!(action, Action::Forward { rewritten: None });
    assert_eq!(records[0]["tool"], "file:///srv/notes.txt");
    let prompt = r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"summarise"}}"#;
    let (_, records) = decide_body(&MemoryHost::default(), &acl, &planner(), prompt);
    assert_eq!(records[0]["tool"], "summarise");
}

#[test]
fn shadow_mode_never_forwards_a_call_it_could_not_read() {
    let acl = compile(&example().replace("toolAcl:\n", "toolAcl:\n  mode: shadow\n"));
    let unreadable = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":"x"}}"#;
    let (action, _) = decide_body(&MemoryHost::default(), &acl, &planner(), unreadable);
    assert_eq!(reply_json(&action)["error"]["code"], -32602, "{}", reply_json(&action));
    // A refused batch of notifications only: no JSON-RPC answer exists, so HTTP says no.
    let acl = compile(&example());
    let notes =
        r#"[{"jsonrpc":"2.0","method":"sampling/poke"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let (action, _) = decide_body(&MemoryHost::default(), &acl, &planner(), notes);
    assert!(matches!(action, Action::Reply { status: 403, .. }), "{action:?}");
}

/// A deny rule whose constraint cannot be judged (the value is missing, or of another type)
/// applies; an allow rule's does not.
#[test]
fn a_deny_that_cannot_be_judged_applies_and_an_allow_does_not() {
    let acl = compile(concat!(
        "toolAcl:\n",
        "  servers: [{name: files, pathPrefix: /mcp}]\n",
        "  rules:\n",
        "    - {id: use, effect: allow, servers: [files], tools: [read_file]}\n",
        "    - {id: no-etc, effect: deny, servers: [files], arguments: [{pointer: /path, path: {within: [/etc]}}]}\n",
        "    - {id: small, effect: allow, servers: [files], tools: [sized], arguments: [{pointer: /n, maximum: 5}]}\n",
    ));
    let caller = Caller::default();
    let decide = |tool: &str, args: serde_json::Value| {
        let call = Call { server: "files", tool, risk: Risk::Read, arguments: Some(&args) };
        evaluate(&acl, &caller, &call)
    };
    for args in [json!({}), json!({"path": 7}), json!({"path": ["/etc/shadow"]}), json!({"path": "etc/shadow"})] {
        assert!(
            matches!(decide("read_file", args.clone()), Outcome::Deny { ref rule, .. } if rule == "no-etc"),
            "{args}"
        );
    }
    assert!(
        matches!(decide("read_file", json!({"path": "/srv/../etc"})), Outcome::Deny { ref rule, .. } if rule == "no-etc")
    );
    assert!(matches!(decide("read_file", json!({"path": "/srv/x"})), Outcome::Allow { .. }));
    // `small` cannot judge "3" (a string): it does not allow.
    assert!(matches!(decide("sized", json!({"path": "/srv", "n": "3"})), Outcome::Deny { .. }));
    assert!(matches!(decide("sized", json!({"path": "/srv", "n": 3})), Outcome::Allow { ref rule } if rule == "small"));
}
