//! The identity section checked and compiled once, at configure time. The request path
//! never reads policy text.

use super::config::*;
use super::keys::{KeySet, Strictness};
use crate::decision::{FailureMode, Mode};
use crate::policy::AuditFormat;
use crate::policy::PolicyError;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::str::FromStr;
use std::time::Duration;

const MIN_SHARED_SECRET_BYTES: usize = 32;
const MAX_SESSION_SLOTS: u32 = 65_536;

#[derive(Debug)]
pub struct CompiledIdentity {
    /// How the audit record is stored (the document's `auditFormat`, set by the filter's root).
    pub audit_format: AuditFormat,
    pub mode: Mode,
    pub failure_mode: FailureMode,
    pub issuers: Vec<Issuer>,
    pub api_keys: Option<ApiKeys>,
    pub trust_domains: Vec<String>,
    pub agent_token: TokenSource,
    pub user_token: Option<TokenSource>,
    pub tenant: TenantSource,
    pub session: Option<SessionPolicy>,
    pub forward: ForwardConfig,
    pub routes: Vec<Route>,
    pub clock_skew: Duration,
    pub max_token_bytes: usize,
    pub key_wait: Duration,
    pub forward_credentials: bool,
    pub verified_token_cache: usize,
    /// Every claim some route asks about, read from each verified agent token.
    pub claim_names: Vec<String>,
    /// Every claim a token slot requires or requires absent, read from each verified token.
    pub slot_claim_names: Vec<String>,
    /// Some route matches on Envoy's route name.
    pub reads_route_name: bool,
    /// Some route accepts mTLS agents, or the tenant header is trusted from mTLS peers.
    pub reads_peer: bool,
}

#[derive(Debug)]
pub struct Issuer {
    pub name: String,
    pub iss: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: IssuerKeys,
    pub require_exp: bool,
    pub scope_claim: String,
    pub tenant_claim: Option<String>,
}

pub enum IssuerKeys {
    Inline(KeySet),
    Remote(RemoteJwks),
    SharedSecret(DecodingKey),
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssuerKeys::Inline(set) => write!(f, "Inline({} keys)", set.len()),
            IssuerKeys::Remote(remote) => write!(f, "Remote({remote:?})"),
            IssuerKeys::SharedSecret(_) => f.write_str("SharedSecret(..)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub refresh_interval: Duration,
    pub retry_interval: Duration,
    pub timeout: Duration,
    pub unknown_kid_refetch_interval: Duration,
}

#[derive(Debug)]
pub struct ApiKeys {
    pub header: String,
    pub entries: Vec<ApiKeyPrincipal>,
}

#[derive(Debug)]
pub struct ApiKeyPrincipal {
    pub sha256: [u8; 32],
    pub agent: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
}

/// Where a token is read, which issuers (by index) may have signed it, and what else makes a
/// token fit this slot.
#[derive(Debug, Default)]
pub struct TokenSource {
    pub header: String,
    pub query_param: Option<String>,
    pub issuers: Vec<usize>,
    /// `aud` must name one of these, when there are any.
    pub audiences: Vec<String>,
    /// Claims that must be a string with one of the values.
    pub required_claims: Vec<(String, Vec<String>)>,
    /// Claims that must not be present.
    pub absent_claims: Vec<String>,
}

impl TokenSource {
    /// Why a verified token does not fit this slot, if it does not.
    pub fn misfit(&self, token: &super::jwt::VerifiedToken) -> Option<String> {
        if !self.audiences.is_empty() && !token.audiences.iter().any(|a| self.audiences.contains(a)) {
            return Some(format!("its audience is not one of {}", self.audiences.join(", ")));
        }
        let value = |claim: &str| token.slot_claims.iter().find(|(c, _)| c == claim).map(|(_, v)| v);
        for (claim, accepted) in &self.required_claims {
            if !value(claim).is_some_and(|v| v.as_ref().is_some_and(|v| accepted.contains(v))) {
                return Some(format!("claim {claim} must be one of {}", accepted.join(", ")));
            }
        }
        if let Some(claim) = self.absent_claims.iter().find(|c| value(c).is_some()) {
            return Some(format!("it carries the claim {claim}"));
        }
        None
    }

    /// Whether a token that fits this slot can never fit `other`: a claim one requires the
    /// other requires absent, or both require it with no value in common.
    fn excludes(&self, other: &TokenSource) -> bool {
        let required_absent = |a: &TokenSource, b: &TokenSource| {
            a.required_claims.iter().any(|(claim, _)| b.absent_claims.contains(claim))
        };
        let disjoint = self.required_claims.iter().any(|(claim, values)| {
            other.required_claims.iter().any(|(c, others)| c == claim && !values.iter().any(|v| others.contains(v)))
        });
        required_absent(self, other) || required_absent(other, self) || disjoint
    }
}

#[derive(Debug, Default)]
pub struct TenantSource {
    pub header: Option<(String, Vec<String>)>,
    pub static_tenant: Option<String>,
    pub required: bool,
}

#[derive(Debug)]
pub struct SessionPolicy {
    pub header: String,
    pub idle_timeout: Duration,
    pub slots: u32,
    pub max_per_agent: usize,
    pub required: bool,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub route_name: Option<String>,
    pub accept: Vec<CredentialKind>,
    pub require_user: bool,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, Vec<String>)>,
    /// Where this route reads an API key, when not `apiKeys.header` (empty: that header).
    pub api_key_headers: Vec<String>,
}

impl CompiledIdentity {
    pub fn compile(config: &IdentityConfig) -> Result<CompiledIdentity, PolicyError> {
        let issuers = config
            .issuers
            .iter()
            .enumerate()
            .map(|(i, issuer)| compile_issuer(issuer, &format!("identity.issuers[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, issuer) in issuers.iter().enumerate() {
            if issuers[..i].iter().any(|other| other.name == issuer.name) {
                return Err(PolicyError::at(
                    format!("identity.issuers[{i}].name"),
                    format!("issuer name {:?} is used twice", issuer.name),
                ));
            }
        }
        let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();

        let agent = &config.agent_token;
        let agent_token = TokenSource {
            header: header_name(&agent.header, "identity.agentToken.header")?,
            query_param: agent.query_param.clone(),
            issuers: if agent.issuers.is_empty() {
                (0..issuers.len()).collect()
            } else {
                issuer_refs(&agent.issuers, &names, "identity.agentToken.issuers")?
            },
            audiences: agent.audiences.clone(),
            required_claims: required_claims(&agent.required_claims, "identity.agentToken.requiredClaims")?,
            absent_claims: agent.absent_claims.clone(),
        };
        let user_token = match &config.user_token {
            None => None,
            Some(user) => {
                if user.issuers.is_empty() {
                    return Err(PolicyError::at("identity.userToken.issuers", "name at least one issuer"));
                }
                let source = TokenSource {
                    header: header_name(&user.header, "identity.userToken.header")?,
                    query_param: None,
                    issuers: issuer_refs(&user.issuers, &names, "identity.userToken.issuers")?,
                    audiences: user.audiences.clone(),
                    required_claims: required_claims(&user.required_claims, "identity.userToken.requiredClaims")?,
                    absent_claims: user.absent_claims.clone(),
                };
                // One issuer signing both kinds: the policy must say how they differ, or a user
                // token could pass for an agent (and the reverse).
                if let Some(shared) = source.issuers.iter().find(|i| agent_token.issuers.contains(i)) {
                    if !source.excludes(&agent_token) {
                        return Err(PolicyError::at(
                            "identity.userToken",
                            format!(
                                "issuer {:?} signs both agent and user tokens: say how they differ, with a claim one \
                                 slot requires and the other requires absent (e.g. agentToken.requiredClaims: \
                                 {{token_use: [agent]}} and userToken.absentClaims: [client_id])",
                                issuers[*shared].name
                            ),
                        ));
                    }
                }
                Some(source)
            }
        };

        let api_keys = config.api_keys.as_ref().map(compile_api_keys).transpose()?;
        let trust_domains = match &config.mtls {
            None => Vec::new(),
            Some(mtls) => {
                if mtls.trust_domains.is_empty() {
                    return Err(PolicyError::at("identity.mtls.trustDomains", "name at least one SPIFFE trust domain"));
                }
                for (i, domain) in mtls.trust_domains.iter().enumerate() {
                    if domain.is_empty() || domain.contains('/') || domain.contains(':') {
                        return Err(PolicyError::at(
                            format!("identity.mtls.trustDomains[{i}]"),
                            format!("{domain:?} is not a trust domain name (e.g. example.org)"),
                        ));
                    }
                }
                mtls.trust_domains.clone()
            }
        };

        let tenant = TenantSource {
            header: match &config.tenant.header {
                None => None,
                Some(h) => {
                    for (i, peer) in h.trusted_peers.iter().enumerate() {
                        if !peer.starts_with("spiffe://") {
                            return Err(PolicyError::at(
                                format!("identity.tenant.header.trustedPeers[{i}]"),
                                "must be a SPIFFE ID (spiffe://...)",
                            ));
                        }
                    }
                    Some((header_name(&h.name, "identity.tenant.header.name")?, h.trusted_peers.clone()))
                }
            },
            static_tenant: config.tenant.static_tenant.clone(),
            required: config.tenant.required,
        };

        let session = match &config.session {
            None => None,
            Some(s) => {
                if s.slots == 0 || s.slots > MAX_SESSION_SLOTS {
                    return Err(PolicyError::at(
                        "identity.session.slots",
                        format!("must be between 1 and {MAX_SESSION_SLOTS}"),
                    ));
                }
                if s.max_per_agent == 0 || s.max_per_agent > 4096 {
                    return Err(PolicyError::at("identity.session.maxPerAgent", "must be between 1 and 4096"));
                }
                Some(SessionPolicy {
                    header: header_name(&s.header, "identity.session.header")?,
                    idle_timeout: s.idle_timeout.as_duration(),
                    slots: s.slots,
                    max_per_agent: s.max_per_agent,
                    required: s.required,
                })
            }
        };

        let mut forward = config.forward.clone();
        for (field, value) in [
            ("agent", &mut forward.agent),
            ("user", &mut forward.user),
            ("tenant", &mut forward.tenant),
            ("session", &mut forward.session),
            ("authMethod", &mut forward.auth_method),
        ] {
            if let Some(name) = value {
                *name = header_name(name, &format!("identity.forward.{field}"))?;
            }
        }

        if config.routes.is_empty() {
            return Err(PolicyError::at(
                "identity.routes",
                "name at least one route: with none, every request would be denied",
            ));
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let path = format!("identity.routes[{i}]");
            if route.name.is_empty() {
                return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
            }
            if route.name == crate::decision::FAILURE_MODE_RULE {
                // Decisions name their rule; this one names the failure mode's, and is counted so.
                return Err(PolicyError::at(format!("{path}.name"), "\"failure-mode\" is reserved"));
            }
            if config.routes[..i].iter().any(|r| r.name == route.name) {
                return Err(PolicyError::at(
                    format!("{path}.name"),
                    format!("route name {:?} is used twice", route.name),
                ));
            }
            if route.agent.is_empty() {
                return Err(PolicyError::at(
                    format!("{path}.agent"),
                    "name at least one credential kind (mtls, jwt, apiKey)",
                ));
            }
            for (k, kind) in route.agent.iter().enumerate() {
                let missing = match kind {
                    CredentialKind::Jwt => agent_token.issuers.is_empty().then_some("identity.issuers"),
                    CredentialKind::ApiKey => api_keys.is_none().then_some("identity.apiKeys"),
                    CredentialKind::Mtls => trust_domains.is_empty().then_some("identity.mtls"),
                };
                if let Some(section) = missing {
                    return Err(PolicyError::at(
                        format!("{path}.agent[{k}]"),
                        format!("{kind:?} needs {section} to be configured"),
                    ));
                }
            }
            let api_key_headers = route_key_headers(route, &path)?;
            if !api_key_headers.is_empty() && !route.agent.contains(&CredentialKind::ApiKey) {
                return Err(PolicyError::at(format!("{path}.apiKeyHeader"), "the route does not accept apiKey"));
            }
            let default_key_header = api_keys.as_ref().map(|k| k.header.clone());
            let key_headers = if api_key_headers.is_empty() {
                default_key_header.iter().collect()
            } else {
                api_key_headers.iter().collect::<Vec<_>>()
            };
            if route.agent.contains(&CredentialKind::Jwt)
                && route.agent.contains(&CredentialKind::ApiKey)
                && key_headers.iter().any(|h| **h == agent_token.header)
            {
                return Err(PolicyError::at(
                    format!("{path}.apiKeyHeader"),
                    format!(
                        "the route reads both an agent token and an API key from {:?}: one header cannot say which it carries",
                        agent_token.header
                    ),
                ));
            }
            if let Some(prefix) = &route.matcher.path_prefix {
                if !prefix.starts_with('/') {
                    return Err(PolicyError::at(format!("{path}.match.pathPrefix"), "must start with /"));
                }
            }
            routes.push(Route {
                name: route.name.clone(),
                host: route.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
                path_prefix: route.matcher.path_prefix.clone(),
                route_name: route.matcher.route_name.clone(),
                accept: route.agent.clone(),
                require_user: route.require_user,
                scopes: route.scopes.clone(),
                claims: route.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                api_key_headers,
            });
        }

        let reads_route_name = routes.iter().any(|r| r.route_name.is_some());
        let reads_peer = tenant.header.is_some() || routes.iter().any(|r| r.accept.contains(&CredentialKind::Mtls));
        let slot_claims = |t: &TokenSource| {
            t.required_claims.iter().map(|(c, _)| c.clone()).chain(t.absent_claims.iter().cloned()).collect::<Vec<_>>()
        };
        let mut slot_claim_names = slot_claims(&agent_token);
        slot_claim_names.extend(user_token.as_ref().map(slot_claims).unwrap_or_default());
        slot_claim_names.sort();
        slot_claim_names.dedup();
        let mut claim_names: Vec<String> =
            routes.iter().flat_map(|r| r.claims.iter().map(|(name, _)| name.clone())).collect();
        claim_names.sort();
        claim_names.dedup();
        if config.verified_token_cache > 100_000 {
            return Err(PolicyError::at("identity.verifiedTokenCache", "must be at most 100000"));
        }
        if !(256..=65_536).contains(&config.max_token_bytes) {
            return Err(PolicyError::at("identity.maxTokenBytes", "must be between 256 and 65536"));
        }

        Ok(CompiledIdentity {
            audit_format: AuditFormat::default(),
            mode: config.mode,
            failure_mode: config.failure_mode,
            issuers,
            api_keys,
            trust_domains,
            agent_token,
            user_token,
            tenant,
            session,
            forward,
            routes,
            clock_skew: config.clock_skew.as_duration(),
            max_token_bytes: config.max_token_bytes,
            key_wait: config.key_wait.as_duration(),
            forward_credentials: config.forward_credentials,
            verified_token_cache: config.verified_token_cache,
            claim_names,
            slot_claim_names,
            reads_route_name,
            reads_peer,
        })
    }

    /// A policy with one issuer and no routes, for verifying tokens that are not agent
    /// credentials (tool-call approvals) with the same code and the same strictness. Its keys
    /// must be in the policy: approvals are checked inline, with no fetch to wait for.
    pub fn approver(issuer: &IssuerConfig, path: &str) -> Result<CompiledIdentity, PolicyError> {
        let issuer = compile_issuer(issuer, path)?;
        if matches!(issuer.keys, IssuerKeys::Remote(_)) {
            return Err(PolicyError::at(format!("{path}.jwks.remote"), "an approver's keys must be inline"));
        }
        Ok(CompiledIdentity {
            audit_format: AuditFormat::default(),
            mode: Mode::Enforce,
            failure_mode: FailureMode::Deny,
            issuers: vec![issuer],
            api_keys: None,
            trust_domains: Vec::new(),
            agent_token: TokenSource { issuers: vec![0], ..TokenSource::default() },
            user_token: None,
            tenant: TenantSource { header: None, static_tenant: None, required: false },
            session: None,
            forward: ForwardConfig::default(),
            routes: Vec::new(),
            clock_skew: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            key_wait: Duration::ZERO,
            forward_credentials: false,
            verified_token_cache: 0,
            claim_names: Vec::new(),
            slot_claim_names: Vec::new(),
            reads_route_name: false,
            reads_peer: false,
        })
    }

    /// Indexes of issuers whose keys are fetched at run time.
    pub fn remote_issuers(&self) -> impl Iterator<Item = (usize, &RemoteJwks)> {
        self.issuers.iter().enumerate().filter_map(|(i, issuer)| match &issuer.keys {
            IssuerKeys::Remote(remote) => Some((i, remote)),
            _ => None,
        })
    }
}

fn compile_issuer(config: &IssuerConfig, path: &str) -> Result<Issuer, PolicyError> {
    if config.name.is_empty() {
        return Err(PolicyError::at(format!("{path}.name"), "must not be empty"));
    }
    if config.issuer.is_empty() {
        return Err(PolicyError::at(format!("{path}.issuer"), "must not be empty"));
    }
    if config.algorithms.is_empty() {
        return Err(PolicyError::at(format!("{path}.algorithms"), "name at least one algorithm"));
    }
    let mut algorithms = Vec::with_capacity(config.algorithms.len());
    for (i, name) in config.algorithms.iter().enumerate() {
        let alg = Algorithm::from_str(name).map_err(|_| {
            PolicyError::at(
                format!("{path}.algorithms[{i}]"),
                format!(
                    "unknown algorithm {name:?} (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256)"
                ),
            )
        })?;
        algorithms.push(alg);
    }
    let hmac =
        algorithms.iter().filter(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)).count();
    // HMAC and public-key algorithms never share an issuer: that mix is what key-confusion
    // attacks exploit (a public key used as an HMAC secret).
    if hmac != 0 && hmac != algorithms.len() {
        return Err(PolicyError::at(
            format!("{path}.algorithms"),
            "HMAC algorithms cannot be mixed with public-key algorithms in one issuer",
        ));
    }
    let keys = if hmac != 0 {
        if config.jwks.is_some() {
            return Err(PolicyError::at(format!("{path}.jwks"), "an HMAC issuer takes sharedSecret, not a JWKS"));
        }
        let secret = config
            .shared_secret
            .as_deref()
            .ok_or_else(|| PolicyError::at(format!("{path}.sharedSecret"), "HMAC algorithms need a shared secret"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| PolicyError::at(format!("{path}.sharedSecret"), format!("not base64: {e}")))?;
        if bytes.len() < MIN_SHARED_SECRET_BYTES {
            return Err(PolicyError::at(
                format!("{path}.sharedSecret"),
                format!("must be at least {MIN_SHARED_SECRET_BYTES} bytes"),
            ));
        }
        IssuerKeys::SharedSecret(DecodingKey::from_secret(&bytes))
    } else {
        if config.shared_secret.is_some() {
            return Err(PolicyError::at(
                format!("{path}.sharedSecret"),
                "only HMAC (HS256) issuers take a shared secret",
            ));
        }
        let jwks = config.jwks.as_ref().ok_or_else(|| {
            PolicyError::at(format!("{path}.jwks"), "public-key algorithms need a JWKS (inline or remote)")
        })?;
        match (&jwks.inline, &jwks.remote) {
            (Some(inline), None) => IssuerKeys::Inline(
                KeySet::parse(inline.as_bytes(), Strictness::EveryKey)
                    .map_err(|e| PolicyError::at(format!("{path}.jwks.inline"), format!("JWKS {e}")))?,
            ),
            (None, Some(remote)) => {
                if !remote.path.starts_with('/') {
                    return Err(PolicyError::at(format!("{path}.jwks.remote.path"), "must start with /"));
                }
                if remote.cluster.is_empty() {
                    return Err(PolicyError::at(format!("{path}.jwks.remote.cluster"), "must not be empty"));
                }
                IssuerKeys::Remote(RemoteJwks {
                    cluster: remote.cluster.clone(),
                    path: remote.path.clone(),
                    authority: remote.authority.clone().unwrap_or_else(|| remote.cluster.clone()),
                    refresh_interval: remote.refresh_interval.as_duration(),
                    retry_interval: remote.retry_interval.as_duration(),
                    timeout: remote.timeout.as_duration(),
                    unknown_kid_refetch_interval: remote.unknown_kid_refetch_interval.as_duration(),
                })
            }
            _ => return Err(PolicyError::at(format!("{path}.jwks"), "set exactly one of inline or remote")),
        }
    };
    Ok(Issuer {
        name: config.name.clone(),
        iss: config.issuer.clone(),
        audiences: config.audiences.clone(),
        algorithms,
        keys,
        require_exp: config.require_exp,
        scope_claim: config.scope_claim.clone(),
        tenant_claim: config.tenant_claim.clone(),
    })
}

fn compile_api_keys(config: &ApiKeysConfig) -> Result<ApiKeys, PolicyError> {
    if config.keys.is_empty() {
        return Err(PolicyError::at("identity.apiKeys.keys", "name at least one key"));
    }
    let mut entries = Vec::with_capacity(config.keys.len());
    for (i, key) in config.keys.iter().enumerate() {
        let path = format!("identity.apiKeys.keys[{i}]");
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&key.sha256, &mut sha256).map_err(|_| {
            PolicyError::at(
                format!("{path}.sha256"),
                "must be 64 hex digits: the SHA-256 of the key, never the key itself",
            )
        })?;
        if key.agent.is_empty() {
            return Err(PolicyError::at(format!("{path}.agent"), "must not be empty"));
        }
        if entries.iter().any(|e: &ApiKeyPrincipal| e.sha256 == sha256) {
            return Err(PolicyError::at(format!("{path}.sha256"), "the same key hash is listed twice"));
        }
        entries.push(ApiKeyPrincipal {
            sha256,
            agent: key.agent.clone(),
            tenant: key.tenant.clone(),
            scopes: key.scopes.clone(),
        });
    }
    Ok(ApiKeys { header: header_name(&config.header, "identity.apiKeys.header")?, entries })
}

fn issuer_refs(refs: &[String], names: &[&str], path: &str) -> Result<Vec<usize>, PolicyError> {
    refs.iter()
        .enumerate()
        .map(|(i, name)| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| PolicyError::at(format!("{path}[{i}]"), format!("no issuer is named {name:?}")))
        })
        .collect()
}

fn required_claims(
    claims: &std::collections::BTreeMap<String, Vec<String>>,
    path: &str,
) -> Result<Vec<(String, Vec<String>)>, PolicyError> {
    for (claim, values) in claims {
        if values.is_empty() {
            return Err(PolicyError::at(format!("{path}.{claim}"), "name at least one accepted value"));
        }
    }
    Ok(claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Header names are compared lowercase, as HTTP/2 and Envoy store them.
fn header_name(name: &str, path: &str) -> Result<String, PolicyError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(PolicyError::at(path, format!("{name:?} is not a header name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// A route's key headers: `apiKeyHeader` or `apiKeyHeaders`, not both; lower-cased, each once.
fn route_key_headers(route: &RouteConfig, path: &str) -> Result<Vec<String>, PolicyError> {
    if route.api_key_header.is_some() && !route.api_key_headers.is_empty() {
        return Err(PolicyError::at(format!("{path}.apiKeyHeaders"), "give apiKeyHeader or apiKeyHeaders, not both"));
    }
    if let Some(header) = &route.api_key_header {
        return Ok(vec![header_name(header, &format!("{path}.apiKeyHeader"))?]);
    }
    let mut headers = Vec::with_capacity(route.api_key_headers.len());
    for (i, header) in route.api_key_headers.iter().enumerate() {
        let header = header_name(header, &format!("{path}.apiKeyHeaders[{i}]"))?;
        if headers.contains(&header) {
            return Err(PolicyError::at(format!("{path}.apiKeyHeaders[{i}]"), format!("{header:?} is listed twice")));
        }
        headers.push(header);
    }
    Ok(headers)
}
