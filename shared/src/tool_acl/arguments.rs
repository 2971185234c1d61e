//! A tool call's arguments: their canonical hash (approvals, loop protection, the audit log
//! never see the values) and the constraints rules put on them.

use crate::canonical;
use crate::policy::PolicyError;
use crate::tool_acl::config::ArgumentConstraintConfig;
use regex_lite::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Arguments read once per call. Bounded by the body limit; a tree is needed here because
/// constraints address values by pointer and the hash needs keys in sorted order.
#[derive(Debug, Clone, PartialEq)]
pub struct Arguments {
    pub value: Value,
    /// Hex SHA-256 of the canonical form: see [`canonical_json`].
    pub sha256: String,
}

impl Arguments {
    /// `None` (no `arguments` member) is the same call as `{}`. A member twice is refused: the
    /// server might read the other one.
    pub fn read(raw: Option<&str>) -> Result<Arguments, String> {
        let text = raw.unwrap_or("{}");
        if !text.trim_start().starts_with('{') {
            return Err("arguments must be a JSON object".into());
        }
        let mut canonical = Vec::with_capacity(text.len());
        canonical::write(text, &[], &mut canonical).map_err(|e| format!("arguments: {e}"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| format!("arguments are not JSON: {e}"))?;
        Ok(Arguments { value, sha256: hex::encode(Sha256::digest(&canonical)) })
    }
}

/// The canonical JSON text of a value (see `crate::canonical`): what an approver hashes.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    // A `Value` always serialises, and its own text is always valid canonical input.
    let _ = canonical::write(&value.to_string(), &[], &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// One compiled constraint on one argument.
#[derive(Debug, Clone)]
pub struct Constraint {
    pub pointer: String,
    equals: Option<Value>,
    one_of: Option<Vec<Value>>,
    regex: Option<Regex>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    max_length: Option<usize>,
    optional: bool,
}

impl Constraint {
    pub fn compile(config: &ArgumentConstraintConfig, path: &str) -> Result<Constraint, PolicyError> {
        if !(config.pointer.is_empty() || config.pointer.starts_with('/')) {
            return Err(PolicyError::at(format!("{path}.pointer"), "a JSON pointer starts with `/`"));
        }
        let regex = match &config.regex {
            None => None,
            Some(pattern) => Some(
                Regex::new(pattern)
                    .map_err(|e| PolicyError::at(format!("{path}.regex"), format!("not a valid regex: {e}")))?,
            ),
        };
        let checks = [
            config.equals.is_some(),
            config.one_of.is_some(),
            regex.is_some(),
            config.minimum.is_some() || config.maximum.is_some(),
            config.max_length.is_some(),
        ];
        if !checks.contains(&true) {
            return Err(PolicyError::at(
                path,
                "a constraint needs at least one of equals, oneOf, regex, minimum, maximum, maxLength",
            ));
        }
        Ok(Constraint {
            pointer: config.pointer.clone(),
            equals: config.equals.clone(),
            one_of: config.one_of.clone(),
            regex,
            minimum: config.minimum,
            maximum: config.maximum,
            max_length: config.max_length,
            optional: config.optional,
        })
    }

    /// Whether the arguments satisfy this constraint. A value of the wrong type fails.
    pub fn holds(&self, arguments: &Value) -> bool {
        let Some(value) = arguments.pointer(&self.pointer) else {
            return self.optional;
        };
        if self.equals.as_ref().is_some_and(|want| want != value) {
            return false;
        }
        if self.one_of.as_ref().is_some_and(|set| !set.contains(value)) {
            return false;
        }
        if let Some(regex) = &self.regex {
            match value.as_str() {
                Some(text) if regex.is_match(text) => {}
                _ => return false,
            }
        }
        if self.minimum.is_some() || self.maximum.is_some() {
            let Some(number) = value.as_f64() else { return false };
            if self.minimum.is_some_and(|min| number < min) || self.maximum.is_some_and(|max| number > max) {
                return false;
            }
        }
        if let Some(max) = self.max_length {
            let length = match value {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                _ => return false,
            };
            if length > max {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn constraint(json: Value) -> Constraint {
        let config: ArgumentConstraintConfig = serde_json::from_value(json).unwrap();
        Constraint::compile(&config, "c").unwrap()
    }

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let a = Arguments::read(Some(r#"{ "b": 1, "a": {"y": [1, 2], "x": "é"} }"#)).unwrap();
        let b = Arguments::read(Some(r#"{"a":{"x":"é","y":[1,2]},"b":1}"#)).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(canonical_json(&a.value), r#"{"a":{"x":"é","y":[1,2]},"b":1}"#);
        assert_eq!(Arguments::read(None).unwrap().sha256, Arguments::read(Some("{}")).unwrap().sha256);
        assert!(Arguments::read(Some("[1]")).is_err());
    }

    #[test]
    fn each_kind_of_constraint() {
        let args = json!({"path": "/srv/public/a.txt", "mode": "r", "n": 5, "tags": ["a", "b"]});
        assert!(constraint(json!({"pointer": "/path", "regex": "^/srv/public/"})).holds(&args));
        assert!(!constraint(json!({"pointer": "/path", "regex": "^/etc/"})).holds(&args));
        assert!(constraint(json!({"pointer": "/mode", "oneOf": ["r", "rw"]})).holds(&args));
        assert!(!constraint(json!({"pointer": "/mode", "equals": "rw"})).holds(&args));
        assert!(constraint(json!({"pointer": "/n", "minimum": 1, "maximum": 5})).holds(&args));
        assert!(!constraint(json!({"pointer": "/n", "maximum": 4})).holds(&args));
        assert!(!constraint(json!({"pointer": "/path", "maximum": 4})).holds(&args), "wrong type fails");
        assert!(constraint(json!({"pointer": "/tags", "maxLength": 2})).holds(&args));
        assert!(!constraint(json!({"pointer": "/path", "maxLength": 3})).holds(&args));
        assert!(!constraint(json!({"pointer": "/missing", "equals": 1})).holds(&args));
        assert!(constraint(json!({"pointer": "/missing", "equals": 1, "optional": true})).holds(&args));
    }

    #[test]
    fn bad_constraints_are_refused_at_configure_time() {
        let bad = |v: Value| {
            let config: ArgumentConstraintConfig = serde_json::from_value(v).unwrap();
            Constraint::compile(&config, "rules[0].arguments[0]").unwrap_err()
        };
        assert_eq!(bad(json!({"pointer": "/a", "regex": "("})).path, "rules[0].arguments[0].regex");
        assert_eq!(bad(json!({"pointer": "a", "equals": 1})).path, "rules[0].arguments[0].pointer");
        assert!(bad(json!({"pointer": "/a"})).message.contains("at least one"));
    }
}
