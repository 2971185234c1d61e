//! The `redaction` section of the policy document, as written.

use crate::decision::{FailureMode, Mode};
use crate::tool_acl::config::PrincipalConditions;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedactionConfig {
    /// `shadow`: detect, record and count what would be done, change nothing.
    #[serde(default)]
    pub mode: Mode,
    /// A body or event that cannot be read (too large, not JSON) is refused (`deny`) or passed.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Model API paths whose requests and answers are scanned (see `model_api`).
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The largest streamed event read; a larger one ends the stream.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Built-in classes turned off (e.g. `ipv4` where addresses are not personal data).
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Detectors of this policy's own.
    #[serde(default)]
    pub detectors: Vec<DetectorConfig>,
    /// What is done with a class that `actions` does not name.
    #[serde(default = "default_action")]
    pub default_action: Action,
    /// Class or category (`pii`, `secret`, `custom`) → action; a class beats its category.
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
    /// Per route and caller: the first rule whose `when` and `paths` hold changes the actions.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Whether model answers are scanned too (placeholders are restored either way).
    #[serde(default = "default_true")]
    pub scan_answers: bool,
    /// MCP servers whose tool calls and results are scanned; opt-in, per server.
    #[serde(default)]
    pub mcp: Vec<McpServerConfig>,
    /// Where the `hash` action's key comes from; never the policy itself.
    #[serde(default)]
    pub hash_key: Option<KeySource>,
    /// A copy of what the agent saw, after redaction, for the callers and routes named (off
    /// when absent; see `capture`).
    #[serde(default)]
    pub capture: Option<CaptureConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaptureConfig {
    /// Whose requests (agents, users, tenants); everyone's when empty.
    #[serde(default)]
    pub when: PrincipalConditions,
    /// Path prefixes (every path this filter reads, when empty).
    #[serde(default)]
    pub paths: Vec<String>,
    /// The share of those requests captured, 0 to 1.
    #[serde(default = "default_sample")]
    pub sample: f64,
    /// The most bytes kept of the request, and of the answer.
    #[serde(default = "default_capture_bytes")]
    pub max_bytes: usize,
}

fn default_sample() -> f64 {
    1.0
}

fn default_capture_bytes() -> usize {
    16 * 1024
}

fn default_paths() -> Vec<String> {
    vec!["/v1/".to_string()]
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_event_bytes() -> usize {
    256 * 1024
}

fn default_action() -> Action {
    Action::Mask
}

fn default_true() -> bool {
    true
}

/// What is done with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Detected and recorded; the text is left alone.
    Record,
    /// The data class is recorded (the router keeps the request on a private provider); the
    /// text is left alone.
    Private,
    /// `[EMAIL]`.
    Mask,
    /// `⟦EMAIL_1⟧`, restored in the answer.
    Placeholder,
    /// `[EMAIL:1f2e3d4c5b6a]`: a keyed HMAC, the same within a tenant.
    Hash,
    /// The request is refused, naming the class.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Record => "record",
            Action::Private => "private",
            Action::Mask => "mask",
            Action::Placeholder => "placeholder",
            Action::Hash => "hash",
            Action::Block => "block",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DetectorConfig {
    /// The class name findings are recorded under (`[a-z0-9_]`).
    pub class: String,
    /// A regular expression whose matches are bounded (`{1,64}`, not `+`).
    #[serde(default)]
    pub regex: Option<String>,
    /// Words or phrases, matched whole and case-insensitively.
    #[serde(default)]
    pub words: Vec<String>,
    /// Only for these callers (per-tenant additions).
    #[serde(default)]
    pub when: PrincipalConditions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub when: PrincipalConditions,
    /// Path prefixes (any, when empty).
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpServerConfig {
    pub name: String,
    pub path_prefix: String,
    /// `record` (detect and record only: masking a tool's arguments can break the tool) or
    /// `enforce` (the actions apply).
    #[serde(default)]
    pub scan: McpScan,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum McpScan {
    #[default]
    Record,
    Enforce,
}

/// A secret's source: the proxy's environment (`vm_config.environment_variables.host_env_keys`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySource {
    pub env: String,
}
