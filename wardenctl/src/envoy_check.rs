//! Refuses a configuration in which a body-reading Warden filter would hang every request, and
//! one whose inline policy a filter would refuse at configure time.
//!
//! A body-reading filter (tool-acl, redaction, token-budget, the router) holds the request
//! headers while it reads the body, unless its policy says `requestHeaders: release`. Envoy lets
//! a Wasm filter do that only when its PluginConfig sets `allow_on_headers_stop_iteration: true`
//! (Envoy ≥ 1.35); without it no body reaches the filter and the request hangs. Envoy cannot see
//! the policy, so it cannot refuse such a config itself: this check does.
//!
//! It reads Envoy configs (every Wasm filter in them), Istio `WasmPlugin`s (which cannot set the
//! flag: a body-reading one must release the headers) and Istio `EnvoyFilter`s (whose
//! EXTENSION_CONFIG patches can).

use serde::Deserialize;
use serde_json::Value;
use warden_policy::compiled_policy::CompiledPolicy;
use warden_policy::policy::PolicyDocument;
use warden_policy::root_ids;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

pub enum Refused {
    /// Not YAML or JSON.
    Unreadable(String),
    /// What would hang or be refused, one line each.
    Findings(Vec<String>),
}

/// Checks every document of `text`; `Ok` counts the Warden filters checked.
pub fn check(text: &[u8]) -> Result<usize, Refused> {
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_slice(text) {
        let value = Value::deserialize(document).map_err(|e| Refused::Unreadable(e.to_string()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    // A `kind: List` (what `kubectl get -o yaml` prints) holds its documents as items.
    let documents: Vec<Value> = documents
        .into_iter()
        .flat_map(|d| match (d.get("kind").and_then(Value::as_str), d.get("items").and_then(Value::as_array)) {
            (Some("List"), Some(items)) => items.clone(),
            _ => vec![d],
        })
        .collect();
    let mut findings = Vec::new();
    let mut checked = 0;
    for document in &documents {
        if document.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
            checked += check_wasm_plugin(document, &mut findings);
            continue;
        }
        let mut configs = Vec::new();
        wasm_configs(document, &mut configs);
        for config in configs {
            checked += check_wasm(config, &mut findings);
        }
    }
    if checked == 0 {
        findings.push("no Warden Wasm filter found (nothing was checked)".to_string());
    }
    if findings.is_empty() {
        Ok(checked)
    } else {
        Err(Refused::Findings(findings))
    }
}

/// A field by its proto name, or by the camelCase JSON name Envoy accepts as well.
fn field<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    value.get(key).or_else(|| {
        let mut camel = String::with_capacity(key.len());
        let mut upper = false;
        for c in key.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                camel.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                camel.push(c);
            }
        }
        value.get(&camel)
    })
}

fn text<'v>(value: &'v Value, path: &[&str]) -> &'v str {
    path.iter().try_fold(value, |v, key| field(v, key)).and_then(Value::as_str).unwrap_or_default()
}

const TYPED_STRUCTS: [&str; 2] =
    ["type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct"];

/// Every Wasm filter config (the `config` of an `envoy.filters.http.wasm`) under `node`.
fn wasm_configs<'v>(node: &'v Value, out: &mut Vec<&'v Value>) {
    match node {
        Value::Object(map) => {
            let kind = map.get("@type").and_then(Value::as_str).unwrap_or_default();
            if kind == WASM_TYPE {
                if let Some(config) = map.get("config").filter(|c| c.is_object()) {
                    out.push(config);
                }
            }
            // The same config wrapped in a TypedStruct (`type_url` the Wasm filter's).
            if TYPED_STRUCTS.contains(&kind) && text(node, &["type_url"]) == WASM_TYPE {
                if let Some(config) = node.get("value").and_then(|v| v.get("config")).filter(|c| c.is_object()) {
                    out.push(config);
                }
            }
            map.values().for_each(|v| wasm_configs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| wasm_configs(v, out)),
        _ => {}
    }
}

/// Where a PluginConfig's code comes from: a local file or a remote URI.
fn code_source(config: &Value) -> String {
    let local = text(config, &["vm_config", "code", "local", "filename"]);
    let remote = text(config, &["vm_config", "code", "remote", "http_uri", "uri"]);
    format!("{local}{remote}")
}

/// Whether a config runs Warden's code at all: its root id or its module names Warden.
fn is_warden(root_id: &str, name: &str, source: &str) -> bool {
    root_id.starts_with("warden.") || format!("{name} {source}").to_ascii_lowercase().contains("warden")
}

/// The body-reading filter a config runs, if any: its root id, name, module file or image name
/// one (`tool_acl`, `tool-acl`, …) however decorated (`warden-tool-acl`, `tool-acl@sha256:…`).
/// A Warden module this check cannot name counts as body-reading, so a config that would hang
/// is never let through.
fn body_reading(root_id: &str, name: &str, source: &str) -> Option<String> {
    // The router's attempt filter runs upstream, once per attempt, and never holds headers.
    if root_id == root_ids::ROUTER_ATTEMPT {
        return None;
    }
    let names = format!("{root_id} {name} {source}").to_ascii_lowercase().replace('-', "_");
    if let Some(found) = root_ids::BODY_READING.iter().find(|r| names.contains(&r["warden.".len()..])) {
        return Some((*found).to_string());
    }
    (names.contains("warden") && !names.contains("identity")).then(|| "warden (unnamed module)".to_string())
}

/// The inline policy of a config (`configuration.value`, a string or a JSON object).
fn inline_policy(configuration: Option<&Value>) -> Option<Vec<u8>> {
    match configuration? {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Null => None,
        other => serde_json::to_vec(other).ok(),
    }
}

fn holds_headers(policy: &Value) -> bool {
    policy.get("requestHeaders").and_then(Value::as_str).unwrap_or("hold") == "hold"
}

fn parsed(policy: Option<&[u8]>) -> Value {
    let Some(bytes) = policy else { return Value::Null };
    serde_norway::from_slice::<Value>(bytes).unwrap_or(Value::Null)
}

/// The policy section a filter of this root id needs.
/// The policy section a filter of this root id needs, and whether `document` has it.
fn section_of(root_id: &str, document: &PolicyDocument) -> Option<(&'static str, bool)> {
    match root_id {
        root_ids::IDENTITY => Some(("identity", document.identity.is_some())),
        root_ids::TOOL_ACL => Some(("toolAcl", document.tool_acl.is_some())),
        root_ids::REDACTION => Some(("redaction", document.redaction.is_some())),
        root_ids::TOKEN_BUDGET => Some(("tokenBudget", document.token_budget.is_some())),
        root_ids::ROUTER | root_ids::ROUTER_ATTEMPT => Some(("router", document.router.is_some())),
        _ => None,
    }
}

/// Compiles an inline policy as the filter would: the whole document, the filter's own section
/// required. Provider keys and the hash key are read from the proxy's environment, which is not
/// here: a stand-in of the right length serves; `exposed` (the VM's `host_env_keys`, when the
/// config is at hand) must name every variable the filter reads.
pub fn compile_finding(who: &str, root_id: &str, policy: &[u8], exposed: Option<&[String]>) -> Option<String> {
    let stand_in = |_: &str| Some("stand-in-for-a-secret-of-32-bytes".to_string());
    let compiled = match CompiledPolicy::compile(policy, &stand_in) {
        Ok(compiled) => compiled,
        Err(e) => return Some(format!("{who}: its policy would be refused at configure time: {e}")),
    };
    let document = &compiled.document;
    if let Some((section, false)) = section_of(root_id, document) {
        return Some(format!("{who}: its policy has no {section} section, which {root_id} needs"));
    }
    // Only the attempt plugin reads provider keys, only redaction the hash key.
    let needed: Vec<String> = match root_id {
        root_ids::ROUTER_ATTEMPT => compiled
            .router
            .iter()
            .flat_map(|r| r.router.providers.iter().filter_map(|p| p.credential.as_ref()?.env.clone()))
            .collect(),
        root_ids::REDACTION => {
            document.redaction.iter().filter_map(|r| Some(r.hash_key.as_ref()?.env.clone())).collect()
        }
        _ => Vec::new(),
    };
    let missing: Vec<&String> = needed.iter().filter(|n| exposed.is_some_and(|e| !e.contains(n))).collect();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
        return Some(format!(
            "{who}: its policy reads {} from the proxy's environment, which vm_config.environment_variables.host_env_keys \
             does not expose: the filter would refuse its configuration",
            names.join(", ")
        ));
    }
    None
}

/// The variables a Wasm config exposes to its VM.
fn host_env_keys(config: &Value) -> Vec<String> {
    let keys = ["vm_config", "environment_variables", "host_env_keys"].iter().try_fold(config, |v, k| field(v, k));
    keys.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

pub fn check_wasm(config: &Value, findings: &mut Vec<String>) -> usize {
    let root_id = text(config, &["root_id"]);
    let name = text(config, &["name"]);
    let source = code_source(config);
    if !is_warden(root_id, name, &source) {
        return 0;
    }
    let who = if name.is_empty() { root_id } else { name };
    let policy = inline_policy(field(config, "configuration").and_then(|c| c.get("value")));
    let reading = body_reading(root_id, name, &source);
    let flag = field(config, "allow_on_headers_stop_iteration").and_then(Value::as_bool) == Some(true);
    if reading.is_some() && holds_headers(&parsed(policy.as_deref())) && !flag {
        findings.push(format!(
            "{who}: the policy holds the request headers (requestHeaders: hold, the default) but the Wasm \
             PluginConfig does not set allow_on_headers_stop_iteration: true (Envoy >= 1.35): every request \
             would hang. Set the flag, or requestHeaders: release in the policy"
        ));
    }
    if let Some(policy) = policy {
        findings.extend(compile_finding(who, root_id, &policy, Some(&host_env_keys(config))));
    }
    1
}

fn check_wasm_plugin(document: &Value, findings: &mut Vec<String>) -> usize {
    let root_id = text(document, &["spec", "pluginName"]);
    let url = text(document, &["spec", "url"]);
    let name = text(document, &["metadata", "name"]);
    if !is_warden(root_id, name, url) {
        return 0;
    }
    let policy = inline_policy(document.get("spec").and_then(|s| s.get("pluginConfig")));
    let who = format!("WasmPlugin {name}");
    if body_reading(root_id, name, url).is_some() && holds_headers(&parsed(policy.as_deref())) {
        findings.push(format!(
            "{who}: the policy holds the request headers (requestHeaders: hold, the default), and a WasmPlugin \
             cannot set allow_on_headers_stop_iteration: every request would hang. Use an EnvoyFilter \
             (examples/istio/warden-envoyfilter.yaml), or requestHeaders: release"
        ));
    }
    // Istio sets the VM's environment from the WasmPlugin's `vmConfig.env`; not checked here.
    if let Some(policy) = policy {
        findings.extend(compile_finding(&who, root_id, &policy, None));
    }
    1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn envoy_config(flag: Option<bool>, policy: &str) -> String {
        let flag = flag.map(|f| format!("allow_on_headers_stop_iteration: {f}\n                ")).unwrap_or_default();
        format!(
            "static_resources:\n  listeners:\n  - filter_chains:\n    - filters:\n      - typed_config:\n          http_filters:\n          - name: warden.tool_acl\n            typed_config:\n              \"@type\": {WASM_TYPE}\n              config:\n                root_id: warden.tool_acl\n                {flag}vm_config: {{ code: {{ local: {{ filename: warden.wasm }} }} }}\n                configuration:\n                  \"@type\": type.googleapis.com/google.protobuf.StringValue\n                  value: {policy:?}\n"
        )
    }

    const TOOLS: &str = "toolAcl:\n  servers: [{ name: files, pathPrefix: /mcp/ }]\n  rules: []\n";

    #[test]
    fn a_holding_filter_without_the_flag_is_refused_naming_it() {
        let Err(Refused::Findings(findings)) = check(envoy_config(None, TOOLS).as_bytes()) else { panic!() };
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].starts_with("warden.tool_acl: the policy holds the request headers"), "{findings:?}");
    }

    #[test]
    fn the_flag_or_a_released_policy_passes() {
        assert_eq!(check(envoy_config(Some(true), TOOLS).as_bytes()).ok(), Some(1));
        let released = format!("requestHeaders: release\n{TOOLS}");
        assert_eq!(check(envoy_config(None, &released).as_bytes()).ok(), Some(1));
    }

    #[test]
    fn an_inline_policy_with_a_typo_is_refused_naming_the_field() {
        let typo = "toolAcl:\n  servers: [{ name: files, pathPrefx: /mcp/ }]\n  rules: []\n";
        let Err(Refused::Findings(findings)) = check(envoy_config(Some(true), typo).as_bytes()) else { panic!() };
        assert!(findings[0].contains("toolAcl.servers[0]") && findings[0].contains("pathPrefx"), "{findings:?}");
    }

    #[test]
    fn a_wasm_plugin_cannot_hold_headers() {
        let plugin = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: tools }\nspec:\n  url: oci://r/warden-tool-acl:1\n  pluginName: warden.tool_acl\n  pluginConfig:\n    toolAcl: { servers: [{ name: f, pathPrefix: /mcp/ }], rules: [] }\n";
        let Err(Refused::Findings(findings)) = check(plugin.as_bytes()) else { panic!() };
        assert!(findings[0].contains("WasmPlugin tools") && findings[0].contains("EnvoyFilter"), "{findings:?}");
        let released = plugin.replace("pluginConfig:\n", "pluginConfig:\n    requestHeaders: release\n");
        assert_eq!(check(released.as_bytes()).ok(), Some(1));
    }

    #[test]
    fn identity_and_the_attempt_filter_never_hold_and_other_filters_are_not_warden() {
        let policy = "identity:\n  apiKeys: { keys: [{ sha256: 0d47600bb8f6d6dedba85fdea07bc6392c72496d6fe7f00c06aa1e700bbc42fd, agent: a }] }\n  routes: [{ name: all, agent: [apiKey] }]\n";
        let identity = envoy_config(None, policy).replace("tool_acl", "identity");
        assert_eq!(check(identity.as_bytes()).ok(), Some(1));
        let other =
            envoy_config(None, TOOLS).replace("warden.tool_acl", "acme.filter").replace("warden.wasm", "acme.wasm");
        let Err(Refused::Findings(findings)) = check(other.as_bytes()) else { panic!("nothing to check is refused") };
        assert!(findings[0].contains("no Warden Wasm filter"), "{findings:?}");
    }

    #[test]
    fn an_unnamed_warden_module_counts_as_body_reading() {
        let unnamed = envoy_config(None, TOOLS)
            .replace("root_id: warden.tool_acl", "root_id: mine")
            .replace("name: warden.tool_acl", "name: mine");
        assert!(matches!(check(unnamed.as_bytes()), Err(Refused::Findings(_))));
    }

    #[test]
    fn a_typed_struct_camel_case_or_a_list_does_not_hide_a_filter() {
        let typed = format!(
            "http_filters:\n- name: x\n  typed_config:\n    \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n    type_url: {WASM_TYPE}\n    value:\n      config:\n        root_id: warden.tool_acl\n        configuration: {{ value: {TOOLS:?} }}\n"
        );
        assert!(matches!(check(typed.as_bytes()), Err(Refused::Findings(_))), "a TypedStruct is read");
        let camel = envoy_config(None, TOOLS).replace("root_id:", "rootId:");
        assert!(matches!(check(camel.as_bytes()), Err(Refused::Findings(_))), "rootId is read");
        let camel_flag =
            envoy_config(Some(true), TOOLS).replace("allow_on_headers_stop_iteration", "allowOnHeadersStopIteration");
        assert_eq!(check(camel_flag.as_bytes()).ok(), Some(1), "the camelCase flag counts");
        let plugin = "kind: WasmPlugin\nmetadata: { name: warden-tools }\nspec:\n  url: oci://r/platform/mcp-acl:1\n  pluginConfig:\n    toolAcl: { servers: [{ name: f, pathPrefix: /mcp/ }], rules: [] }\n";
        let list = format!("apiVersion: v1\nkind: List\nitems:\n- {}", plugin.replace('\n', "\n  "));
        let Err(Refused::Findings(findings)) = check(list.as_bytes()) else { panic!("a List's items are read") };
        assert!(findings[0].contains("WasmPlugin warden-tools"), "{findings:?}");
    }

    #[test]
    fn a_policy_without_the_filters_section_or_its_environment_is_refused() {
        let identity_only = "identity:\n  apiKeys: { keys: [{ sha256: 0d47600bb8f6d6dedba85fdea07bc6392c72496d6fe7f00c06aa1e700bbc42fd, agent: a }] }\n  routes: [{ name: all, agent: [apiKey] }]\n";
        let Err(Refused::Findings(findings)) = check(envoy_config(Some(true), identity_only).as_bytes()) else {
            panic!()
        };
        assert!(findings[0].contains("no toolAcl section"), "{findings:?}");
        let keyed = format!("redaction:\n  hashKey: {{ env: WARDEN_HASH_KEY }}\n{TOOLS}").replace("toolAcl", "toolAcl");
        let config = envoy_config(Some(true), &keyed).replace("warden.tool_acl", "warden.redaction");
        let Err(Refused::Findings(findings)) = check(config.as_bytes()) else { panic!() };
        assert!(findings[0].contains("WARDEN_HASH_KEY") && findings[0].contains("host_env_keys"), "{findings:?}");
        let exposed = config
            .replace("vm_config: {", "vm_config: { environment_variables: { host_env_keys: [WARDEN_HASH_KEY] }, ");
        assert_eq!(check(exposed.as_bytes()).ok(), Some(1), "{exposed}");
    }

    #[test]
    fn a_file_without_a_warden_filter_is_refused() {
        assert!(matches!(check(b"static_resources: {}\n"), Err(Refused::Findings(_))));
    }
}
