//! The `identity` section of the policy document, exactly as an operator writes it.
//!
//! Every struct refuses unknown fields, so a typo is a configure-time error that names the
//! field. Semantic checks (algorithms, keys, references between sections) happen when the
//! section is compiled, in [`super::compile`].

use crate::decision::{FailureMode, Mode};
use crate::duration::PolicyDuration;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IdentityConfig {
    /// `enforce` (default) or `shadow`: decide and record, but let denied requests through.
    #[serde(default)]
    pub mode: Mode,
    /// What a runtime fault (keys could not be fetched in time) turns into.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Token issuers trusted for agent or user tokens.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
    #[serde(default)]
    pub api_keys: Option<ApiKeysConfig>,
    #[serde(default)]
    pub mtls: Option<MtlsConfig>,
    /// Where the agent's bearer token is read from.
    #[serde(default)]
    pub agent_token: AgentTokenConfig,
    /// Where a delegated user token is read from, when agents present one.
    #[serde(default)]
    pub user_token: Option<UserTokenConfig>,
    #[serde(default)]
    pub tenant: TenantConfig,
    #[serde(default)]
    pub session: Option<SessionConfig>,
    /// Request headers that carry the verified principal upstream.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// Per-route requirements; the first route that matches decides. No match: deny.
    pub routes: Vec<RouteConfig>,
    /// Tolerance for `exp`, `nbf` and `iat` against this proxy's clock.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: PolicyDuration,
    /// Tokens longer than this are refused before any decoding.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// How long a request may wait for a key set that is still being fetched.
    #[serde(default = "default_key_wait")]
    pub key_wait: PolicyDuration,
    /// Verified tokens remembered per VM (0 turns the cache off). See `token_cache`.
    #[serde(default = "default_verified_token_cache")]
    pub verified_token_cache: usize,
    /// Keep the agent's and user's credentials on the request sent upstream. Off by default:
    /// model providers and tools never see an agent's token.
    #[serde(default)]
    pub forward_credentials: bool,
}

fn default_clock_skew() -> PolicyDuration {
    PolicyDuration::from_secs(60)
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

fn default_verified_token_cache() -> usize {
    1024
}

fn default_key_wait() -> PolicyDuration {
    PolicyDuration::from_secs(2)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerConfig {
    /// The name routes and the user-token section refer to.
    pub name: String,
    /// The exact `iss` value in this issuer's tokens.
    pub issuer: String,
    /// When non-empty, `aud` must name one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The only algorithms accepted from this issuer; a token's `alg` is never trusted alone.
    pub algorithms: Vec<String>,
    /// Public keys for asymmetric algorithms.
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Base64 shared secret, for an issuer whose algorithms are HMAC (HS256) only.
    #[serde(default)]
    pub shared_secret: Option<String>,
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// The claim holding granted scopes: a space-separated string or an array.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// The claim holding the tenant, when tenants come from tokens.
    #[serde(default)]
    pub tenant_claim: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_scope_claim() -> String {
    "scope".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwksConfig {
    /// A JWKS document given in the policy itself.
    #[serde(default)]
    pub inline: Option<String>,
    /// A JWKS document fetched through an Envoy cluster.
    #[serde(default)]
    pub remote: Option<RemoteJwksConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoteJwksConfig {
    /// The Envoy cluster that serves the key set.
    pub cluster: String,
    /// Request path, e.g. `/.well-known/jwks.json`.
    pub path: String,
    /// `:authority` sent with the fetch; defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_refresh_interval")]
    pub refresh_interval: PolicyDuration,
    /// How soon to retry after a failed fetch.
    #[serde(default = "default_retry_interval")]
    pub retry_interval: PolicyDuration,
    #[serde(default = "default_fetch_timeout")]
    pub timeout: PolicyDuration,
    /// A token with an unknown `kid` triggers a refetch at most this often.
    #[serde(default = "default_unknown_kid_refetch")]
    pub unknown_kid_refetch_interval: PolicyDuration,
}

fn default_refresh_interval() -> PolicyDuration {
    PolicyDuration::from_secs(300)
}

fn default_retry_interval() -> PolicyDuration {
    PolicyDuration::from_secs(5)
}

fn default_fetch_timeout() -> PolicyDuration {
    PolicyDuration::from_secs(2)
}

fn default_unknown_kid_refetch() -> PolicyDuration {
    PolicyDuration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeysConfig {
    /// The request header carrying the key.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    pub keys: Vec<ApiKeyEntry>,
}

fn default_api_key_header() -> String {
    "x-api-key".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKeyEntry {
    /// Lowercase hex SHA-256 of the key; the key itself is never in the policy.
    pub sha256: String,
    /// The agent principal this key authenticates.
    pub agent: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MtlsConfig {
    /// SPIFFE trust domains whose workload IDs are accepted as agents.
    pub trust_domains: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentTokenConfig {
    /// Header with `Bearer <token>`.
    #[serde(default = "default_authorization")]
    pub header: String,
    /// A query parameter that may carry the token. Off unless set: URLs end up in logs.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Issuer names accepted for agent tokens; empty means every configured issuer.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// When non-empty, `aud` must name one of these (besides the issuer's own audiences).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims the token must carry, as a string with one of these values.
    #[serde(default)]
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// Claims the token must not carry at all.
    #[serde(default)]
    pub absent_claims: Vec<String>,
}

impl Default for AgentTokenConfig {
    fn default() -> Self {
        Self {
            header: default_authorization(),
            query_param: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            required_claims: BTreeMap::new(),
            absent_claims: Vec::new(),
        }
    }
}

/// Where one issuer signs both agent and user tokens, the two slots must say how the kinds
/// differ (`audiences`, `requiredClaims`, `absentClaims` on `agentToken` and `userToken`): a
/// claim one slot requires and the other requires absent, or requires with other values
/// (`token_use`, or `azp` / `client_id`, which client-credentials tokens carry and user tokens
/// do not). Otherwise either kind could stand in for the other.
fn default_authorization() -> String {
    "authorization".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserTokenConfig {
    /// Header with the user's token (a bare JWT, or `Bearer <token>`).
    pub header: String,
    /// Issuer names accepted for user tokens.
    pub issuers: Vec<String>,
    /// When non-empty, `aud` must name one of these (besides the issuer's own audiences).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims the token must carry, as a string with one of these values.
    #[serde(default)]
    pub required_claims: BTreeMap<String, Vec<String>>,
    /// Claims the token must not carry at all.
    #[serde(default)]
    pub absent_claims: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantConfig {
    /// A header set by a trusted hop; honoured only from the listed mTLS peers.
    #[serde(default)]
    pub header: Option<TrustedHeaderConfig>,
    /// One tenant for every request this policy sees (one policy per namespace).
    #[serde(default, rename = "static")]
    pub static_tenant: Option<String>,
    /// Refuse requests whose tenant could not be established.
    #[serde(default)]
    pub required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrustedHeaderConfig {
    pub name: String,
    /// SPIFFE IDs of the hops allowed to set it.
    pub trusted_peers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SessionConfig {
    /// The request header carrying the session id.
    pub header: String,
    /// A session unused this long is forgotten and may be opened again.
    #[serde(default = "default_session_idle")]
    pub idle_timeout: PolicyDuration,
    /// Shared-data slots for session bindings: the bound on the key space.
    #[serde(default = "default_session_slots")]
    pub slots: u32,
    /// Live sessions one agent may hold; over it, only that agent's new sessions are refused.
    #[serde(default = "default_sessions_per_agent")]
    pub max_per_agent: usize,
    /// Refuse requests without a session id.
    #[serde(default)]
    pub required: bool,
}

fn default_session_idle() -> PolicyDuration {
    PolicyDuration::from_secs(3600)
}

fn default_sessions_per_agent() -> usize {
    64
}

fn default_session_slots() -> u32 {
    4096
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardConfig {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub auth_method: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CredentialKind {
    Mtls,
    Jwt,
    ApiKey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteConfig {
    /// The rule id reported in decisions and denials.
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RouteMatchConfig,
    /// Credential kinds accepted to authenticate the agent (any one of them).
    pub agent: Vec<CredentialKind>,
    /// The request must also carry a verified user (user token or `act` claim).
    #[serde(default)]
    pub require_user: bool,
    /// Scopes the agent must hold, all of them.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the agent token must carry: name → accepted values.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
    /// Where this route reads an API key, instead of `apiKeys.header`: where the agent's SDK
    /// sends it, e.g. `authorization` (OpenAI's SDKs: `Bearer <key>`) or `x-api-key`
    /// (Anthropic's). A `Bearer ` prefix is dropped.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Several headers this route reads an API key from, instead of `apiKeyHeader`: for an
    /// endpoint that SDKs reach in different ways (Anthropic's SDK sends `x-api-key`, or
    /// `Authorization: Bearer` when given `api_key=` on some versions). Two different keys in
    /// one request are refused.
    #[serde(default)]
    pub api_key_headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatchConfig {
    /// Exact `:authority`, port ignored.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// The Envoy route name (`xds.route_name`).
    #[serde(default)]
    pub route_name: Option<String>,
}
