//! The policy document: one schema, a section per capability.
//!
//! Every filter is given the whole document, validates all of it and acts on its own section,
//! so one policy can be handed to every filter in Envoy YAML or an Istio `WasmPlugin`.

use crate::budget::config::TokenBudgetConfig;
use crate::identity::config::IdentityConfig;
use crate::redaction::config::RedactionConfig;
use crate::router::config::RouterConfig;
use crate::tool_acl::config::ToolAclConfig;
use serde::Deserialize;

/// A policy that cannot be used, with the path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl PolicyError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    /// The schema the document is written to (`warden.dev/v1`); optional, and checked when given
    /// so a document written for another version is refused rather than misread.
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    #[serde(default)]
    pub tool_acl: Option<ToolAclConfig>,
    #[serde(default)]
    pub token_budget: Option<TokenBudgetConfig>,
    #[serde(default)]
    pub router: Option<RouterConfig>,
    #[serde(default)]
    pub redaction: Option<RedactionConfig>,
    /// What the body-reading filters do with the request headers while they read the body.
    #[serde(default)]
    pub request_headers: RequestHeaders,
    #[serde(default)]
    pub audit_format: AuditFormat,
    /// Whether identity (the chain's first filter) writes the request's attributes as filter
    /// state (`wasm.warden.trace.<attribute>`) once the response has ended, for Envoy's
    /// formatters: the OTLP log's attributes, span tags on Envoy ≥ 1.37 (see `trace`).
    #[serde(default)]
    pub trace_attributes: bool,
}

/// How the request's audit record (`docs/audit.md`) is stored, and so how Envoy's access log
/// prints it. The same for every filter of a chain (they share one record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditFormat {
    /// JSON text: `%FILTER_STATE(wasm.warden.audit:PLAIN)%` prints it as a JSON string, which
    /// costs Envoy next to nothing.
    #[default]
    Json,
    /// A `google.protobuf.Struct`: `%FILTER_STATE(wasm.warden.audit:TYPED)%` prints it as nested
    /// JSON, which cost Envoy 50-65 µs of CPU per request for the chain (protobuf reflection).
    Struct,
}

/// Whether a filter that must read the request body holds the request headers until it has
/// decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RequestHeaders {
    /// Held until decided: a refused request never opens an upstream stream, and the body may
    /// be edited with its `content-length` kept right, or the route chosen again. Needs the
    /// filter's Envoy `PluginConfig` to set `allow_on_headers_stop_iteration: true` (Envoy ≥
    /// 1.35); without it Envoy never delivers the body and the request hangs.
    #[default]
    Hold,
    /// Sent upstream before the body is read (only the body is held): a refusal resets a
    /// stream the upstream has already seen open, and the route is fixed by the headers.
    Release,
}

impl RequestHeaders {
    pub fn held(self) -> bool {
        self == RequestHeaders::Hold
    }
}

/// The policy schema this Warden reads.
pub const API_VERSION: &str = "warden.dev/v1";

/// Refuses a document written for another schema version, saying which one this Warden reads.
fn check_version(document: &PolicyDocument) -> Result<(), PolicyError> {
    match document.api_version.as_deref() {
        None | Some(API_VERSION) => Ok(()),
        Some(other) if other.starts_with("warden.dev/") => Err(PolicyError::at(
            "apiVersion",
            format!(
                "{other} is not a policy version this Warden reads: it reads {API_VERSION} (see docs/policy.md for what changed)"
            ),
        )),
        Some(other) => Err(PolicyError::at("apiVersion", format!("{other:?} is not a Warden policy version ({API_VERSION})"))),
    }
}

/// Reads a policy given as JSON (first non-blank character `{`) or YAML.
pub fn parse_document(text: &[u8]) -> Result<PolicyDocument, PolicyError> {
    let document = parse_unchecked(text)?;
    check_version(&document)?;
    Ok(document)
}

fn parse_unchecked(text: &[u8]) -> Result<PolicyDocument, PolicyError> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    let result = match first {
        None => return Err(PolicyError::at("(document)", "the policy is empty")),
        Some(b'{') => {
            let mut de = serde_json::Deserializer::from_slice(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| (e.path().to_string(), e.inner().to_string()))
        }
        Some(_) => {
            let de = serde_norway::Deserializer::from_slice(text);
            serde_path_to_error::deserialize(de).map_err(|e| (e.path().to_string(), e.inner().to_string()))
        }
    };
    result.map_err(|(path, message)| {
        let path = if path == "." || path.is_empty() { "(document)".to_string() } else { path };
        // The YAML reader puts the parent's path in front of its own message; ours is more precise.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_string(),
            _ => message,
        };
        PolicyError::at(path, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named_with_its_path_in_yaml() {
        let yaml = b"identity:\n  routes: []\n  issuers:\n    - name: a\n      issuer: b\n      algorithms: [RS256]\n      audience: [x]\n";
        let err = parse_document(yaml).unwrap_err();
        assert_eq!(err.path, "identity.issuers[0].audience");
        assert!(err.message.contains("unknown field `audience`"), "{err}");
    }

    #[test]
    fn unknown_field_is_named_with_its_path_in_json() {
        let json = br#"{"identity":{"routes":[],"mdoe":"shadow"}}"#;
        let err = parse_document(json).unwrap_err();
        assert_eq!(err.path, "identity.mdoe");
        assert!(err.message.contains("unknown field `mdoe`"), "{err}");
    }

    #[test]
    fn unknown_section_is_refused() {
        let err = parse_document(b"identiy: {}\n").unwrap_err();
        assert!(err.message.contains("unknown field `identiy`"), "{err}");
    }

    #[test]
    fn request_headers_are_held_unless_the_policy_releases_them() {
        assert_eq!(parse_document(b"identity: null\n").unwrap().request_headers, RequestHeaders::Hold);
        let released = parse_document(b"requestHeaders: release\n").unwrap();
        assert_eq!(released.request_headers, RequestHeaders::Release);
        let err = parse_document(b"requestHeaders: keep\n").unwrap_err();
        assert_eq!(err.path, "requestHeaders");
        assert!(err.message.contains("hold") && err.message.contains("release"), "{err}");
    }

    #[test]
    fn the_schema_version_is_checked_when_given() {
        assert!(parse_document(b"apiVersion: warden.dev/v1\nidentity: null\n").is_ok());
        let err = parse_document(b"apiVersion: warden.dev/v1alpha1\nidentity: null\n").unwrap_err();
        assert_eq!(err.path, "apiVersion");
        assert!(err.message.contains("warden.dev/v1alpha1") && err.message.contains("reads warden.dev/v1"), "{err}");
        assert!(parse_document(b"apiVersion: v2\n").is_err());
    }

    #[test]
    fn empty_document_is_refused() {
        assert!(parse_document(b"  \n").is_err());
    }
}
