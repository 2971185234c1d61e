//! The `redaction` section compiled once per VM: the detectors into their scanners, each
//! class's action, the rules, and the hash key read from the proxy's environment.

use super::capture::CapturePolicy;
use super::catalogue::{Category, Shape, BUILTINS, PLACEHOLDER_PATTERN};
use super::checks::Check;
use super::config::{Action, McpScan, RedactionConfig};
use super::redactor::Direction;
use super::scanner::{DetectorSpec, Scanner};
use crate::decision::{FailureMode, Mode};
use crate::model_api::ModelPaths;
use crate::policy::{AuditFormat, PolicyError};
use crate::principal::Caller;
use crate::tool_acl::config::PrincipalConditions;
use crate::when::PrincipalMatch;
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct CompiledRedaction {
    pub mode: Mode,
    pub failure_mode: FailureMode,
    pub paths: ModelPaths,
    pub max_body_bytes: usize,
    pub max_event_bytes: usize,
    /// The detectors, in the order of `classes`.
    pub requests: Scanner,
    /// The same detectors and, last, this request's placeholders.
    pub answers: Scanner,
    pub classes: Vec<ClassInfo>,
    /// Each detector's action when no rule applies.
    pub actions: Vec<Action>,
    pub rules: Vec<Rule>,
    pub scan_answers: bool,
    pub mcp: Vec<McpServer>,
    pub hash_key: Option<Vec<u8>>,
    pub audit_format: AuditFormat,
    /// What is copied, after redaction, for "what did the agent see?" (off when `None`).
    pub capture: Option<CapturePolicy>,
}

#[derive(Debug, Clone)]
pub struct ClassInfo {
    pub class: String,
    pub category: Category,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    who: PrincipalMatch,
    paths: Vec<String>,
    /// Per detector: the action this rule sets, if any.
    actions: Vec<Option<Action>>,
}

#[derive(Debug, Clone)]
pub struct McpServer {
    pub name: String,
    pub path_prefix: String,
    pub scan: McpScan,
}

/// The actions that apply to one request, and the rule that set them.
#[derive(Debug, Clone)]
pub struct Actions {
    pub per_detector: Vec<Action>,
    pub rule: Option<String>,
}

impl CompiledRedaction {
    pub fn compile(
        config: &RedactionConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CompiledRedaction, PolicyError> {
        for (i, class) in config.disabled.iter().enumerate() {
            if !BUILTINS.iter().any(|b| b.class == class) {
                return Err(PolicyError::at(
                    format!("redaction.disabled[{i}]"),
                    format!("no built-in class {class:?}"),
                ));
            }
        }
        let mut specs: Vec<DetectorSpec> = BUILTINS
            .iter()
            .filter(|b| !config.disabled.iter().any(|d| d == b.class))
            .map(|b| DetectorSpec {
                class: b.class.to_string(),
                category: b.category,
                pattern: b.pattern.to_string(),
                check: b.check,
                shape: b.shape,
                placeholder: false,
                who: None,
            })
            .collect();
        let builtin_count = specs.len();
        for (i, detector) in config.detectors.iter().enumerate() {
            let path = format!("redaction.detectors[{i}]");
            let valid = !detector.class.is_empty()
                && detector.class.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(PolicyError::at(format!("{path}.class"), "use lower-case letters, digits and _"));
            }
            if BUILTINS.iter().any(|b| b.class == detector.class)
                || ["pii", "secret", "custom"].contains(&detector.class.as_str())
            {
                return Err(PolicyError::at(
                    format!("{path}.class"),
                    format!("{:?} is a built-in name", detector.class),
                ));
            }
            let pattern = match (&detector.regex, detector.words.is_empty()) {
                (Some(regex), true) => regex.clone(),
                (None, false) => words_pattern(&detector.words, &path)?,
                _ => return Err(PolicyError::at(&path, "give a regex or words, one of them")),
            };
            specs.push(DetectorSpec {
                class: detector.class.clone(),
                category: Category::Custom,
                pattern,
                check: Check::None,
                shape: Shape::Bounded,
                placeholder: false,
                who: principal(&detector.when, &format!("{path}.when"))?,
            });
        }
        let classes: Vec<ClassInfo> =
            specs.iter().map(|s| ClassInfo { class: s.class.clone(), category: s.category }).collect();
        let pattern_error = |e: super::scanner::PatternError| {
            let at = if e.index >= builtin_count {
                let i = e.index - builtin_count;
                if config.detectors[i].regex.is_some() {
                    format!("redaction.detectors[{i}].regex")
                } else {
                    format!("redaction.detectors[{i}].words")
                }
            } else {
                "redaction".to_string()
            };
            PolicyError::at(at, e.message)
        };
        let answer_specs: Vec<DetectorSpec> = specs
            .iter()
            .cloned()
            .chain(std::iter::once(DetectorSpec {
                class: "placeholder".to_string(),
                category: Category::Custom,
                pattern: PLACEHOLDER_PATTERN.to_string(),
                check: Check::None,
                shape: Shape::Bounded,
                placeholder: true,
                who: None,
            }))
            .collect();
        let requests = Scanner::new(specs).map_err(pattern_error)?;
        let answers = Scanner::new(answer_specs).map_err(pattern_error)?;

        let actions = resolve(&classes, &config.actions, "redaction.actions")?
            .into_iter()
            .map(|a| a.unwrap_or(config.default_action))
            .collect::<Vec<_>>();
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let path = format!("redaction.rules[{i}]");
            for (k, prefix) in rule.paths.iter().enumerate() {
                if !prefix.starts_with('/') {
                    return Err(PolicyError::at(format!("{path}.paths[{k}]"), "must start with /"));
                }
            }
            rules.push(Rule {
                name: rule.name.clone(),
                who: principal(&rule.when, &format!("{path}.when"))?
                    .unwrap_or_else(|| PrincipalMatch::new(&[], &[], &[])),
                paths: rule.paths.clone(),
                actions: resolve(&classes, &rule.actions, &format!("{path}.actions"))?,
            });
        }
        let hashes = actions.contains(&Action::Hash)
            || config.rules.iter().any(|r| r.actions.values().any(|a| *a == Action::Hash));
        let hash_key = match (&config.hash_key, hashes) {
            (None, true) => {
                return Err(PolicyError::at("redaction.hashKey", "the hash action needs a key: { env: NAME }"));
            }
            (None, false) => None,
            (Some(source), _) => match env(&source.env) {
                Some(key) if key.len() >= 16 => Some(key.into_bytes()),
                Some(_) => {
                    return Err(PolicyError::at("redaction.hashKey.env", "the key must be at least 16 bytes"));
                }
                None => {
                    return Err(PolicyError::at(
                        "redaction.hashKey.env",
                        format!(
                            "{:?} is not in the proxy's environment (vm_config.environment_variables.host_env_keys)",
                            source.env
                        ),
                    ));
                }
            },
        };
        for (i, path) in config.paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(PolicyError::at(format!("redaction.paths[{i}]"), "must start with /"));
            }
        }
        let mut mcp = Vec::with_capacity(config.mcp.len());
        for (i, server) in config.mcp.iter().enumerate() {
            if !server.path_prefix.starts_with('/') {
                return Err(PolicyError::at(format!("redaction.mcp[{i}].pathPrefix"), "must start with /"));
            }
            mcp.push(McpServer {
                name: server.name.clone(),
                path_prefix: server.path_prefix.clone(),
                scan: server.scan,
            });
        }
        if config.max_body_bytes == 0 || config.max_event_bytes == 0 {
            return Err(PolicyError::at("redaction.maxBodyBytes", "must be more than 0"));
        }
        Ok(CompiledRedaction {
            mode: config.mode,
            failure_mode: config.failure_mode,
            paths: ModelPaths::new(&config.paths),
            max_body_bytes: config.max_body_bytes,
            max_event_bytes: config.max_event_bytes,
            requests,
            answers,
            classes,
            actions,
            rules,
            scan_answers: config.scan_answers,
            mcp,
            hash_key,
            audit_format: AuditFormat::default(),
            capture: match &config.capture {
                Some(c) => Some(CapturePolicy::compile(c, principal(&c.when, "redaction.capture.when")?)?),
                None => None,
            },
        })
    }

    /// The actions for a caller on a path: the first rule that holds overrides the defaults.
    pub fn actions_for(&self, caller: &Caller, path: &str) -> Actions {
        let rule = self.rules.iter().find(|r| {
            r.who.matches(caller) && (r.paths.is_empty() || r.paths.iter().any(|p| path.starts_with(p.as_str())))
        });
        let per_detector = match rule {
            None => self.actions.clone(),
            Some(rule) => self.actions.iter().zip(&rule.actions).map(|(base, set)| set.unwrap_or(*base)).collect(),
        };
        Actions { per_detector, rule: rule.map(|r| r.name.clone()) }
    }

    /// The detectors a direction's text is scanned with (answers also restore placeholders).
    pub fn scanner(&self, direction: Direction) -> &Scanner {
        match direction {
            Direction::Request => &self.requests,
            Direction::Answer => &self.answers,
        }
    }

    /// The MCP server a path belongs to.
    pub fn mcp_server(&self, path: &str) -> Option<&McpServer> {
        self.mcp.iter().find(|s| path.starts_with(s.path_prefix.as_str()))
    }
}

/// Each class's action from a map keyed by class or category (a class beats its category);
/// a key that is neither is refused.
fn resolve(
    classes: &[ClassInfo],
    map: &BTreeMap<String, Action>,
    path: &str,
) -> Result<Vec<Option<Action>>, PolicyError> {
    for key in map.keys() {
        let known = classes.iter().any(|c| c.class == *key || c.category.as_str() == key);
        if !known {
            return Err(PolicyError::at(
                format!("{path}.{key}"),
                "neither a detector's class nor a category (pii, secret, custom)",
            ));
        }
    }
    Ok(classes.iter().map(|c| map.get(&c.class).or_else(|| map.get(c.category.as_str())).copied()).collect())
}

fn principal(when: &PrincipalConditions, path: &str) -> Result<Option<PrincipalMatch>, PolicyError> {
    if !when.scopes.is_empty() {
        return Err(PolicyError::at(format!("{path}.scopes"), "redaction matches agents, users and tenants only"));
    }
    if when.agents.is_empty() && when.users.is_empty() && when.tenants.is_empty() {
        return Ok(None);
    }
    Ok(Some(PrincipalMatch::new(&when.agents, &when.users, &when.tenants)))
}

/// Words matched whole and case-insensitively; each word's text is literal.
fn words_pattern(words: &[String], path: &str) -> Result<String, PolicyError> {
    let mut alternatives = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let word = word.trim();
        if word.is_empty() {
            return Err(PolicyError::at(format!("{path}.words[{i}]"), "empty"));
        }
        alternatives.push(regex_syntax::escape(word));
    }
    Ok(format!(r"(?i:(?-u:\b)(?:{})(?-u:\b))", alternatives.join("|")))
}
