//! The policy document: one schema, a section per capability.
//!
//! Every filter is given the whole document, validates all of it and acts on its own section,
//! so one policy can be handed to every filter in Envoy YAML or an Istio `WasmPlugin`.

use crate::budget::config::TokenBudgetConfig;
use crate::identity::config::IdentityConfig;
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
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    #[serde(default)]
    pub tool_acl: Option<ToolAclConfig>,
    #[serde(default)]
    pub token_budget: Option<TokenBudgetConfig>,
}

/// Reads a policy given as JSON (first non-blank character `{`) or YAML.
pub fn parse_document(text: &[u8]) -> Result<PolicyDocument, PolicyError> {
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
    fn empty_document_is_refused() {
        assert!(parse_document(b"  \n").is_err());
    }
}
