//! `wardenctl render istio`: one namespace's Istio manifests from a policy.
//!
//! - identity, which reads no body, is a `WasmPlugin` (AUTHN phase, fail closed);
//! - the body-reading filters (tool-acl, redaction, token-budget, the router) are one
//!   `EnvoyFilter`: a WasmPlugin cannot set `allow_on_headers_stop_iteration`, which holding the
//!   request headers while the body is read needs. Each is an `EXTENSION_CONFIG` (delivered over
//!   ECDS, the image pulled by Istio's agent) and an `HTTP_FILTER` patch before Envoy's router, in
//!   chain order, all from the one-module `warden` image in one VM;
//! - with a router (gateways only): its providers' hop (the `warden_providers` cluster whose
//!   upstream filter, the attempt plugin, alone holds the provider keys and comes over ECDS like
//!   the others; the internal listener; the model route's retries);
//! - for every host outside the mesh a `cluster:` of the policy names, a `ServiceEntry` and a
//!   `DestinationRule` originating TLS, the certificate checked for the host's name.
//!
//! Where it applies: `--selector` picks workloads (sidecars, or a gateway Deployment's labels),
//! `--gateway` a Kubernetes Gateway (`targetRefs`); neither means every workload of the
//! namespace (the whole mesh in Istio's root namespace). The policy is compiled first, and every
//! Wasm config goes through `validate --envoy`'s checks before anything is printed.

use crate::envoy_check;
use crate::Failure;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use warden_policy::compiled_policy::CompiledPolicy;
use warden_policy::root_ids;

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HCM: &str = "envoy.filters.network.http_connection_manager";

/// What `render istio` was asked for.
pub struct Target<'a> {
    pub namespace: &'a str,
    /// `key=value` workload labels.
    pub selector: &'a [String],
    /// A Kubernetes Gateway (gateway.networking.k8s.io) in the namespace.
    pub gateway: Option<&'a str>,
    /// The selected workloads are gateways (Envoy's GATEWAY context), not sidecars.
    pub gateway_workload: bool,
    /// Image references are `<images>/<image>:<tag>`.
    pub images: &'a str,
    pub tag: &'a str,
    /// The route (its Istio name) whose requests the router sends to the providers.
    pub model_route: Option<&'a str>,
}

impl Target<'_> {
    fn context(&self) -> &'static str {
        if self.gateway.is_some() || self.gateway_workload {
            "GATEWAY"
        } else {
            "SIDECAR_INBOUND"
        }
    }

    fn image(&self, name: &str) -> String {
        format!("{}/{name}:{}", self.images.trim_end_matches('/'), self.tag)
    }

    /// `selector`/`workloadSelector` or `targetRefs`, whichever was asked for.
    fn attachment(&self, selector_key: &str) -> Result<Value, Failure> {
        if let Some(gateway) = self.gateway {
            if !self.selector.is_empty() {
                return Err(Failure::usage(
                    "--gateway and --selector: give one (Istio takes one of targetRefs or a selector)",
                ));
            }
            return Ok(
                json!({"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": gateway}]}),
            );
        }
        if self.selector.is_empty() {
            return Ok(json!({}));
        }
        let mut labels = serde_json::Map::new();
        for pair in self.selector {
            let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(Failure::usage(format!("--selector {pair:?}: expected KEY=VALUE")));
            };
            labels.insert(key.to_string(), Value::from(value));
        }
        let labels = Value::Object(labels);
        Ok(match selector_key {
            "selector" => json!({"selector": {"matchLabels": labels}}),
            _ => json!({"workloadSelector": {"labels": labels}}),
        })
    }
}

fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// The manifests, as one multi-document YAML stream.
pub fn render(policy_path: &Path, target: &Target) -> Result<String, Failure> {
    let text = crate::read(policy_path)?;
    let compiled = crate::compile(policy_path)?;
    let policy_text = String::from_utf8(text).map_err(|e| Failure::usage(format!("{}: {e}", policy_path.display())))?;
    let policy_value = Value::deserialize(serde_norway::Deserializer::from_str(&policy_text))
        .map_err(|e| Failure::usage(format!("{}: {e}", policy_path.display())))?;
    let namespace = target.namespace;
    if !is_dns_label(namespace) {
        return Err(Failure::usage(format!("--namespace {namespace:?}: not a Kubernetes namespace name")));
    }
    if target.gateway_workload && target.selector.is_empty() {
        return Err(Failure::usage(
            "--gateway-workload needs --selector naming the gateway's labels (without it the identity WasmPlugin \
             would apply to every workload of the namespace, the whole mesh in the root namespace)",
        ));
    }
    if compiled.router.is_some() && target.context() == "SIDECAR_INBOUND" {
        return Err(Failure::usage(
            "the policy has a router: render it for a gateway (--gateway, or --selector with --gateway-workload); a \
             sidecar's inbound routes are all named `default`, so the model route cannot be told apart",
        ));
    }
    let environment = compiled.environment();
    if let Some(bad) = environment.iter().find(|name| !is_env_name(name)) {
        return Err(Failure::refused(format!("environment variable {bad:?}: not a plain variable name")));
    }
    let mut documents: Vec<(String, Value)> = Vec::new();
    if compiled.identity.is_some() {
        documents.push((
            "identity reads no body: a WasmPlugin, first (AUTHN), failing closed".into(),
            identity_plugin(&policy_value, target)?,
        ));
    }
    let chain = chain_filters(&compiled);
    let mut findings = Vec::new();
    if !chain.is_empty() {
        let filter = chain_envoy_filter(&compiled, &chain, &policy_text, target)?;
        for patch in filter.pointer("/spec/configPatches").and_then(Value::as_array).into_iter().flatten() {
            if let Some(config) = patch.pointer("/patch/value/typed_config/config") {
                envoy_check::check_wasm(config, &mut findings);
            }
            let upstream = patch.pointer("/patch/value/typed_extension_protocol_options").and_then(|o| o.as_object());
            for options in upstream.into_iter().flat_map(|o| o.values()) {
                for http_filter in options.get("http_filters").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(config) = http_filter.pointer("/typed_config/config") {
                        envoy_check::check_wasm(config, &mut findings);
                    }
                }
            }
        }
        documents
            .push(("the body-reading filters: an EnvoyFilter, which can set the header flag they need".into(), filter));
    }
    let mut clusters = Vec::new();
    clusters_named(&policy_value, &mut clusters);
    clusters.sort();
    clusters.dedup();
    for cluster in &clusters {
        let Some((port, host)) = external_host(cluster) else { continue };
        if !is_dns_name(host) {
            return Err(Failure::refused(format!("cluster {cluster:?}: {host:?} is not a DNS name")));
        }
        if port == 443 && target.context() == "SIDECAR_INBOUND" {
            return Err(Failure::refused(format!(
                "cluster {cluster:?}: on sidecars an HTTP entry on port 443 would make the workload's own outbound \
                 port 443 plain HTTP; name another port (outbound|8443||{host}: the entry forwards it to 443 with TLS)"
            )));
        }
        documents.extend(external_service(host, port, namespace));
    }
    if !findings.is_empty() {
        return Err(Failure::refused(findings.join("\n")));
    }
    if documents.is_empty() {
        return Err(Failure::refused(format!("{}: the policy has no section to deploy", policy_path.display())));
    }
    let digest = hex::encode(&Sha256::digest(policy_text.as_bytes())[..8]);
    let mut out = format!(
        "# Rendered by wardenctl {} from {} (sha256 {digest}…) for namespace {namespace}.\n\
         # Needs Istio >= 1.27 (its Envoy must have allow_on_headers_stop_iteration; see examples/istio/README.md).\n",
        env!("CARGO_PKG_VERSION"),
        policy_path.display(),
    );
    if !environment.is_empty() {
        out.push_str(&format!(
            "# The proxy's environment must carry {} (from a Kubernetes Secret, never the policy).\n",
            environment.join(", ")
        ));
    }
    for (why, document) in documents {
        let yaml = crate::yaml_out::to_string(&document);
        // A comment is one line of plain text, whatever a name in it holds.
        let why: String = why.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        out.push_str(&format!("---\n# {why}\n{yaml}"));
    }
    Ok(out)
}

fn metadata(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "warden"}})
}

fn identity_plugin(policy: &Value, target: &Target) -> Result<Value, Failure> {
    let mut spec = object(target.attachment("selector")?);
    spec.extend(object(json!({
        "url": target.image("identity"),
        "imagePullPolicy": "IfNotPresent",
        "phase": "AUTHN",
        "type": "HTTP",
        // A filter that cannot load refuses traffic instead of passing it unauthenticated.
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": policy,
    })));
    if target.context() == "SIDECAR_INBOUND" {
        // Requests to the workload only: its own outbound calls are not agents calling it.
        spec.insert("match".into(), json!([{"mode": "SERVER"}]));
    }
    Ok(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata("warden-identity", target.namespace),
        "spec": spec,
    }))
}

/// The root ids of the body-reading filters the policy has, in chain order.
fn chain_filters(compiled: &CompiledPolicy) -> Vec<&'static str> {
    [
        (root_ids::TOOL_ACL, compiled.tool_acl.is_some()),
        (root_ids::REDACTION, compiled.redaction.is_some()),
        (root_ids::TOKEN_BUDGET, compiled.token_budget.is_some()),
        (root_ids::ROUTER, compiled.router.is_some()),
    ]
    .into_iter()
    .filter_map(|(id, present)| present.then_some(id))
    .collect()
}

fn wasm_config(root_id: &str, vm_id: &str, image: String, env: &[String], policy: &str) -> Value {
    let mut vm_config = json!({
        "vm_id": vm_id,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"remote": {"http_uri": {"uri": image, "timeout": "30s"}}},
    });
    if !env.is_empty() {
        vm_config["environment_variables"] = json!({"host_env_keys": env});
    }
    json!({
        "@type": WASM_TYPE,
        "config": {
            "name": root_id,
            "root_id": root_id,
            "fail_open": false,
            "allow_on_headers_stop_iteration": true,
            "vm_config": vm_config,
            "configuration": {"@type": STRING_TYPE, "value": policy},
        },
    })
}

fn chain_envoy_filter(
    compiled: &CompiledPolicy,
    chain: &[&str],
    policy: &str,
    target: &Target,
) -> Result<Value, Failure> {
    let context = target.context();
    // The chain's VM sees only the redaction hash key; provider keys go to the attempt plugin.
    let chain_env: Vec<String> = compiled
        .document
        .redaction
        .as_ref()
        .and_then(|r| r.hash_key.as_ref())
        .map(|k| vec![k.env.clone()])
        .unwrap_or_default();
    // ECDS names are one space per proxy, and a VM's shared data (counters, sessions) is its
    // vm_id's: both carry the namespace, so a mesh-wide baseline and a namespace's own policy on
    // one workload neither replace nor share each other's.
    let vm_id = format!("warden.{}", target.namespace);
    let mut patches = Vec::new();
    for root_id in chain {
        patches.push(json!({
            "applyTo": "EXTENSION_CONFIG",
            "patch": {"operation": "ADD", "value": {
                "name": ecds_name(target.namespace, root_id),
                "typed_config": wasm_config(root_id, &vm_id, target.image("warden"), &chain_env, policy),
            }},
        }));
    }
    for root_id in chain {
        patches.push(json!({
            "applyTo": "HTTP_FILTER",
            "match": {"context": context, "listener": {"filterChain": {"filter": {
                "name": HCM, "subFilter": {"name": "envoy.filters.http.router"}}}}},
            "patch": {"operation": "INSERT_BEFORE", "value": discovered(&ecds_name(target.namespace, root_id))},
        }));
    }
    if let Some(router) = &compiled.router {
        let Some(route) = target.model_route else {
            return Err(Failure::usage(
                "the policy has a router: --model-route must name the route (its Istio name) that carries model calls",
            ));
        };
        let keys: Vec<String> =
            router.router.providers.iter().filter_map(|p| p.credential.as_ref()?.env.clone()).collect();
        patches.extend(providers_hop(target, route, &keys, policy));
    }
    let mut spec = object(target.attachment("workloadSelector")?);
    spec.insert("configPatches".into(), Value::Array(patches));
    Ok(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata("warden-chain", target.namespace),
        "spec": spec,
    }))
}

/// The router's providers' hop (see filters/router/README.md): the model route goes to
/// `warden_providers`, whose upstream filter (the attempt plugin, the only VM with the provider
/// keys) shapes each attempt for an internal listener that routes it to the provider's cluster.
fn providers_hop(target: &Target, route: &str, keys: &[String], policy: &str) -> Vec<Value> {
    let context = target.context();
    let attempt = root_ids::ROUTER_ATTEMPT;
    let attempt_name = ecds_name(target.namespace, attempt);
    let vm_id = format!("{attempt}.{}", target.namespace);
    let mut attempt_config = wasm_config(attempt, &vm_id, target.image("router"), keys, policy);
    // The attempt plugin runs on the upstream request: its headers are never held.
    if let Some(config) = attempt_config.get_mut("config").and_then(Value::as_object_mut) {
        config.remove("allow_on_headers_stop_iteration");
    }
    vec![
        // Delivered over ECDS like the chain's filters: Istio's agent fetches an `oci://` module
        // only for ECDS resources; inline in a cluster, Envoy would be handed the URL itself.
        json!({
            "applyTo": "EXTENSION_CONFIG",
            "patch": {"operation": "ADD", "value": {"name": attempt_name, "typed_config": attempt_config}},
        }),
        json!({
            "applyTo": "HTTP_ROUTE",
            "match": {"context": context, "routeConfiguration": {"vhost": {"route": {"name": route}}}},
            "patch": {"operation": "MERGE", "value": {"route": {
                "cluster": "warden_providers",
                "timeout": "600s",
                "retry_policy": {
                    "retry_on": "5xx,reset,connect-failure,retriable-status-codes",
                    "retriable_status_codes": [429],
                    "num_retries": 4,
                    "per_try_idle_timeout": "300s",
                    "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.02s"},
                },
            }}},
        }),
        json!({
            "applyTo": "CLUSTER",
            "match": {"context": context},
            "patch": {"operation": "ADD", "value": {
                "name": "warden_providers",
                // Every model request and retry goes through this one cluster: Envoy's default
                // limits (3 retries in flight) would turn failover off under load.
                "circuit_breakers": {"thresholds": [{
                    "max_connections": 100000, "max_pending_requests": 100000,
                    "max_requests": 100000, "max_retries": 100000}]},
                "load_assignment": {"cluster_name": "warden_providers", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": "warden_providers_hop"}}}}
                ]}]},
                "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http_protocol_options": {}},
                    "http_filters": [
                        discovered(&attempt_name),
                        {"name": "envoy.filters.http.upstream_codec", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
                    ],
                }},
            }},
        }),
        json!({
            "applyTo": "LISTENER",
            "match": {"context": context},
            "patch": {"operation": "ADD", "value": {
                "name": "warden_providers_hop",
                "internal_listener": {},
                "filter_chains": [{"filters": [{"name": HCM, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "warden_providers_hop",
                    "normalize_path": true,
                    "merge_slashes": true,
                    "path_with_escaped_slashes_action": "REJECT_REQUEST",
                    "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
                    "local_reply_config": {"mappers": [{
                        "filter": {"response_flag_filter": {}},
                        "headers_to_add": [{"header": {"key": "x-warden-no-answer", "value": "%RESPONSE_FLAGS%"},
                                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                    }]},
                    "route_config": {"name": "warden_provider_routes", "virtual_hosts": [{
                        "name": "providers", "domains": ["*"],
                        "routes": [{
                            "match": {"prefix": "/"},
                            // Istio's provider clusters (ServiceEntries) originate TLS with the right SNI.
                            "route": {"cluster_header": "x-warden-cluster", "timeout": "0s", "auto_host_rewrite": true},
                            "request_headers_to_remove": ["x-warden-cluster"],
                        }],
                    }]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                }}]}],
            }},
        }),
    ]
}

/// A filter's ECDS name on the proxy.
fn ecds_name(namespace: &str, root_id: &str) -> String {
    format!("{namespace}.{root_id}")
}

/// A filter whose config comes over ECDS (Istio serves EXTENSION_CONFIG patches there).
fn discovered(name: &str) -> Value {
    json!({
        "name": name,
        "config_discovery": {
            "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
            "type_urls": [WASM_TYPE],
        },
    })
}

/// RFC 1123 label: a namespace.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A host name (labels of letters, digits and hyphens), nothing a manifest could be bent with.
fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|label| is_dns_label(&label.to_ascii_lowercase()))
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every Envoy cluster the policy names (`cluster:` keys: key sets, providers, the rate-limit
/// service), wherever the section keeps it.
fn clusters_named(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("cluster", Value::String(name)) => out.push(name.clone()),
                    _ => clusters_named(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| clusters_named(item, out)),
        _ => {}
    }
}

/// `outbound|443||api.openai.com` names a host outside the cluster: (443, "api.openai.com").
/// In-mesh services (`*.svc.cluster.local`, `*.svc`) need no entry.
fn external_host(cluster: &str) -> Option<(u16, &str)> {
    let rest = cluster.strip_prefix("outbound|")?;
    let (port, rest) = rest.split_once('|')?;
    let host = rest.strip_prefix('|')?;
    let in_mesh = host.ends_with(".svc") || host.contains(".svc.");
    (!in_mesh && !host.is_empty()).then_some((port.parse().ok()?, host))
}

/// A host outside the mesh (a provider, a key set's issuer) as the mesh sees it: the filters
/// speak plain HTTP to the cluster and the proxy originates TLS to the host's 443, its
/// certificate checked for the host's name, so a provider key or a key set never crosses the
/// network in the clear or to another host.
fn external_service(host: &str, port: u16, namespace: &str) -> Vec<(String, Value)> {
    let name = format!("warden-{}-{port}", host.replace('.', "-"));
    // The host's HTTPS port is 443; a cluster on another port is forwarded there.
    let mut service_port = json!({"number": port, "name": "http-tls-origination", "protocol": "HTTP"});
    if port != 443 {
        service_port["targetPort"] = json!(443);
    }
    vec![
        (
            format!("the cluster outbound|{port}||{host} the policy names"),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": metadata(&name, namespace),
                "spec": {
                    "hosts": [host],
                    "ports": [service_port],
                    "resolution": "DNS",
                    "location": "MESH_EXTERNAL",
                    // Only this namespace's proxies see the entry.
                    "exportTo": ["."],
                },
            }),
        ),
        (
            format!("TLS to {host}, originated by the proxy"),
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": metadata(&name, namespace),
                "spec": {
                    "host": host,
                    "exportTo": ["."],
                    "trafficPolicy": {"portLevelSettings": [{
                        "port": {"number": port},
                        // The certificate must name the host: with an explicit SNI Istio does
                        // not check the name by itself, and any trusted certificate would do.
                        "tls": {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host]},
                    }]},
                },
            }),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_hosts_are_named_by_their_cluster() {
        assert_eq!(external_host("outbound|443||api.openai.com"), Some((443, "api.openai.com")));
        assert_eq!(external_host("outbound|8000||vllm.models.svc.cluster.local"), None);
        assert_eq!(external_host("openai"), None);
        assert_eq!(external_host("outbound|x||api.openai.com"), None);
    }
}
