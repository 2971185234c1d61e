//! `warden.wasm`, the whole chain in one module, driven through the wasmtime host: each
//! `root_id` starts its own filter on the chain's policy, and a `root_id` that names no filter
//! is refused at configure time. (That Envoy runs the three in one VM per worker is checked end
//! to end in `chain_envoy`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use warden_integration_tests::proxy_wasm_host::{Action, HostEnv, Plugin, Vm};
use warden_integration_tests::repo;

fn policy() -> String {
    std::fs::read_to_string(repo::root().join("examples/warden/policy.yaml")).unwrap()
}

fn start(root_id: &str) -> Vm {
    let plugin = Plugin::load(&repo::filter_wasm("warden")).expect("built warden.wasm");
    let (vm, accepted) = plugin.start_as(&HostEnv::default(), root_id, policy().as_bytes()).unwrap();
    assert!(accepted, "{root_id}: {}", vm.log_text());
    vm
}

/// A POST of `body` to `path` with no credentials; the status and body of the local reply.
fn post(vm: &mut Vm, path: &str, body: &str) -> (u32, Value) {
    let s = vm.new_stream().unwrap();
    let length = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", path),
        (":authority", "gw"),
        ("content-type", "application/json"),
        ("content-length", length.as_str()),
    ];
    if vm.request_headers(s, &headers, false).unwrap() != Action::Continue || vm.local_reply(s).is_none() {
        vm.request_body(s, body.as_bytes(), true).unwrap();
    }
    let reply = vm.local_reply(s).expect("answered by the filter");
    (reply.status, serde_json::from_slice(&reply.body).unwrap())
}

#[test]
fn each_root_id_runs_its_own_filter() {
    let mut identity = start("warden.identity");
    assert_eq!(identity.declared().keys().collect::<Vec<_>>(), ["warden.audit", "warden.principal"]);
    let (status, body) = post(&mut identity, "/v1/chat/completions", "{}");
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("missing_credentials")), "{body}");

    let mut tool_acl = start("warden.tool_acl");
    assert_eq!(tool_acl.declared().keys().collect::<Vec<_>>(), ["warden.audit"]);
    let (status, body) = post(&mut tool_acl, "/mcp/files", "{\"jsonrpc\": ");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32700, "a JSON-RPC parse error: {body}");

    // Redaction reads the body as JSON: what it cannot read it refuses, in OpenAI's shape.
    let mut redaction = start("warden.redaction");
    assert_eq!(redaction.declared().keys().collect::<Vec<_>>(), ["warden.audit"]);
    let (status, body) = post(&mut redaction, "/v1/chat/completions", "{\"model\": ");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unreadable_body")), "{body}");

    let mut token_budget = start("warden.token_budget");
    assert_eq!(token_budget.declared().keys().collect::<Vec<_>>(), ["warden.audit"]);
    let (status, body) = post(&mut token_budget, "/v1/chat/completions", "{\"model\": ");
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{body}");
}

#[test]
fn a_root_id_that_names_no_filter_is_refused_and_named() {
    let plugin = Plugin::load(&repo::filter_wasm("warden")).unwrap();
    for root_id in ["warden.tool-acl", ""] {
        let (vm, accepted) = plugin.start_as(&HostEnv::default(), root_id, policy().as_bytes()).unwrap();
        assert!(!accepted, "{root_id:?}");
        let log = vm.log_text();
        assert!(log.contains(&format!("unknown root_id {root_id:?}")), "{log}");
        assert!(log.contains("warden.identity, warden.tool_acl, warden.redaction, warden.token_budget"), "{log}");
    }
}
