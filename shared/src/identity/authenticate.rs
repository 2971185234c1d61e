//! One request's authentication: match the route, verify each credential the request carries,
//! join them into one principal, then check the route's requirements.
//!
//! Every presented credential must verify: a bad token is refused even if another credential
//! would have been enough, and two credentials that name different agents are refused.

use super::api_key;
use super::compile::{CompiledIdentity, Route};
use super::config::CredentialKind;
use super::jwt::{TokenError, VerifiedToken};
use super::query;
use super::spiffe;
use super::token_cache::Verifier;
use crate::principal::{AuthMethod, Principal};
use std::time::SystemTime;

const MAX_SESSION_ID_BYTES: usize = 128;

/// What the identity filter sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// All request headers, lowercase names, duplicates kept.
    pub headers: &'a [(String, String)],
    pub authority: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Envoy's route name, when the route has one.
    pub route_name: Option<&'a str>,
    /// The URI SAN of the verified mTLS peer certificate, if any.
    pub peer_uri_san: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a str> + 'n
    where
        'a: 'n,
    {
        let headers = self.headers;
        headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The single value of a header; two values of a credential header is an attack or a bug.
    fn single_header(&self, name: &str) -> Result<Option<&'a str>, Denial> {
        let mut values = self.header_values(name);
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => Ok(Some(v)),
            (Some(_), Some(_)) => Err(Denial::unauthenticated(
                "duplicate_credentials",
                format!("the {name} header appears more than once"),
            )),
        }
    }
}

/// The API key presented in any of a route's key headers, with a `Bearer ` prefix dropped; two
/// different keys are refused rather than one chosen.
fn presented_api_key<'a>(facts: &RequestFacts<'a>, headers: &[String]) -> Result<Option<&'a str>, Denial> {
    let mut found: Option<&'a str> = None;
    for header in headers {
        let Some(raw) = facts.single_header(header)? else { continue };
        // SDKs send a key as `Authorization: Bearer <key>`, or bare in their own header.
        let raw = raw.trim();
        let key = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
        match found {
            Some(other) if other != key => {
                return Err(Denial::unauthenticated(
                    "conflicting_api_keys",
                    "two different API keys were presented in one request",
                ))
            }
            _ => found = Some(key),
        }
    }
    Ok(found)
}

/// Why a request is refused, as the caller will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// 401 for missing or bad credentials, 403 for a valid principal that lacks something.
    pub status: u16,
    pub reason: &'static str,
    /// Safe to return: never contains a token, key or secret.
    pub description: String,
    /// For 403 `insufficient_scope`: the scopes the route requires.
    pub required_scopes: Vec<String>,
    /// The route that decided; filled in by [`authenticate`].
    pub rule: String,
    /// What had been verified before the request was refused (a 403 for a missing scope still
    /// knows the agent): recorded for the audit log, never forwarded upstream.
    pub verified: Option<Box<Principal>>,
}

impl Denial {
    fn new(status: u16, reason: &'static str, description: impl Into<String>) -> Self {
        let description = description.into();
        Self { status, reason, description, required_scopes: Vec::new(), rule: String::new(), verified: None }
    }

    /// 401: missing or bad credentials.
    pub fn unauthenticated(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(401, reason, description)
    }

    /// 403: a verified principal that lacks something.
    pub fn forbidden(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(403, reason, description)
    }

    /// 429: the principal is over a limit of its own.
    pub fn over_limit(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(429, reason, description)
    }

    /// 503: the decision could not be made (a runtime fault, under `failureMode: deny`).
    pub fn unavailable(reason: &'static str, description: impl Into<String>) -> Self {
        Self::new(503, reason, description)
    }

    fn from_token(error: &TokenError, which: &str) -> Self {
        Self::unauthenticated(error.reason(), format!("{which} token: {error}"))
    }

    /// Names the route (the rule id) that decided.
    pub fn on_route(mut self, rule: &str) -> Self {
        self.rule = rule.to_string();
        self
    }
}

/// Why a request must wait for keys before it can be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWait {
    /// The issuer's remote key set has not been fetched yet.
    NotLoaded,
    /// The token names a key the current set lacks: a rotation may have happened.
    UnknownKid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allow {
        rule: String,
        principal: Principal,
    },
    Deny(Denial),
    /// Decide again once `issuer`'s keys are (re)fetched; [`Outcome::keys_unavailable`] if not.
    WaitForKeys {
        rule: String,
        issuer: usize,
        why: KeyWait,
    },
}

impl Outcome {
    /// The denial for a request whose keys did not arrive in time or may not be refetched.
    pub fn keys_unavailable(rule: &str, why: KeyWait) -> Denial {
        let (reason, description) = match why {
            KeyWait::NotLoaded => ("keys_unavailable", "agent token: the issuer's keys could not be loaded"),
            KeyWait::UnknownKid => ("unknown_kid", "agent token: token key id is not in the issuer's key set"),
        };
        Denial::unauthenticated(reason, description).on_route(rule)
    }
}

pub fn match_route<'p>(policy: &'p CompiledIdentity, facts: &RequestFacts) -> Option<&'p Route> {
    let host = facts.authority.rsplit_once(':').map_or(facts.authority, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            facts.authority
        }
    });
    policy.routes.iter().find(|route| {
        route.host.as_deref().is_none_or(|h| h.eq_ignore_ascii_case(host))
            && route.path_prefix.as_deref().is_none_or(|p| facts.path.starts_with(p))
            && route.route_name.as_deref().is_none_or(|r| facts.route_name == Some(r))
    })
}

pub fn authenticate(policy: &CompiledIdentity, verifier: &Verifier, facts: &RequestFacts, now: SystemTime) -> Outcome {
    let Some(route) = match_route(policy, facts) else {
        let denial = Denial::forbidden("no_route", "no identity route matches this request").on_route("default");
        return Outcome::Deny(denial);
    };
    let mut principal = Principal::default();
    match authenticate_on_route(policy, route, verifier, facts, now, &mut principal) {
        Ok(()) => Outcome::Allow { rule: route.name.clone(), principal },
        Err(Failure::Denied(mut denial)) => {
            if !principal.agent.is_empty() {
                denial.verified = Some(Box::new(principal));
            }
            Outcome::Deny(denial.on_route(&route.name))
        }
        Err(Failure::Wait { issuer, why }) => Outcome::WaitForKeys { rule: route.name.clone(), issuer, why },
    }
}

enum Failure {
    Denied(Denial),
    Wait { issuer: usize, why: KeyWait },
}

impl From<Denial> for Failure {
    fn from(denial: Denial) -> Self {
        Failure::Denied(denial)
    }
}

fn token_failure(error: TokenError, which: &str) -> Failure {
    match error {
        TokenError::KeysNotLoaded { issuer } => Failure::Wait { issuer, why: KeyWait::NotLoaded },
        TokenError::UnknownRemoteKid { issuer } => Failure::Wait { issuer, why: KeyWait::UnknownKid },
        other => Failure::Denied(Denial::from_token(&other, which)),
    }
}

/// A verified token presented in a slot it does not fit (a user token as the agent's, say).
fn wrong_kind(slot: &str, why: &str) -> Failure {
    Denial::unauthenticated("wrong_token_kind", format!("{slot} token: not a {slot} token: {why}")).into()
}

/// Records a credential's claim to be `agent`; two credentials must name the same agent.
fn claim_agent(principal: &mut Principal, agent: &str, method: AuthMethod) -> Result<(), Failure> {
    if principal.agent.is_empty() {
        principal.agent = agent.to_string();
    } else if principal.agent != agent {
        return Err(Denial::unauthenticated("agent_mismatch", "the credentials presented name different agents").into());
    }
    principal.methods.push(method);
    Ok(())
}

fn authenticate_on_route(
    policy: &CompiledIdentity,
    route: &Route,
    verifier: &Verifier,
    facts: &RequestFacts,
    now: SystemTime,
    principal: &mut Principal,
) -> Result<(), Failure> {
    let mut agent_token: Option<VerifiedToken> = None;
    let mut agent_token_text: Option<&str> = None;
    let mut key_tenant: Option<String> = None;
    let mut user_tenant: Option<String> = None;

    if route.accept.contains(&CredentialKind::Mtls) {
        if let Some(san) = facts.peer_uri_san {
            let id = spiffe::trusted_id(san, &policy.trust_domains).ok_or_else(|| {
                Denial::unauthenticated("untrusted_peer", "the mTLS peer is not a SPIFFE ID in a trusted domain")
            })?;
            claim_agent(principal, id, AuthMethod::Mtls)?;
        }
    }

    if route.accept.contains(&CredentialKind::Jwt) {
        if let Some(token) = bearer_token(policy, facts)? {
            let verified = verifier
                .verify(token, policy, &policy.agent_token.issuers, now)
                .map_err(|e| token_failure(e, "agent"))?;
            if let Some(why) = policy.agent_token.misfit(&verified) {
                return Err(wrong_kind("agent", &why));
            }
            agent_token_text = Some(token);
            // With an RFC 8693 `act` claim the token speaks for a user (`sub`), and the agent is
            // the current actor; without one, the subject is the agent itself.
            let agent = verified.actors.first().unwrap_or(&verified.subject).clone();
            claim_agent(principal, &agent, AuthMethod::Jwt)?;
            if !verified.actors.is_empty() {
                principal.user = Some(verified.subject.clone());
                principal.actors = verified.actors.clone();
            }
            principal.scopes.extend(verified.scopes.iter().cloned());
            principal.acr.clone_from(&verified.acr);
            agent_token = Some(verified);
        }
    }

    if let (true, Some(keys_config)) = (route.accept.contains(&CredentialKind::ApiKey), &policy.api_keys) {
        let headers: &[String] = if route.api_key_headers.is_empty() {
            std::slice::from_ref(&keys_config.header)
        } else {
            &route.api_key_headers
        };
        if let Some(presented) = presented_api_key(facts, headers)? {
            let entry = api_key::lookup(keys_config, presented)
                .ok_or_else(|| Denial::unauthenticated("unknown_api_key", "the API key is not recognised"))?;
            claim_agent(principal, &entry.agent, AuthMethod::ApiKey)?;
            principal.scopes.extend(entry.scopes.iter().cloned());
            key_tenant = entry.tenant.clone();
        }
    }

    if principal.agent.is_empty() {
        return Err(Denial::unauthenticated(
            "missing_credentials",
            "no agent credential accepted on this route was presented",
        )
        .into());
    }

    if let Some(user_source) = &policy.user_token {
        if let Some(raw) = facts.single_header(&user_source.header)? {
            let token = raw.strip_prefix("Bearer ").or_else(|| raw.strip_prefix("bearer ")).unwrap_or(raw).trim();
            if token.is_empty() {
                return Err(Denial::unauthenticated("empty_user_token", "the user token header is empty").into());
            }
            if agent_token_text == Some(token) {
                return Err(Denial::unauthenticated(
                    "same_token_twice",
                    "the same token was presented as the agent's and as the user's",
                )
                .into());
            }
            let verified =
                verifier.verify(token, policy, &user_source.issuers, now).map_err(|e| token_failure(e, "user"))?;
            if let Some(why) = user_source.misfit(&verified) {
                return Err(wrong_kind("user", &why));
            }
            user_tenant.clone_from(&verified.tenant);
            match &principal.user {
                Some(delegated) if *delegated != verified.subject => {
                    return Err(Denial::unauthenticated(
                        "user_mismatch",
                        "the user token and the agent token's act claim name different users",
                    )
                    .into());
                }
                _ => principal.user = Some(verified.subject),
            }
        }
    }
    if route.require_user && principal.user.is_none() {
        return Err(Denial::unauthenticated(
            "missing_user",
            "this route needs the user the agent acts for (a user token or an act claim)",
        )
        .into());
    }

    principal.scopes.sort();
    principal.scopes.dedup();
    let missing: Vec<String> = route.scopes.iter().filter(|s| !principal.scopes.contains(s)).cloned().collect();
    if !missing.is_empty() {
        let mut denial =
            Denial::forbidden("insufficient_scope", format!("this route needs the scopes: {}", route.scopes.join(" ")));
        denial.required_scopes = route.scopes.clone();
        return Err(denial.into());
    }
    for (claim, accepted) in &route.claims {
        let found = agent_token.as_ref().and_then(|t| t.claims.iter().find(|(name, _)| name == claim));
        let met = found.is_some_and(|(_, values)| values.iter().any(|v| accepted.contains(v)));
        if !met {
            return Err(Denial::forbidden(
                "insufficient_claims",
                format!("this route needs the claim {claim} to be one of: {}", accepted.join(", ")),
            )
            .into());
        }
    }

    principal.tenant = resolve_tenant(policy, facts, agent_token.as_ref().and_then(|t| t.tenant.clone()), key_tenant)?;
    // A user of one tenant cannot be carried into another by an agent of that other tenant.
    if let Some(tenant) = user_tenant {
        if principal.tenant.as_deref() != Some(tenant.as_str()) {
            return Err(Denial::forbidden("tenant_mismatch", "the user token's tenant is not the agent's").into());
        }
    }

    if let Some(session) = &policy.session {
        match facts.single_header(&session.header)? {
            Some(id) if valid_session_id(id) => principal.session = Some(id.to_string()),
            Some(_) => {
                return Err(Denial::forbidden(
                    "malformed_session",
                    "the session id must be 1-128 visible ASCII characters",
                )
                .into())
            }
            None if session.required => {
                return Err(Denial::forbidden("missing_session", "this route needs a session id").into())
            }
            None => {}
        }
    }
    Ok(())
}

/// The agent's bearer token: from the configured header, or the query parameter when (and
/// only when) the policy names one. Two places carrying a token is refused.
fn bearer_token<'a>(policy: &CompiledIdentity, facts: &RequestFacts<'a>) -> Result<Option<&'a str>, Failure> {
    let from_header = match facts.single_header(&policy.agent_token.header)? {
        None => None,
        Some(value) => {
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                // Another scheme (Basic, ApiKey ...) is not an agent token; it is no credential here.
                None
            } else if token.trim().is_empty() {
                return Err(Denial::unauthenticated("empty_bearer", "the bearer token is empty").into());
            } else {
                Some(token.trim())
            }
        }
    };
    let from_query = policy.agent_token.query_param.as_deref().and_then(|name| query::find(facts.path, name));
    match (from_header, from_query) {
        (Some(_), Some(_)) => {
            Err(Denial::unauthenticated("duplicate_credentials", "a token was sent both in a header and in the query")
                .into())
        }
        (Some(token), None) | (None, Some(token)) => Ok(Some(token)),
        (None, None) => Ok(None),
    }
}

/// Tenant sources, most trusted first: bound to the credential (token claim, API key), then a
/// header from a trusted hop, then the policy's static tenant. Two credential sources must agree.
fn resolve_tenant(
    policy: &CompiledIdentity,
    facts: &RequestFacts,
    token_tenant: Option<String>,
    key_tenant: Option<String>,
) -> Result<Option<String>, Failure> {
    let from_credentials = match (token_tenant, key_tenant) {
        (Some(a), Some(b)) if a != b => {
            return Err(Denial::forbidden("tenant_mismatch", "the credentials presented name different tenants").into());
        }
        (Some(a), _) | (None, Some(a)) => Some(a),
        (None, None) => None,
    };
    let from_trusted_hop = match (&policy.tenant.header, facts.peer_uri_san) {
        (Some((name, peers)), Some(peer)) if peers.iter().any(|p| p == peer) => {
            facts.single_header(name)?.map(str::to_string)
        }
        _ => None,
    };
    let tenant = from_credentials.or(from_trusted_hop).or_else(|| policy.tenant.static_tenant.clone());
    if tenant.is_none() && policy.tenant.required {
        return Err(Denial::forbidden("missing_tenant", "the tenant of this request could not be established").into());
    }
    Ok(tenant)
}

fn valid_session_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_SESSION_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
}
