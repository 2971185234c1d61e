//! A tool call's arguments: their canonical hash (approvals, loop protection, the audit log
//! never see the values) and the constraints rules put on them.

use crate::canonical;
use crate::policy::PolicyError;
use crate::tool_acl::config::ArgumentConstraintConfig;
use crate::tool_acl::file_path;
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
        let value = crate::strict_json::value(text).ok_or("arguments are not JSON a reader agrees on")?;
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

/// What one constraint says of the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Holds,
    Fails,
    /// The value it is about is missing or of a type the constraint cannot judge. A deny rule
    /// applies on such a value (the server might read it as the very thing denied); an allow
    /// or a requirement does not.
    Undecided,
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
    /// Normalised directories of a `path` constraint.
    path_within: Option<Vec<String>>,
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
        let path_within = match &config.path {
            None => None,
            Some(p) if p.within.is_empty() => {
                return Err(PolicyError::at(format!("{path}.path.within"), "name at least one directory"))
            }
            Some(p) => Some(
                p.within
                    .iter()
                    .enumerate()
                    .map(|(i, dir)| {
                        file_path::normalize(dir).ok_or_else(|| {
                            PolicyError::at(
                                format!("{path}.path.within[{i}]"),
                                format!("{dir:?} is not an absolute path"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let checks = [
            config.equals.is_some(),
            config.one_of.is_some(),
            regex.is_some(),
            config.minimum.is_some() || config.maximum.is_some(),
            config.max_length.is_some(),
            path_within.is_some(),
        ];
        if !checks.contains(&true) {
            return Err(PolicyError::at(
                path,
                "a constraint needs at least one of equals, oneOf, regex, minimum, maximum, maxLength, path",
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
            path_within,
            optional: config.optional,
        })
    }

    /// Whether the arguments satisfy this constraint (see [`Check`]).
    pub fn check(&self, arguments: &Value) -> Check {
        let Some(value) = arguments.pointer(&self.pointer) else {
            return if self.optional { Check::Holds } else { Check::Undecided };
        };
        let same_kind = |want: &Value| std::mem::discriminant(want) == std::mem::discriminant(value);
        // Numbers compare by value: `1.0` is `1` to the JavaScript and Python servers that read it.
        let equal = |want: &Value| match (want.as_f64(), value.as_f64()) {
            (Some(a), Some(b)) if want.is_number() && value.is_number() => a == b,
            _ => want == value,
        };
        let mut verdict = Check::Holds;
        let mut judge = |check: Check| {
            verdict = match (verdict, check) {
                (Check::Fails, _) | (_, Check::Fails) => Check::Fails,
                (Check::Undecided, _) | (_, Check::Undecided) => Check::Undecided,
                _ => Check::Holds,
            }
        };
        if let Some(want) = &self.equals {
            judge(match (equal(want), same_kind(want)) {
                (true, _) => Check::Holds,
                (false, true) => Check::Fails,
                (false, false) => Check::Undecided,
            });
        }
        if let Some(set) = &self.one_of {
            judge(match (set.iter().any(equal), set.iter().any(same_kind)) {
                (true, _) => Check::Holds,
                (false, true) => Check::Fails,
                (false, false) => Check::Undecided,
            });
        }
        if let Some(regex) = &self.regex {
            judge(match value.as_str() {
                Some(text) if regex.is_match(text) => Check::Holds,
                Some(_) => Check::Fails,
                None => Check::Undecided,
            });
        }
        if self.minimum.is_some() || self.maximum.is_some() {
            judge(match value.as_f64() {
                Some(n) if self.minimum.is_some_and(|min| n < min) || self.maximum.is_some_and(|max| n > max) => {
                    Check::Fails
                }
                Some(_) => Check::Holds,
                None => Check::Undecided,
            });
        }
        if let Some(max) = self.max_length {
            judge(match value {
                Value::String(s) if s.chars().count() > max => Check::Fails,
                Value::Array(a) if a.len() > max => Check::Fails,
                Value::String(_) | Value::Array(_) => Check::Holds,
                _ => Check::Undecided,
            });
        }
        if let Some(dirs) = &self.path_within {
            judge(match value.as_str().and_then(file_path::normalize) {
                Some(normal) if dirs.iter().any(|dir| file_path::within(&normal, dir)) => Check::Holds,
                Some(_) => Check::Fails,
                None => Check::Undecided,
            });
        }
        verdict
    }

    /// Whether the arguments certainly satisfy this constraint.
    pub fn holds(&self, arguments: &Value) -> bool {
        self.check(arguments) == Check::Holds
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
    fn values_a_constraint_cannot_judge_are_undecided() {
        let args = json!({"path": ["/etc/shadow"], "n": "5", "mode": 1});
        let undecided = |c: Value| constraint(c).check(&args);
        assert_eq!(undecided(json!({"pointer": "/path", "regex": "^/etc"})), Check::Undecided, "wrong type");
        assert_eq!(undecided(json!({"pointer": "/missing", "regex": "^/etc"})), Check::Undecided, "missing");
        assert_eq!(undecided(json!({"pointer": "/n", "maximum": 4})), Check::Undecided);
        assert_eq!(undecided(json!({"pointer": "/mode", "equals": "rw"})), Check::Undecided);
        assert_eq!(undecided(json!({"pointer": "/mode", "equals": 2})), Check::Fails, "same kind, other value");
        assert_eq!(undecided(json!({"pointer": "/mode", "equals": 1.0})), Check::Holds, "1.0 is 1");
        assert_eq!(undecided(json!({"pointer": "/mode", "oneOf": [3, 1.0]})), Check::Holds);
        assert_eq!(undecided(json!({"pointer": "/missing", "equals": 1, "optional": true})), Check::Holds);
    }

    #[test]
    fn path_constraints_compare_normalised_paths() {
        let system = constraint(json!({"pointer": "/path", "path": {"within": ["/etc", "/proc/"]}}));
        for inside in ["/etc/shadow", "/srv/../etc/shadow", "//etc/shadow", "/./etc/passwd", "/proc"] {
            assert_eq!(system.check(&json!({ "path": inside })), Check::Holds, "{inside}");
        }
        for outside in ["/srv/etc/shadow", "/etcetera", "/srv/a/../b"] {
            assert_eq!(system.check(&json!({ "path": outside })), Check::Fails, "{outside}");
        }
        for unplaceable in [json!({"path": "etc/shadow"}), json!({"path": 7}), json!({})] {
            assert_eq!(system.check(&unplaceable), Check::Undecided, "{unplaceable}");
        }
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
        assert_eq!(
            bad(json!({"pointer": "/a", "path": {"within": ["srv"]}})).path,
            "rules[0].arguments[0].path.within[0]"
        );
        assert_eq!(bad(json!({"pointer": "/a", "path": {"within": []}})).path, "rules[0].arguments[0].path.within");
    }
}
