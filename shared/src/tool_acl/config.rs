//! The `toolAcl` section of the policy document, as written by an operator.

use crate::decision::{FailureMode, Mode};
use crate::duration::PolicyDuration;
use crate::identity::config::IssuerConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolAclConfig {
    /// `enforce` (default) or `shadow`: decide and record, but let denied calls through.
    #[serde(default)]
    pub mode: Mode,
    /// What a runtime fault (shared data unavailable) turns into.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Request bodies above this size are refused with 413 before any of them is forwarded.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Response bodies the filter must read whole (JSON `tools/list` answers, non-streamed
    /// model answers) above this size fail closed.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// JSON-RPC batches with more entries than this are refused.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How a denied `tools/call` is answered: `toolResult` (default, an `isError` result the
    /// model reads) or `jsonRpcError`.
    #[serde(default)]
    pub deny_as: DenyAs,
    /// Requests that match neither an MCP server nor an LLM route: `deny` (default) or `allow`.
    #[serde(default)]
    pub unmatched_routes: Unmatched,
    /// The MCP servers this filter governs.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    /// JSON-RPC methods other than `tools/call` that may reach a server. Globs. The default
    /// lets sessions start (`initialize`, or MCP 2026-07-28's `server/discover`) and list and
    /// read, but nothing else act.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// Who may call which tool. Evaluated all together; see `decision::combine`.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub approvals: Option<ApprovalsConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Model routes whose function tools are governed by the same rules.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}

fn default_max_response_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_batch() -> usize {
    16
}

fn default_methods() -> Vec<String> {
    [
        "initialize",
        "server/discover",
        "ping",
        "notifications/*",
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DenyAs {
    #[default]
    ToolResult,
    JsonRpcError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Unmatched {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerConfig {
    /// The name rules refer to and the access log records.
    pub name: String,
    /// `:authority` values (without port) that reach this server; empty: any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Request paths that reach this server: exact, or a prefix ending in `/`.
    pub path_prefix: String,
    /// Believe the server's `readOnlyHint` / `destructiveHint` annotations.
    #[serde(default)]
    pub trust_annotations: bool,
    /// What a changed tool definition does: `flag` (default), `refuse` or `off`.
    #[serde(default)]
    pub pinning: Pinning,
    /// Risk class per tool name (globs), first match wins: `read`, `write`, `destructive`.
    #[serde(default)]
    pub tools: Vec<ToolRiskConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Pinning {
    #[default]
    Flag,
    Refuse,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolRiskConfig {
    pub name: String,
    pub risk: crate::tool_acl::risk::Risk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RuleEffectConfig {
    Allow,
    Deny,
    Require,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    /// Named in denials and the access log.
    pub id: String,
    pub effect: RuleEffectConfig,
    /// Server names (globs); empty: every server. `llm` names function tools on model routes.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Tool names (globs); empty: every tool.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Whom the rule is about; every condition given must hold for the rule to apply.
    #[serde(default)]
    pub when: PrincipalConditions,
    /// For `require` rules: what the principal must have.
    #[serde(default)]
    pub require: Option<Requirement>,
    /// Conditions on the call's arguments. An `allow` applies only when they all hold, a
    /// `deny` only when they all hold, a `require` is unmet when one fails.
    #[serde(default)]
    pub arguments: Vec<ArgumentConstraintConfig>,
    /// For `allow` rules: what a `write` or `destructive` call additionally needs.
    #[serde(default)]
    pub escalation: EscalationConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrincipalConditions {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Every scope named must have been granted.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Requirement {
    /// Every scope named must have been granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The agent token's `acr` must be one of these.
    #[serde(default)]
    pub acr: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgumentConstraintConfig {
    /// An RFC 6901 JSON pointer into the arguments, e.g. `/path`.
    pub pointer: String,
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    #[serde(default)]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// The string value must match (anchor it yourself with `^…$`).
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub minimum: Option<f64>,
    #[serde(default)]
    pub maximum: Option<f64>,
    /// Maximum length in characters of a string, or of an array.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// The string value is a file path: see [`PathConstraintConfig`].
    #[serde(default)]
    pub path: Option<PathConstraintConfig>,
    /// When the value is absent: `false` (default) fails the constraint.
    #[serde(default)]
    pub optional: bool,
}

/// A file-path check. The value is normalised first (`.` and `..` resolved, `/` repeated or
/// written `\\` collapsed), as the server's file system will read it, so `/srv/../etc/shadow`
/// and `//etc/shadow` are both `/etc/shadow`. A value that is not an absolute path cannot be
/// placed: the constraint is undecided (a deny applies, an allow does not).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathConstraintConfig {
    /// Absolute directories: the path is one of them or inside one.
    pub within: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EscalationConfig {
    #[serde(default = "default_write_escalation")]
    pub write: Escalation,
    #[serde(default = "default_destructive_escalation")]
    pub destructive: Escalation,
    /// What `stepUp` asks of the principal.
    #[serde(default)]
    pub step_up: Option<Requirement>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        Self { write: default_write_escalation(), destructive: default_destructive_escalation(), step_up: None }
    }
}

fn default_write_escalation() -> Escalation {
    Escalation::Allow
}

fn default_destructive_escalation() -> Escalation {
    Escalation::Deny
}

/// What a `write` or `destructive` call needs beyond the rule that allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Escalation {
    Allow,
    /// A step-up: the principal must also meet the rule's `escalation.stepUp`.
    StepUp,
    /// A single-use approval token from the configured approver.
    Approval,
    Deny,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalsConfig {
    /// The approver's issuer; its keys must be inline (`jwks.inline` or `sharedSecret`).
    pub issuer: IssuerConfig,
    /// Approvals living longer than this (`exp - iat`) are refused.
    #[serde(default = "default_approval_max_age")]
    pub max_age: PolicyDuration,
    /// Where an approval travels: `params._meta["warden/approval"]` of the `tools/call`.
    /// Used approval ids are remembered in this many shared-data slots.
    #[serde(default = "default_nonce_slots")]
    pub nonce_slots: usize,
}

fn default_approval_max_age() -> PolicyDuration {
    PolicyDuration::from_secs(300)
}

fn default_nonce_slots() -> usize {
    256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsConfig {
    /// Tool calls allowed per session (or per agent when there is no session); 0: no limit.
    #[serde(default)]
    pub max_calls_per_session: u32,
    /// `write` and `destructive` calls allowed per session; 0: no limit.
    #[serde(default)]
    pub max_write_calls_per_session: u32,
    #[serde(default)]
    pub loop_protection: Option<LoopConfig>,
    /// Shared-data slots for session counters (a bounded ring: see `session_limits`).
    #[serde(default = "default_session_slots")]
    pub session_slots: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_calls_per_session: 0,
            max_write_calls_per_session: 0,
            loop_protection: None,
            session_slots: default_session_slots(),
        }
    }
}

fn default_session_slots() -> usize {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoopConfig {
    /// The same tool with the same arguments more than this many times in `window` is refused.
    pub max_repeats: u32,
    pub window: PolicyDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LlmConfig {
    /// Request paths that are model APIs: exact, or a prefix ending in `/`. The API is told
    /// by the path's end: `/chat/completions`, `/responses`, `/messages`.
    pub paths: Vec<String>,
    /// The server name rules use for function tools.
    #[serde(default = "default_llm_server")]
    pub server: String,
    /// Risk class per function name (globs), first match wins; unnamed functions are `write`.
    #[serde(default)]
    pub tools: Vec<ToolRiskConfig>,
    /// A declared tool the agent may not call: `remove` it from the request (default) or `refuse`.
    #[serde(default)]
    pub declared_tools: DeclaredTools,
    /// A tool call the model returns that the agent may not make: `replace` it with a message
    /// to the agent (default) or `fail` the response.
    #[serde(default)]
    pub tool_calls: ToolCalls,
}

fn default_llm_server() -> String {
    "llm".to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeclaredTools {
    #[default]
    Remove,
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolCalls {
    #[default]
    Replace,
    Fail,
}
