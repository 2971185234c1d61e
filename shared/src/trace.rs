//! Attributes in OpenTelemetry's GenAI and MCP conventions, from the request's audit record.
//!
//! A Wasm filter can set neither span attributes nor dynamic metadata, and once the response
//! has begun Envoy no longer lets it change the request's headers; what it can write at any
//! time is filter state. So when the response has ended, the chain's first filter (identity)
//! reads the record every filter wrote and writes each attribute as a filter-state value of its
//! own (`wasm.warden.trace.<attribute>`), which Envoy's formatters read: the OpenTelemetry access
//! logger's attributes on every supported Envoy, and span `custom_tags` with a `value` on Envoy
//! ≥ 1.37 (see `docs/tracing.md`).

use crate::attributes::AUDIT;
use crate::audit;
use crate::host::{Host, HostError};
use crate::router::config::{ProviderKind, RouterConfig};
use serde_json::{Map, Value};

/// Each attribute's name; its filter-state key is `wasm.warden.trace.<name>`.
pub const ATTRIBUTES: [&str; 15] = [
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.conversation.id",
    "gen_ai.tool.name",
    "mcp.method.name",
    "warden.agent",
    "warden.user",
    "warden.tenant",
    "warden.decision",
    "warden.cost_usd",
    "warden.redaction.classes",
];

/// The property (filter state, under `wasm.`) an attribute is written to.
pub fn property(attribute: &str) -> String {
    format!("warden.trace.{attribute}")
}

/// The sections of the record, in chain order (which decision a refusal names).
const SECTIONS: [&str; 5] = ["identity", "tool_acl", "redaction", "token_budget", "router"];

/// What the attributes need from the policy: each provider's name as OpenTelemetry knows it.
#[derive(Debug, Clone, Default)]
pub struct TraceAttributes {
    /// (the policy's provider name, `gen_ai.provider.name`)
    providers: Vec<(String, String)>,
}

impl TraceAttributes {
    pub fn new(router: Option<&RouterConfig>) -> TraceAttributes {
        let providers = router
            .map(|r| {
                r.providers
                    .iter()
                    .map(|p| {
                        let otel = match p.kind {
                            ProviderKind::Openai => "openai".to_string(),
                            ProviderKind::AzureOpenai => "azure.ai.openai".to_string(),
                            ProviderKind::Anthropic => "anthropic".to_string(),
                            // A self-hosted server has no well-known name: the policy's is used.
                            ProviderKind::OpenaiCompatible => p.name.clone(),
                        };
                        (p.name.clone(), otel)
                    })
                    .collect()
            })
            .unwrap_or_default();
        TraceAttributes { providers }
    }

    /// The attributes the record supports, as (name, value).
    pub fn from_record(&self, record: &Map<String, Value>) -> Vec<(&'static str, String)> {
        let text = |section: &str, key: &str| -> Option<String> {
            let value = record.get(section)?.get(key)?;
            match value {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let calls = record.get("tool_acl").and_then(|t| t.get("calls")).and_then(Value::as_array);
        let first_call = calls.and_then(|c| c.first());
        let call = |key: &str| first_call.and_then(|c| c.get(key)).and_then(Value::as_str).map(String::from);
        let method = call("method");
        let model_call = record.contains_key("router") || record.contains_key("token_budget");
        let operation = match (&method, text("router", "endpoint").as_deref()) {
            (Some(m), _) if m == "tools/call" => Some("execute_tool".to_string()),
            (_, Some("embeddings")) => Some("embeddings".to_string()),
            (_, Some(_)) => Some("chat".to_string()),
            (None, None) if model_call => Some("chat".to_string()),
            _ => None,
        };
        let provider = text("router", "provider")
            .or_else(|| text("token_budget", "provider"))
            .map(|name| self.providers.iter().find(|(p, _)| *p == name).map_or(name, |(_, otel)| otel.clone()));
        let tokens = |key: &str| record.get("token_budget")?.get("tokens")?.get(key)?.as_u64().map(|n| n.to_string());
        let decision = SECTIONS
            .iter()
            .find_map(|s| {
                let verdict = text(s, "verdict")?;
                (verdict == "deny").then(|| format!("deny:{s}:{}", text(s, "reason").unwrap_or_default()))
            })
            .or_else(|| SECTIONS.iter().any(|s| record.contains_key(*s)).then(|| "allow".to_string()));
        let classes = record
            .get("redaction")
            .and_then(|r| r.get("classes"))
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","));
        let values = [
            operation,
            provider,
            text("router", "alias").or_else(|| text("token_budget", "model_requested")),
            text("router", "model").or_else(|| text("token_budget", "model_served")),
            tokens("input"),
            tokens("output"),
            text("principal", "session"),
            call("tool").filter(|_| method.as_deref() == Some("tools/call")),
            method,
            text("principal", "agent"),
            text("principal", "user"),
            text("principal", "tenant"),
            decision,
            text("token_budget", "cost_usd"),
            classes,
        ];
        ATTRIBUTES.iter().zip(values).filter_map(|(name, value)| Some((*name, value?))).collect()
    }

    /// Reads the request's record and writes each attribute it supports (once the response
    /// has ended: the record is complete).
    pub fn write(&self, host: &dyn Host) -> Result<(), HostError> {
        let Some(bytes) = host.property(&[AUDIT])? else { return Ok(()) };
        let Some(record) = audit::decode(&bytes) else { return Ok(()) };
        for (name, value) in self.from_record(&record) {
            host.set_property(&[&property(name)], value.as_bytes())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attributes(record: Value) -> Vec<(&'static str, String)> {
        let router: RouterConfig = serde_json::from_value(json!({
            "providers": [{"name": "main", "kind": "anthropic", "cluster": "c"}, {"name": "local", "kind": "openaiCompatible", "cluster": "c"}],
            "models": [{"alias": "a", "targets": [{"provider": "main", "model": "m"}]}]
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let Value::Object(record) = record else { panic!() };
        TraceAttributes::new(Some(&router)).from_record(&record)
    }

    fn get<'a>(attrs: &'a [(&str, String)], name: &str) -> Option<&'a str> {
        attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_model_call_carries_the_genai_attributes() {
        let attrs = attributes(json!({
            "principal": {"agent": "planner", "tenant": "acme", "session": "s1"},
            "identity": {"verdict": "allow"},
            "token_budget": {"verdict": "allow", "model_requested": "smart", "tokens": {"input": 12, "output": 40}, "cost_usd": 0.0005},
            "router": {"verdict": "allow", "alias": "smart", "endpoint": "chat/completions", "provider": "main", "model": "claude-x"},
        }));
        assert_eq!(get(&attrs, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(get(&attrs, "gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(get(&attrs, "gen_ai.request.model"), Some("smart"));
        assert_eq!(get(&attrs, "gen_ai.response.model"), Some("claude-x"));
        assert_eq!(get(&attrs, "gen_ai.usage.input_tokens"), Some("12"));
        assert_eq!(get(&attrs, "gen_ai.usage.output_tokens"), Some("40"));
        assert_eq!(get(&attrs, "gen_ai.conversation.id"), Some("s1"));
        assert_eq!(get(&attrs, "warden.decision"), Some("allow"));
        assert_eq!(get(&attrs, "warden.cost_usd"), Some("0.0005"));
        assert_eq!(get(&attrs, "gen_ai.tool.name"), None);
    }

    #[test]
    fn an_mcp_tool_call_carries_the_tool_and_method_and_a_refusal_names_its_filter() {
        let attrs = attributes(json!({
            "principal": {"agent": "planner"},
            "tool_acl": {"verdict": "deny", "reason": "denied_by_rule", "calls": [{"method": "tools/call", "tool": "read_file"}]},
        }));
        assert_eq!(get(&attrs, "gen_ai.operation.name"), Some("execute_tool"));
        assert_eq!(get(&attrs, "gen_ai.tool.name"), Some("read_file"));
        assert_eq!(get(&attrs, "mcp.method.name"), Some("tools/call"));
        assert_eq!(get(&attrs, "warden.decision"), Some("deny:tool_acl:denied_by_rule"));
        assert_eq!(get(&attrs, "gen_ai.provider.name"), None);
    }

    #[test]
    fn a_self_hosted_provider_keeps_its_policy_name_and_listing_is_not_a_tool_call() {
        let attrs = attributes(json!({
            "router": {"endpoint": "embeddings", "provider": "local"},
            "tool_acl": {"calls": [{"method": "tools/list"}]},
        }));
        assert_eq!(get(&attrs, "gen_ai.provider.name"), Some("local"));
        assert_eq!(get(&attrs, "gen_ai.operation.name"), Some("embeddings"));
        assert_eq!(get(&attrs, "gen_ai.tool.name"), None);
    }
}
