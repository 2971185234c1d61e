//! The `router` section of the policy document, as written.

use crate::duration::PolicyDuration;
use crate::tool_acl::config::PrincipalConditions;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouterConfig {
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// Which providers a request may reach, by who sends it and what data it carries.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Attempts per request, the first included (a failover is an attempt at the next target).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Request paths the router serves: exact, or a prefix ending in `/` under which the rest is
    /// an endpoint (`chat/completions`, `responses`, `embeddings`, `messages`).
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// The longest a provider's `Retry-After` keeps it out of first place.
    #[serde(default = "default_max_cooldown")]
    pub max_cooldown: PolicyDuration,
}

fn default_max_attempts() -> u32 {
    3
}

fn default_paths() -> Vec<String> {
    vec!["/v1/".to_string()]
}

fn default_max_cooldown() -> PolicyDuration {
    PolicyDuration::from_secs(300)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProviderKind {
    Openai,
    AzureOpenai,
    Anthropic,
    /// A self-hosted server speaking OpenAI's API (vLLM, Ollama, TGI).
    OpenaiCompatible,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// The Envoy cluster that reaches it.
    pub cluster: String,
    /// The path its API lives under; each kind has a default.
    #[serde(default)]
    pub base_path: Option<String>,
    /// Azure's `api-version`, Anthropic's `anthropic-version`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// The data stays in our network.
    #[serde(default)]
    pub private: bool,
    /// Where its credential comes from. The value itself never appears in the policy.
    #[serde(default)]
    pub credential: Option<CredentialSource>,
}

/// A credential's source, one of: the proxy's environment (`VmConfig.environment_variables`),
/// or an Envoy SDS secret applied by Envoy itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialSource {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub sds: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelConfig {
    /// What agents send as `model`, e.g. `fast`, `smart`, `gpt-4o`.
    pub alias: String,
    /// Where it may be served, in order of priority.
    pub targets: Vec<TargetConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetConfig {
    pub provider: String,
    /// The provider's name for the model (an Azure deployment for `azureOpenai`).
    pub model: String,
    /// Lower is tried first; targets of one priority share its traffic by weight.
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleConfig {
    pub id: String,
    /// Whose requests the rule is about (agents, users, tenants, scopes); empty: everyone's.
    #[serde(default)]
    pub when: PrincipalConditions,
    /// The rule applies when the request carries any of these data classes (recorded by the
    /// redaction filter); empty: whatever it carries.
    #[serde(default)]
    pub data_classes: Vec<String>,
    /// Where such requests may go.
    pub allow: AllowedProviders,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllowedProviders {
    /// Only private providers.
    #[serde(default)]
    pub private_only: bool,
    /// Only these providers (by name); empty: any.
    #[serde(default)]
    pub providers: Vec<String>,
}
