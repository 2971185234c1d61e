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
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
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
            let filter = ["identity", "tool-acl", "token-budget"]
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
    assert!(checked > 0, "no WasmPlugin found under {}", dir.display());
}

#[test]
fn envoy_config_policies_are_valid_policies() {
    for (config, filter, name) in [
        ("envoy/identity.yaml", "warden.identity", "identity"),
        ("envoy/tool-acl.yaml", "warden.identity", "identity"),
        ("envoy/tool-acl.yaml", "warden.tool_acl", "tool_acl"),
        ("envoy/token-budget.yaml", "warden.identity", "identity"),
        ("envoy/token-budget.yaml", "warden.token_budget", "token_budget"),
    ] {
        let policy = config_policy(config, filter).unwrap();
        let (accepted, log) = accepts(name, policy.as_bytes());
        assert!(accepted, "{config} {filter}: {log}");
    }
}
