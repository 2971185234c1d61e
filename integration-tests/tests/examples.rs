//! Every policy the repository ships is accepted by the filter it is written for: the Istio
//! `WasmPlugin.pluginConfig` documents (Istio hands them to the filter as JSON) and the Envoy
//! configs' plugin configurations.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Deserialize;
use serde_norway::Value;
use warden_integration_tests::envoy::config_policy;
use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin};
use warden_integration_tests::repo;

/// Whether the filter built as `warden_<filter>.wasm` accepts `policy`, and what it logged.
fn accepts(filter: &str, policy: &[u8]) -> (bool, String) {
    let plugin = Plugin::load(&repo::filter_wasm(&format!("warden_{filter}"))).unwrap();
    let (vm, accepted) = plugin.start_unchecked(&HostEnv::default(), policy).unwrap();
    (accepted, vm.log_text())
}

#[test]
fn istio_plugin_configs_are_valid_policies() {
    let dir = repo::root().join("examples/istio");
    // The single-gateway examples and what `wardenctl render istio` made for each namespace.
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    for namespace in std::fs::read_dir(dir.join("namespaces")).unwrap() {
        files.extend(std::fs::read_dir(namespace.unwrap().path()).unwrap().map(|e| e.unwrap().path()));
    }
    let mut checked = 0;
    for path in files {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_norway::Deserializer::from_str(&text) {
            let doc = Value::deserialize(document).unwrap();
            if doc.get("kind").and_then(Value::as_str) != Some("WasmPlugin") {
                continue;
            }
            let url = doc["spec"]["url"].as_str().unwrap_or_default();
            let filter = ["identity", "tool-acl", "token-budget", "redaction"]
                .into_iter()
                .find(|f| url.contains(&format!("/warden/{f}:")))
                .unwrap_or_else(|| panic!("{}: no test knows the filter behind {url}", path.display()));
            // Istio serialises pluginConfig (a protobuf Struct) to JSON for the filter.
            let json = serde_json::to_vec(&doc["spec"]["pluginConfig"]).unwrap();
            let (accepted, log) = accepts(&filter.replace('-', "_"), &json);
            assert!(accepted, "{}: {log}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} WasmPlugins found under {}", dir.display());
}

#[test]
fn envoy_config_policies_are_valid_policies() {
    for (config, filter, name) in [
        ("envoy/identity.yaml", "warden.identity", "identity"),
        ("envoy/tool-acl.yaml", "warden.identity", "identity"),
        ("envoy/tool-acl.yaml", "warden.tool_acl", "tool_acl"),
        ("envoy/token-budget.yaml", "warden.identity", "identity"),
        ("envoy/token-budget.yaml", "warden.token_budget", "token_budget"),
        ("envoy/warden.yaml", "warden.identity", "identity"),
        ("envoy/warden.yaml", "warden.tool_acl", "tool_acl"),
        ("envoy/warden.yaml", "warden.token_budget", "token_budget"),
        ("envoy/warden.yaml", "warden.router", "router"),
        ("envoy/router.yaml", "warden.router", "router"),
        ("envoy/redaction.yaml", "warden.identity", "identity"),
        ("envoy/redaction.yaml", "warden.redaction", "redaction"),
    ] {
        let policy = config_policy(config, filter).unwrap();
        let (accepted, log) = accepts(name, policy.as_bytes());
        assert!(accepted, "{config} {filter}: {log}");
    }
}

/// Runs `wardenctl validate --envoy` (what `make validate` runs, built by `make build`) on `files`.
fn validate_headers(files: &[&std::path::Path]) -> (bool, String) {
    let mut command = std::process::Command::new(repo::root().join("target/debug/wardenctl"));
    command.arg("validate");
    for file in files {
        command.arg("--envoy").arg(file);
    }
    let out = command.output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A body-reading filter that holds the request headers (the policy's default) without Envoy's
/// `allow_on_headers_stop_iteration` would hang every request: `make validate` refuses such an
/// Envoy config and such an Istio WasmPlugin, naming the filter, and accepts them once the flag
/// is set or the policy releases the headers.
#[test]
fn held_headers_without_envoys_flag_are_refused_at_validate_time() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo::root().join("envoy/tool-acl.yaml")).unwrap();
    assert!(shipped.contains("allow_on_headers_stop_iteration: true"));
    let without = dir.path().join("without-flag.yaml");
    std::fs::write(
        &without,
        shipped.replace("allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false"),
    )
    .unwrap();
    let (ok, out) = validate_headers(&[&without]);
    assert!(!ok, "{out}");
    assert!(out.contains("warden.tool_acl") && out.contains("allow_on_headers_stop_iteration"), "{out}");

    let released = dir.path().join("released.yaml");
    let text = shipped
        .replace("allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false")
        .replace("value: &policy |\n", "value: &policy |\n                            requestHeaders: release\n");
    std::fs::write(&released, text).unwrap();
    let (ok, out) = validate_headers(&[&released]);
    assert!(ok, "{out}");

    let plugin = std::fs::read_to_string(repo::root().join("examples/istio/tool-acl-wasmplugin.yaml")).unwrap();
    let holding = dir.path().join("holding-plugin.yaml");
    std::fs::write(&holding, plugin.replace("    requestHeaders: release\n", "")).unwrap();
    let (ok, out) = validate_headers(&[&holding]);
    assert!(!ok, "{out}");
    assert!(out.contains("WasmPlugin warden-tool-acl") && out.contains("EnvoyFilter"), "{out}");
}

/// The audit schema check is a real check: it passes a record in either `auditFormat` and
/// refuses one whose field breaks the schema, naming it.
#[test]
fn the_audit_schema_check_refuses_a_record_that_breaks_it() {
    use serde_json::json;
    use warden_integration_tests::audit::check_schema;
    let record = json!({"v": 1, "principal": {"agent": "planner", "auth_methods": ["jwt"]},
                        "identity": {"verdict": "allow", "rule": "api", "reason": "authenticated"}});
    let line = |warden: serde_json::Value| {
        json!({"time": "2026-11-30T00:00:00Z", "request_id": "r", "method": "POST", "path": "/v1/chat/completions",
               "status": 200, "warden": warden})
    };
    let typed = json!({"@type": "type.googleapis.com/google.protobuf.Struct", "value": record});
    check_schema(&[line(record.to_string().into()), line(typed), line(serde_json::Value::Null)]).unwrap();

    let mut bad = record.clone();
    bad["identity"]["verdict"] = "maybe".into();
    let error = check_schema(&[line(bad.to_string().into())]).unwrap_err().to_string();
    assert!(error.contains("warden/identity/verdict"), "{error}");
    bad["identity"]["verdict"] = "allow".into();
    bad["token_budget"] = json!({"tokens": {"input": -1}});
    let typed = json!({"@type": "type.googleapis.com/google.protobuf.Struct", "value": bad});
    let error = check_schema(&[line(typed)]).unwrap_err().to_string();
    assert!(error.contains("warden/value/token_budget/tokens/input"), "{error}");
}
