//! The `tokenBudget` section of the policy document, as written by an operator.

use crate::decision::Mode;
use crate::duration::PolicyDuration;
use serde::Deserialize;
pub use warden_rls::{Unit, Window};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenBudgetConfig {
    /// `enforce` (default) or `shadow`: reserve, settle and record, but never refuse.
    #[serde(default)]
    pub mode: Mode,
    /// Request paths that are model APIs: exact, or a prefix ending in `/`. Under a prefix,
    /// Chat Completions (`chat/completions`), Responses (`responses`) and Anthropic Messages
    /// (`messages`) are metered; any other API there (`completions`, `assistants`, `batches`,
    /// `embeddings`, ...) cannot be, so a request that could generate tokens (anything but
    /// GET, HEAD, OPTIONS and DELETE, and every upgrade) is refused. Other paths pass.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// Request bodies above this size are refused with 413 before any of them is forwarded.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Non-streamed answers are copied (not held) up to this size to read their `usage`; a
    /// longer one is settled from what was counted.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// The output cap written into requests that set none. Without it such a request reserves
    /// no output, and a stream is cut when a budget runs out mid-answer.
    #[serde(default)]
    pub default_max_output_tokens: Option<u32>,
    /// Tokenizer and price per model, first match wins. Names are globs (`gpt-4o*`).
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    pub budgets: Vec<BudgetConfig>,
    /// Prices of MCP tool calls (USD per call), first match wins: what a `costUsd` budget
    /// counts for a call, so one budget covers model and tool spend.
    #[serde(default)]
    pub tools: Vec<ToolPriceConfig>,
    /// Where `store: global` budgets are counted: an Envoy rate-limit service (RLS v3).
    #[serde(default)]
    pub rate_limit_service: Option<RateLimitServiceConfig>,
    /// Local budgets keep at most `slots × 8` live counters each (shared data has no delete).
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// A session counter not touched for this long may be reused for another session.
    #[serde(default = "default_session_idle")]
    pub session_idle: PolicyDuration,
}

impl TokenBudgetConfig {
    /// Whether a budget counts MCP tool calls (tool-acl then records them for token-budget):
    /// one of tool calls only, or a cost budget once tool calls have prices.
    pub fn counts_tool_calls(&self) -> bool {
        self.budgets.iter().any(|b| b.counts_calls_only() || (b.unit == Unit::CostUsd && !self.tools.is_empty()))
    }
}

impl BudgetConfig {
    /// Counts MCP tool calls and no model request: `unit: toolCalls`, or a condition on calls.
    pub fn counts_calls_only(&self) -> bool {
        self.unit == Unit::ToolCalls
            || !self.when.tools.is_empty()
            || !self.when.servers.is_empty()
            || !self.when.risks.is_empty()
    }
}

fn default_paths() -> Vec<String> {
    vec!["/v1/".to_string()]
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

fn default_max_response_bytes() -> usize {
    8 * 1024 * 1024
}

fn default_slots() -> usize {
    1024
}

fn default_session_idle() -> PolicyDuration {
    PolicyDuration::from_secs(3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelConfig {
    /// Model name as sent in the request body; a glob.
    pub name: String,
    /// The tokenizer prompts are counted with; by default chosen from the model family.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// USD per million tokens. Required when a cost budget applies to the model.
    #[serde(default)]
    pub price: Option<PriceConfig>,
    /// The router's provider this entry prices the model at (one model can cost differently at
    /// two providers); without it, the entry applies at any provider.
    #[serde(default)]
    pub provider: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, o-series, gpt-5.
    O200k,
    /// gpt-4, gpt-3.5-turbo, text-embedding-3.
    Cl100k,
    /// Models whose tokenizer is not public (Claude, Gemini...): cl100k count plus 25%,
    /// rounded up. Settling with the provider's real usage corrects the estimate.
    Estimate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolPriceConfig {
    /// Tool name as called; a glob.
    pub name: String,
    /// The tool-acl server (its `toolAcl.servers[].name`); without it, any server.
    #[serde(default)]
    pub server: Option<String>,
    /// USD per call.
    pub price: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriceConfig {
    pub input: f64,
    /// Prompt tokens served from the provider's cache; defaults to `input`.
    #[serde(default)]
    pub cached_input: Option<f64>,
    pub output: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetConfig {
    /// Named in refusals, metrics and the access log.
    pub id: String,
    /// What the budget is counted per: e.g. `[tenant]`, `[tenant, model]`, `[session]`.
    pub scope: Vec<ScopePart>,
    pub unit: Unit,
    /// Tokens or requests (whole numbers), or USD for `costUsd`.
    pub limit: f64,
    pub window: Window,
    /// `local` (default): this Envoy's shared data. `global`: the rate-limit service.
    #[serde(default)]
    pub store: Store,
    /// For global budgets, when the rate-limit service cannot answer in time.
    #[serde(default)]
    pub failure_mode: BudgetFailureMode,
    /// When this budget is spent, send the request to this (cheaper) model instead of 429.
    #[serde(default)]
    pub fallback_model: Option<String>,
    /// Only requests from these principals and for these models count here.
    #[serde(default)]
    pub when: BudgetConditions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetConditions {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Model names (globs) as requested.
    #[serde(default)]
    pub models: Vec<String>,
    /// MCP tool calls by tool name (globs): the budget counts these calls (`unit: toolCalls`,
    /// or `costUsd` at the tools' prices) and no model request.
    #[serde(default)]
    pub tools: Vec<String>,
    /// ... by the tool-acl server they go to (its name).
    #[serde(default)]
    pub servers: Vec<String>,
    /// ... by the risk class tool-acl gave them.
    #[serde(default)]
    pub risks: Vec<crate::tool_acl::risk::Risk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ScopePart {
    Request,
    Session,
    Agent,
    User,
    Tenant,
    Model,
    /// The tool a call names (tool-call budgets only).
    Tool,
    /// The tool-acl server a call goes to (tool-call budgets only).
    Server,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Store {
    #[default]
    Local,
    Global,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BudgetFailureMode {
    #[default]
    Deny,
    Allow,
    /// Count against this Envoy's own copy of the budget instead.
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitServiceConfig {
    /// The Envoy cluster (HTTP/2) of the rate-limit service.
    pub cluster: String,
    #[serde(default = "default_domain")]
    pub domain: String,
    /// How long a reservation may wait for the service before `failureMode` decides.
    #[serde(default = "default_rls_timeout")]
    pub timeout: PolicyDuration,
    /// Warden's service gives back the unused part of a reservation; a standard RLS server
    /// (envoyproxy/ratelimit, Limitador) cannot, so set `false` there and the reservation
    /// stays counted in full.
    #[serde(default = "default_true")]
    pub release: bool,
}

fn default_domain() -> String {
    "warden".to_string()
}

fn default_rls_timeout() -> PolicyDuration {
    PolicyDuration(std::time::Duration::from_millis(20))
}

fn default_true() -> bool {
    true
}
