//! `toolAcl` compiled once at configure time: globs, regexes, the approver's keys.

use crate::budget::compile::CompiledTokenBudget;
use crate::budget::config::TokenBudgetConfig;
use crate::decision::{FailureMode, Mode};
use crate::glob::{Glob, GlobSet};
use crate::identity::compile::CompiledIdentity;
use crate::model_api::{ModelPaths, Route};
use crate::policy::AuditFormat;
use crate::policy::PolicyError;
use crate::tool_acl::arguments::Constraint;
use crate::tool_acl::config::*;
use crate::tool_acl::risk::Risk;
use crate::when::PrincipalMatch;
use std::time::Duration;

#[derive(Debug)]
pub struct CompiledToolAcl {
    /// How the audit record is stored (the document's `auditFormat`, set by the filter's root).
    pub audit_format: AuditFormat,
    /// Record the tool calls of every MCP request forwarded, for token-budget's tool-call
    /// budgets (set by the filter's root when the document has such budgets).
    pub record_calls: bool,
    pub mode: Mode,
    pub failure_mode: FailureMode,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    pub max_batch: usize,
    pub deny_as: DenyAs,
    pub unmatched: Unmatched,
    pub servers: Vec<Server>,
    pub methods: GlobSet,
    pub rules: Vec<Rule>,
    pub approvals: Option<Approvals>,
    pub limits: Limits,
    pub llm: Option<Llm>,
}

#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub trust_annotations: bool,
    pub pinning: Pinning,
    pub tools: Vec<(Glob, Risk)>,
}

impl Server {
    /// The class the policy gives `tool`, if it names it.
    pub fn configured_risk(&self, tool: &str) -> Option<Risk> {
        self.tools.iter().find(|(glob, _)| glob.matches(tool)).map(|(_, risk)| *risk)
    }
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub effect: RuleEffectConfig,
    pub servers: GlobSet,
    pub tools: GlobSet,
    /// Whose calls it is about (`when`), with the scopes they must hold.
    pub who: PrincipalMatch,
    pub scopes: Vec<String>,
    pub require: Requirement,
    pub arguments: Vec<Constraint>,
    pub escalation: EscalationConfig,
}

#[derive(Debug)]
pub struct Approvals {
    /// A one-issuer identity policy: approvals are verified by the same JWT code as agents.
    pub verifier: CompiledIdentity,
    pub max_age: Duration,
    pub nonce_slots: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_calls: u32,
    pub max_write_calls: u32,
    pub loop_max_repeats: u32,
    pub loop_window: Duration,
    pub session_slots: usize,
    /// The call limits as budgets of the budget engine (session-windowed `toolCalls` budgets,
    /// counted in its local counters): one engine counts every call, whichever filter asks.
    pub budgets: Option<CompiledTokenBudget>,
}

/// The budget ids tool-acl's call limits are counted under (a `tokenBudget` budget cannot
/// take them).
pub const CALLS_BUDGET: &str = "toolAcl-session-calls";
pub const WRITES_BUDGET: &str = "toolAcl-session-writes";

/// `maxCallsPerSession` and `maxWriteCallsPerSession` as budgets per session (the caller's
/// limit key), for calls of any class and for `write` and `destructive` ones.
fn limit_budgets(config: &LimitsConfig) -> Result<Option<CompiledTokenBudget>, PolicyError> {
    let mut budgets = Vec::new();
    let budget = |id: &str, limit: u32, risks: serde_json::Value| {
        serde_json::json!({"id": id, "scope": ["session"], "unit": "toolCalls", "limit": limit,
                           "window": "session", "when": {"risks": risks}})
    };
    if config.max_calls_per_session > 0 {
        budgets.push(budget(CALLS_BUDGET, config.max_calls_per_session, serde_json::json!([])));
    }
    if config.max_write_calls_per_session > 0 {
        let mutating = serde_json::json!(["write", "destructive"]);
        budgets.push(budget(WRITES_BUDGET, config.max_write_calls_per_session, mutating));
    }
    if budgets.is_empty() {
        return Ok(None);
    }
    let section = serde_json::json!({"budgets": budgets, "slots": config.session_slots.max(1), "sessionIdle": "1h"});
    let section: TokenBudgetConfig = serde_json::from_value(section)
        .map_err(|e| PolicyError::at("toolAcl.limits", format!("cannot be counted: {e}")))?;
    CompiledTokenBudget::compile(&section).map(Some)
}

impl Limits {
    pub fn any(&self) -> bool {
        self.max_calls > 0 || self.max_write_calls > 0 || self.loop_max_repeats > 0
    }
}

#[derive(Debug)]
pub struct Llm {
    pub paths: ModelPaths,
    pub server: String,
    pub tools: Vec<(Glob, Risk)>,
    pub declared_tools: DeclaredTools,
    pub tool_calls: ToolCalls,
}

/// Exact path, or a prefix when the configured value ends in `/`. The query is ignored.
pub fn path_matches(configured: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    if configured.ends_with('/') {
        path.starts_with(configured) || path == configured.trim_end_matches('/')
    } else {
        path == configured
    }
}

impl CompiledToolAcl {
    pub fn compile(config: &ToolAclConfig) -> Result<CompiledToolAcl, PolicyError> {
        let mut servers = Vec::with_capacity(config.servers.len());
        for (i, server) in config.servers.iter().enumerate() {
            let path = format!("toolAcl.servers[{i}]");
            if server.name.is_empty() {
                return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
            }
            if servers.iter().any(|s: &Server| s.name == server.name) {
                return Err(PolicyError::at(
                    format!("{path}.name"),
                    format!("server {:?} is named twice", server.name),
                ));
            }
            if !server.path_prefix.starts_with('/') {
                return Err(PolicyError::at(format!("{path}.pathPrefix"), "a path starts with `/`"));
            }
            servers.push(Server {
                name: server.name.clone(),
                hosts: server.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                path_prefix: server.path_prefix.clone(),
                trust_annotations: server.trust_annotations,
                pinning: server.pinning,
                tools: server.tools.iter().map(|t| (Glob::new(&t.name), t.risk)).collect(),
            });
        }
        let llm = match &config.llm {
            None => None,
            Some(llm) => {
                if llm.paths.is_empty() || llm.paths.iter().any(|p| !p.starts_with('/')) {
                    return Err(PolicyError::at("toolAcl.llm.paths", "name at least one path, each starting with `/`"));
                }
                Some(Llm {
                    paths: ModelPaths::new(&llm.paths),
                    server: llm.server.clone(),
                    tools: llm.tools.iter().map(|t| (Glob::new(&t.name), t.risk)).collect(),
                    declared_tools: llm.declared_tools,
                    tool_calls: llm.tool_calls,
                })
            }
        };
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            rules.push(compile_rule(rule, &format!("toolAcl.rules[{i}]"), &servers, llm.as_ref())?);
        }
        let approvals = match &config.approvals {
            None => None,
            Some(approvals) => Some(Approvals {
                verifier: CompiledIdentity::approver(&approvals.issuer, "toolAcl.approvals.issuer")?,
                max_age: approvals.max_age.as_duration(),
                nonce_slots: approvals.nonce_slots.max(1),
            }),
        };
        if approvals.is_none() {
            if let Some(i) = config.rules.iter().position(|r| {
                r.escalation.write == Escalation::Approval || r.escalation.destructive == Escalation::Approval
            }) {
                return Err(PolicyError::at(
                    format!("toolAcl.rules[{i}].escalation"),
                    "asks for an approval, but toolAcl.approvals names no approver",
                ));
            }
        }
        let limits = &config.limits;
        let loop_protection = limits.loop_protection.as_ref();
        if loop_protection.is_some_and(|l| l.max_repeats == 0) {
            return Err(PolicyError::at("toolAcl.limits.loopProtection.maxRepeats", "must be at least 1"));
        }
        if loop_protection.is_some_and(|l| l.max_repeats as usize > crate::tool_acl::limits::RECENT_CALLS) {
            return Err(PolicyError::at(
                "toolAcl.limits.loopProtection.maxRepeats",
                format!("must be at most {}", crate::tool_acl::limits::RECENT_CALLS),
            ));
        }
        if config.max_batch == 0 {
            return Err(PolicyError::at("toolAcl.maxBatch", "must be at least 1"));
        }
        let limits = Limits {
            max_calls: limits.max_calls_per_session,
            max_write_calls: limits.max_write_calls_per_session,
            loop_max_repeats: loop_protection.map_or(0, |l| l.max_repeats),
            loop_window: loop_protection.map_or(Duration::ZERO, |l| l.window.as_duration()),
            session_slots: limits.session_slots.max(1),
            budgets: limit_budgets(limits)?,
        };
        Ok(CompiledToolAcl {
            audit_format: AuditFormat::default(),
            record_calls: false,
            mode: config.mode,
            failure_mode: config.failure_mode,
            max_body_bytes: config.max_body_bytes,
            max_response_bytes: config.max_response_bytes,
            max_batch: config.max_batch,
            deny_as: config.deny_as,
            unmatched: config.unmatched_routes,
            servers,
            methods: GlobSet::new(&config.methods),
            rules,
            approvals,
            limits,
            llm,
        })
    }

    /// The index in `servers` of the MCP server a request is addressed to, by `:authority` and
    /// path.
    pub fn server_index(&self, authority: &str, path: &str) -> Option<usize> {
        let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        });
        self.servers.iter().position(|s| {
            (s.hosts.is_empty() || s.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
                && path_matches(&s.path_prefix, path)
        })
    }

    pub fn is_llm_path(&self, path: &str) -> bool {
        self.llm_route(path) != Route::Other
    }

    /// What a path is among the policy's model paths.
    pub fn llm_route(&self, path: &str) -> Route {
        self.llm.as_ref().map_or(Route::Other, |llm| llm.paths.classify(path))
    }
}

fn compile_rule(config: &RuleConfig, path: &str, servers: &[Server], llm: Option<&Llm>) -> Result<Rule, PolicyError> {
    if config.id.is_empty() {
        return Err(PolicyError::at(format!("{path}.id"), "must not be empty"));
    }
    // A server name that matches nothing is a typo that would silently never apply.
    for (i, name) in config.servers.iter().enumerate() {
        let glob = Glob::new(name);
        let known = servers.iter().any(|s| glob.matches(&s.name)) || llm.is_some_and(|l| glob.matches(&l.server));
        if !known {
            return Err(PolicyError::at(format!("{path}.servers[{i}]"), format!("no server is named {name:?}")));
        }
    }
    let require = config.require.clone().unwrap_or_default();
    let escalation = &config.escalation;
    let asks_step_up = escalation.write == Escalation::StepUp || escalation.destructive == Escalation::StepUp;
    match &escalation.step_up {
        None if asks_step_up => {
            return Err(PolicyError::at(format!("{path}.escalation.stepUp"), "stepUp is used but not described"))
        }
        Some(step) if step.scopes.is_empty() && step.acr.is_empty() => {
            return Err(PolicyError::at(format!("{path}.escalation.stepUp"), "name scopes or acr values"))
        }
        Some(_) if !asks_step_up => {
            return Err(PolicyError::at(
                format!("{path}.escalation.stepUp"),
                "described but neither write nor destructive uses it",
            ))
        }
        _ => {}
    }
    match config.effect {
        RuleEffectConfig::Require
            if require.scopes.is_empty() && require.acr.is_empty() && config.arguments.is_empty() =>
        {
            return Err(PolicyError::at(
                format!("{path}.require"),
                "a require rule needs scopes, acr or argument constraints",
            ))
        }
        RuleEffectConfig::Allow | RuleEffectConfig::Deny if config.require.is_some() => {
            return Err(PolicyError::at(format!("{path}.require"), "only a require rule has requirements"))
        }
        _ => {}
    }
    let arguments = config
        .arguments
        .iter()
        .enumerate()
        .map(|(i, c)| Constraint::compile(c, &format!("{path}.arguments[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        id: config.id.clone(),
        effect: config.effect,
        servers: GlobSet::new(&config.servers),
        tools: GlobSet::new(&config.tools),
        who: PrincipalMatch::new(&config.when.agents, &config.when.users, &config.when.tenants),
        scopes: config.when.scopes.clone(),
        require,
        arguments,
        escalation: config.escalation.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_exactly_or_by_prefix() {
        assert!(path_matches("/mcp", "/mcp"));
        assert!(path_matches("/mcp", "/mcp?x=1"));
        assert!(!path_matches("/mcp", "/mcp2"));
        assert!(path_matches("/mcp/", "/mcp/files"));
        assert!(path_matches("/mcp/", "/mcp"));
        assert!(!path_matches("/mcp/", "/mcpx"));
    }
}
