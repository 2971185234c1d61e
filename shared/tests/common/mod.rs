//! Helpers shared by the identity test files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_policy::identity::authenticate::{authenticate, Outcome, RequestFacts};
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::identity::token_cache::{TokenCache, Verifier};
use warden_policy::policy::parse_document;
use warden_policy::testing::tokens::{self, SigningKey};

pub const ISSUER: &str = "https://idp.warden.test";
pub const AUDIENCE: &str = "warden-gateway";
pub const NOW: u64 = 1_800_000_000;

pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

pub use warden_policy::identity::jwt::NoRemoteKeys;

/// The inline JWKS every test issuer publishes: one key of each family.
pub fn standard_jwks() -> String {
    tokens::jwks(&[
        &tokens::rsa(jsonwebtoken::Algorithm::RS256),
        &tokens::ec256(),
        &tokens::ec384(),
        &tokens::ed25519(),
    ])
}

/// A policy with the standard issuer; `extra` is appended to the identity section.
pub fn policy_yaml(algorithms: &str, extra: &str) -> String {
    format!(
        r#"identity:
  issuers:
    - name: corp
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      algorithms: {algorithms}
      tenantClaim: tenant
      jwks:
        inline: '{jwks}'
  routes:
    - name: api
      agent: [jwt]
{extra}"#,
        jwks = standard_jwks()
    )
}

pub fn compile(yaml: &str) -> CompiledIdentity {
    let doc = parse_document(yaml.as_bytes()).expect("policy parses");
    CompiledIdentity::compile(doc.identity.as_ref().expect("identity section")).expect("policy compiles")
}

pub fn default_policy() -> CompiledIdentity {
    compile(&policy_yaml("[RS256, RS384, RS512, PS256, ES256, ES384, EdDSA]", ""))
}

pub fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "agent-planner",
        "exp": NOW + 300, "iat": NOW - 10, "scope": "tools:read models:call", "tenant": "acme"
    })
}

pub fn signed(key: &SigningKey) -> String {
    tokens::token(key, &claims())
}

pub fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = vec![
        (":authority".to_string(), "gw.warden.test".to_string()),
        (":path".to_string(), "/v1/chat/completions".to_string()),
    ];
    all.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

pub fn run(policy: &CompiledIdentity, headers: &[(String, String)]) -> Outcome {
    run_with(policy, headers, None, "/v1/chat/completions")
}

pub fn run_with(policy: &CompiledIdentity, headers: &[(String, String)], peer: Option<&str>, path: &str) -> Outcome {
    let facts = RequestFacts { headers, authority: "gw.warden.test", path, route_name: None, peer_uri_san: peer };
    // No cache here: every test verifies its token for real. The cache has its own tests.
    let cache = TokenCache::new(0);
    authenticate(policy, &Verifier { keys: &NoRemoteKeys, cache: &cache }, &facts, now())
}

pub fn bearer(token: &str) -> Vec<(String, String)> {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

/// Asserts a denial with this status and reason code.
#[track_caller]
pub fn assert_denied(outcome: Outcome, status: u16, reason: &str) {
    match outcome {
        Outcome::Deny(denial) => {
            assert_eq!((denial.status, denial.reason), (status, reason), "{denial:?}");
        }
        other => panic!("expected a {status} {reason} denial, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_allowed(outcome: Outcome) -> warden_policy::principal::Principal {
    match outcome {
        Outcome::Allow { principal, .. } => principal,
        other => panic!("expected allow, got {other:?}"),
    }
}
