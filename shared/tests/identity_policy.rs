//! Identity logic beyond single tokens: API keys, mTLS, delegation, tenants, routes, and the
//! configuration errors that must stop a policy from loading.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;
use warden_policy::identity::api_key;
use warden_policy::identity::authenticate::Outcome;
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::policy::parse_document;
use warden_policy::testing::tokens;

const KEY: &str = "wk-test-agent-key-0001";
const PLANNER: &str = "spiffe://warden.test/ns/agents/sa/planner";

fn full_policy(routes: &str) -> CompiledIdentity {
    compile(&full_policy_yaml(routes))
}

fn full_policy_yaml(routes: &str) -> String {
    let extra = format!(
        r#"  apiKeys:
    keys:
      - sha256: {hash}
        agent: key-agent
        tenant: acme
        scopes: [models:call]
  mtls:
    trustDomains: [warden.test]
  agentToken:
    absentClaims: [token_use]
  userToken:
    header: x-user-token
    issuers: [corp]
    requiredClaims: {{ token_use: [user] }}
  tenant:
    header:
      name: x-tenant
      trustedPeers: [spiffe://warden.test/ns/edge/sa/gateway]
    static: default-tenant
"#,
        hash = api_key::hash_hex(KEY)
    );
    policy_yaml("[RS256, ES256]", &extra).replace("  routes:\n    - name: api\n      agent: [jwt]\n", routes)
}

fn any_route() -> &'static str {
    "  routes:\n    - name: api\n      agent: [jwt, apiKey, mtls]\n"
}

fn token_with(changes: serde_json::Value) -> String {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    tokens::token(&tokens::rsa(Algorithm::RS256), &c)
}

fn refused(yaml: &str) -> String {
    let doc = parse_document(yaml.as_bytes()).expect("parses");
    CompiledIdentity::compile(doc.identity.as_ref().unwrap()).expect_err("must be refused").to_string()
}

#[test]
fn an_api_key_authenticates_its_agent_with_its_tenant_and_scopes() {
    let policy = full_policy(any_route());
    let p = assert_allowed(run(&policy, &headers(&[("x-api-key", KEY)])));
    assert_eq!((p.agent.as_str(), p.tenant.as_deref()), ("key-agent", Some("acme")));
    assert_eq!(p.scopes, vec!["models:call".to_string()]);
    assert_eq!(p.auth_method(), "api_key");
}

/// Agents keep their SDKs: a route reads the key where the SDK sends it (OpenAI's as
/// `Authorization: Bearer <key>`, Anthropic's bare in `x-api-key`).
#[test]
fn a_route_reads_the_api_key_where_the_agents_sdk_sends_it() {
    let routes = "  routes:\n    - name: openai\n      match: { pathPrefix: /v1/chat }\n      agent: [apiKey]\n      apiKeyHeader: Authorization\n    - name: anthropic\n      agent: [apiKey]\n";
    let policy = full_policy(routes);
    let bearer = format!("Bearer {KEY}");
    let p = assert_allowed(run_with(&policy, &headers(&[("authorization", &bearer)]), None, "/v1/chat/completions"));
    assert_eq!(p.agent, "key-agent");
    let wrong = run_with(&policy, &headers(&[("x-api-key", KEY)]), None, "/v1/chat/completions");
    assert_denied(wrong, 401, "missing_credentials");
    let p = assert_allowed(run_with(&policy, &headers(&[("x-api-key", KEY)]), None, "/v1/messages"));
    assert_eq!(p.agent, "key-agent");
    let unknown = format!("Bearer {KEY}x");
    assert_denied(
        run_with(&policy, &headers(&[("authorization", &unknown)]), None, "/v1/chat/completions"),
        401,
        "unknown_api_key",
    );
}

/// Anthropic's SDK sends its key in `x-api-key` or, given `api_key=` on 2.x, as a bearer token:
/// a route may read either, but two different keys in one request are refused, not chosen from.
#[test]
fn a_route_with_several_key_headers_takes_either_and_refuses_two_different_keys() {
    let routes =
        "  routes:\n    - name: anthropic\n      agent: [apiKey]\n      apiKeyHeaders: [x-api-key, Authorization]\n";
    let policy = full_policy(routes);
    let bearer = format!("Bearer {KEY}");
    for presented in [
        vec![("x-api-key", KEY)],
        vec![("authorization", bearer.as_str())],
        vec![("x-api-key", KEY), ("authorization", bearer.as_str())],
    ] {
        let p = assert_allowed(run_with(&policy, &headers(&presented), None, "/v1/messages"));
        assert_eq!(p.agent, "key-agent");
    }
    let other = format!("Bearer {KEY}x");
    assert_denied(
        run_with(&policy, &headers(&[("x-api-key", KEY), ("authorization", &other)]), None, "/v1/messages"),
        401,
        "conflicting_api_keys",
    );
    let both = routes.replace("agent: [apiKey]\n", "agent: [apiKey]\n      apiKeyHeader: x-api-key\n");
    let err = refused(&full_policy_yaml(&both));
    assert!(err.starts_with("identity.routes[0].apiKeyHeaders:"), "{err}");
    let twice = routes.replace("Authorization]", "X-Api-Key]");
    let err = refused(&full_policy_yaml(&twice));
    assert!(err.starts_with("identity.routes[0].apiKeyHeaders[1]:") && err.contains("twice"), "{err}");
}

#[test]
fn one_header_cannot_carry_both_an_agent_token_and_an_api_key() {
    let policy = policy_yaml(
        "[RS256]",
        &format!("  apiKeys:\n    keys:\n      - {{ sha256: {}, agent: a }}\n", api_key::hash_hex(KEY)),
    )
    .replace("agent: [jwt]\n", "agent: [jwt, apiKey]\n      apiKeyHeader: authorization\n");
    let err = refused(&policy);
    assert!(err.starts_with("identity.routes[0].apiKeyHeader:") && err.contains("authorization"), "{err}");
}

#[test]
fn an_unknown_or_oversized_api_key_is_refused() {
    let policy = full_policy(any_route());
    assert_denied(run(&policy, &headers(&[("x-api-key", "wk-test-agent-key-0002")])), 401, "unknown_api_key");
    let huge = "k".repeat(600);
    assert_denied(run(&policy, &headers(&[("x-api-key", &huge)])), 401, "unknown_api_key");
}

#[test]
fn api_key_lookup_finds_only_exact_keys() {
    let policy = full_policy(any_route());
    let keys = policy.api_keys.as_ref().unwrap();
    assert_eq!(api_key::lookup(keys, KEY).map(|e| e.agent.as_str()), Some("key-agent"));
    assert!(api_key::lookup(keys, &KEY[..KEY.len() - 1]).is_none());
    assert!(api_key::lookup(keys, "").is_none());
}

#[test]
fn an_mtls_agent_is_its_spiffe_id() {
    let policy = full_policy(any_route());
    let p = assert_allowed(run_with(&policy, &headers(&[]), Some(PLANNER), "/x"));
    assert_eq!((p.agent.as_str(), p.auth_method().as_str()), (PLANNER, "mtls"));
}

#[test]
fn a_peer_outside_the_trust_domains_is_refused() {
    let policy = full_policy(any_route());
    assert_denied(run_with(&policy, &headers(&[]), Some("spiffe://evil.test/ns/a/sa/b"), "/x"), 401, "untrusted_peer");
}

#[test]
fn credentials_naming_different_agents_are_refused() {
    let policy = full_policy(any_route());
    let token = format!("Bearer {}", token_with(json!({"sub": "someone-else"})));
    assert_denied(
        run_with(&policy, &headers(&[("authorization", &token)]), Some(PLANNER), "/x"),
        401,
        "agent_mismatch",
    );
    let token = format!("Bearer {}", token_with(json!({"sub": PLANNER})));
    let p = assert_allowed(run_with(&policy, &headers(&[("authorization", &token)]), Some(PLANNER), "/x"));
    assert_eq!(p.auth_method(), "mtls+jwt");
}

#[test]
fn an_act_claim_makes_the_actor_the_agent_and_the_subject_the_user() {
    let policy = full_policy(any_route());
    let token =
        token_with(json!({"sub": "alice@acme.test", "act": {"sub": "agent-planner", "act": {"sub": "orchestrator"}}}));
    let p = assert_allowed(run(&policy, &bearer(&token)));
    assert_eq!(p.agent, "agent-planner");
    assert_eq!(p.user.as_deref(), Some("alice@acme.test"));
    assert_eq!(p.actors, vec!["agent-planner".to_string(), "orchestrator".to_string()]);
}

#[test]
fn a_malformed_act_claim_is_refused() {
    let policy = full_policy(any_route());
    let token = token_with(json!({"act": {"client": "no-sub"}}));
    assert_denied(run(&policy, &bearer(&token)), 401, "token_malformed");
}

#[test]
fn a_user_token_names_the_user_and_must_agree_with_the_act_claim() {
    let policy = full_policy(any_route());
    let user = token_with(json!({"sub": "alice@acme.test", "token_use": "user"}));
    let p = assert_allowed(run(&policy, &headers(&[("x-api-key", KEY), ("x-user-token", &user)])));
    assert_eq!(p.user.as_deref(), Some("alice@acme.test"));

    let delegated = format!("Bearer {}", token_with(json!({"sub": "bob@acme.test", "act": {"sub": "agent-planner"}})));
    let h = headers(&[("authorization", &delegated), ("x-user-token", &user)]);
    assert_denied(run(&policy, &h), 401, "user_mismatch");
}

#[test]
fn a_bad_user_token_is_refused_even_with_a_good_agent() {
    let policy = full_policy(any_route());
    let expired = token_with(json!({"sub": "alice@acme.test", "token_use": "user", "exp": NOW - 3600}));
    assert_denied(run(&policy, &headers(&[("x-api-key", KEY), ("x-user-token", &expired)])), 401, "token_expired");
}

#[test]
fn a_route_can_require_the_user() {
    let policy = full_policy("  routes:\n    - name: mcp\n      agent: [apiKey]\n      requireUser: true\n");
    assert_denied(run(&policy, &headers(&[("x-api-key", KEY)])), 401, "missing_user");
}

#[test]
fn a_missing_scope_is_403_and_keeps_the_verified_agent_for_the_audit() {
    let policy = full_policy("  routes:\n    - name: tools\n      agent: [jwt]\n      scopes: [tools:call]\n");
    match run(&policy, &bearer(&token_with(json!({"scope": "tools:read"})))) {
        Outcome::Deny(denial) => {
            assert_eq!((denial.status, denial.reason), (403, "insufficient_scope"));
            assert_eq!(denial.required_scopes, vec!["tools:call".to_string()]);
            assert_eq!(denial.verified.unwrap().agent, "agent-planner");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn route_claims_must_hold_an_accepted_value() {
    let policy = full_policy(
        "  routes:\n    - name: eng\n      agent: [jwt, apiKey]\n      claims:\n        department: [eng, sre]\n",
    );
    assert_allowed(run(&policy, &bearer(&token_with(json!({"department": "sre"})))));
    assert_allowed(run(&policy, &bearer(&token_with(json!({"department": ["sales", "eng"]})))));
    assert_denied(run(&policy, &bearer(&token_with(json!({"department": "sales"})))), 403, "insufficient_claims");
    assert_denied(run(&policy, &headers(&[("x-api-key", KEY)])), 403, "insufficient_claims");
}

#[test]
fn the_tenant_comes_from_the_credential_then_a_trusted_hop_then_the_policy() {
    let policy = full_policy(any_route());
    let gateway = "spiffe://warden.test/ns/edge/sa/gateway";
    // Token claim.
    assert_eq!(
        assert_allowed(run(&policy, &bearer(&signed(&tokens::rsa(Algorithm::RS256))))).tenant.as_deref(),
        Some("acme")
    );
    // A header from a trusted mTLS hop, when the credential names none.
    let h = headers(&[("x-tenant", "globex")]);
    assert_eq!(assert_allowed(run_with(&policy, &h, Some(gateway), "/x")).tenant.as_deref(), Some("globex"));
    // The same header from an untrusted client is ignored: the static tenant applies.
    let token = format!("Bearer {}", token_with(json!({"tenant": null})));
    let h = headers(&[("authorization", &token), ("x-tenant", "globex")]);
    assert_eq!(assert_allowed(run(&policy, &h)).tenant.as_deref(), Some("default-tenant"));
}

#[test]
fn credentials_naming_different_tenants_are_refused() {
    let policy = full_policy(any_route());
    let token = format!("Bearer {}", token_with(json!({"sub": "key-agent", "tenant": "globex"})));
    assert_denied(run(&policy, &headers(&[("authorization", &token), ("x-api-key", KEY)])), 403, "tenant_mismatch");
}

#[test]
fn the_first_matching_route_decides_and_no_match_is_403() {
    let routes = "  routes:\n    - name: admin\n      match: {host: admin.warden.test}\n      agent: [mtls]\n    - name: v1\n      match: {pathPrefix: /v1/}\n      agent: [apiKey]\n";
    let policy = full_policy(routes);
    assert_allowed(run(&policy, &headers(&[("x-api-key", KEY)])));
    assert_denied(run_with(&policy, &headers(&[("x-api-key", KEY)]), None, "/v2/x"), 403, "no_route");
}

#[test]
fn a_session_id_must_be_visible_ascii() {
    let yaml = policy_yaml("[RS256]", "  session:\n    header: x-session\n    required: true\n");
    let policy = compile(&yaml);
    let token = signed(&tokens::rsa(Algorithm::RS256));
    let auth = format!("Bearer {token}");
    assert_denied(run(&policy, &headers(&[("authorization", &auth)])), 403, "missing_session");
    assert_denied(
        run(&policy, &headers(&[("authorization", &auth), ("x-session", "has space")])),
        403,
        "malformed_session",
    );
    let p = assert_allowed(run(&policy, &headers(&[("authorization", &auth), ("x-session", "s-1")])));
    assert_eq!(p.session.as_deref(), Some("s-1"));
}

#[test]
fn configuration_errors_name_the_field() {
    let cases = [
        (policy_yaml("[RS256, HS256]", ""), "identity.issuers[0].algorithms: HMAC algorithms cannot be mixed"),
        (policy_yaml("[RS256, none]", ""), "identity.issuers[0].algorithms[1]: unknown algorithm \"none\""),
        (
            policy_yaml("[RS256]", "  apiKeys:\n    keys:\n      - {sha256: abc, agent: a}\n"),
            "identity.apiKeys.keys[0].sha256: must be 64 hex digits",
        ),
        (
            policy_yaml("[RS256]", "  userToken:\n    header: x-user\n    issuers: [nobody]\n"),
            "identity.userToken.issuers[0]: no issuer is named \"nobody\"",
        ),
        (
            policy_yaml("[RS256]", "").replace("agent: [jwt]", "agent: [mtls]"),
            "identity.routes[0].agent[0]: Mtls needs identity.mtls to be configured",
        ),
        (
            policy_yaml("[RS256]", "").replace("agent: [jwt]", "agent: []"),
            "identity.routes[0].agent: name at least one credential kind",
        ),
        (policy_yaml("[RS256]", "  mtls:\n    trustDomains: [spiffe://x]\n"), "identity.mtls.trustDomains[0]"),
    ];
    for (yaml, expected) in cases {
        let error = refused(&yaml);
        assert!(error.contains(expected), "expected {expected:?} in {error:?}");
    }
}

#[test]
fn an_inline_jwks_with_a_weak_or_mismatched_key_is_refused() {
    let mut jwks: serde_json::Value = serde_json::from_str(&standard_jwks()).unwrap();
    jwks["keys"][0]["alg"] = "ES256".into(); // an RSA key claiming an EC algorithm
    let yaml = policy_yaml("[RS256]", "").replace(&standard_jwks(), &jwks.to_string());
    assert!(refused(&yaml).contains("identity.issuers[0].jwks.inline: JWKS key 0 (rsa-1): kty does not match its alg"));

    let mut jwks: serde_json::Value = serde_json::from_str(&standard_jwks()).unwrap();
    jwks["keys"][0]["n"] = "sXch".into(); // a toy modulus
    let yaml = policy_yaml("[RS256]", "").replace(&standard_jwks(), &jwks.to_string());
    assert!(refused(&yaml).contains("below 2048"), "{}", refused(&yaml));
}

/// Agent and user tokens cannot stand in for each other where one issuer signs both: the
/// policy must say how they differ, each slot checks it, the same token is never both, and a
/// user is never carried into another tenant.
#[test]
fn agent_and_user_tokens_cannot_stand_in_for_each_other() {
    let policy = full_policy(any_route());
    let user = token_with(json!({"sub": "alice@acme.test", "token_use": "user"}));
    let agent = token_with(json!({}));
    // A user token as the agent's: refused.
    assert_denied(run(&policy, &bearer(&user)), 401, "wrong_token_kind");
    // An agent token as the user's: refused.
    let h = headers(&[("x-api-key", KEY), ("x-user-token", &agent)]);
    assert_denied(run(&policy, &h), 401, "wrong_token_kind");
    // The same token in both slots.
    let h = headers(&[("authorization", &format!("Bearer {agent}")), ("x-user-token", &agent)]);
    assert_denied(run(&policy, &h), 401, "same_token_twice");
    // A user of another tenant, brought by an agent of acme.
    let foreign = token_with(json!({"sub": "eve@globex.test", "token_use": "user", "tenant": "globex"}));
    let h = headers(&[("x-api-key", KEY), ("x-user-token", &foreign)]);
    assert_denied(run(&policy, &h), 403, "tenant_mismatch");
    let h = headers(&[("x-api-key", KEY), ("x-user-token", &user)]);
    assert_eq!(assert_allowed(run(&policy, &h)).user.as_deref(), Some("alice@acme.test"));

    // A policy that lets one issuer sign both kinds without saying how they differ is refused.
    let yaml = policy_yaml("[RS256]", "  userToken:\n    header: x-user\n    issuers: [corp]\n");
    assert!(refused(&yaml).starts_with("identity.userToken: issuer \"corp\" signs both agent and user tokens"));
    let yaml = policy_yaml(
        "[RS256]",
        "  agentToken:\n    requiredClaims: {token_use: [agent]}\n  userToken:\n    header: x-user\n    issuers: [corp]\n    requiredClaims: {token_use: [user]}\n",
    );
    compile(&yaml);
}

#[test]
fn the_failure_modes_rule_name_is_reserved_for_routes() {
    let yaml = policy_yaml("[RS256]", "").replace("    - name: api\n", "    - name: failure-mode\n");
    let message = refused(&yaml);
    assert!(message.contains("identity.routes[0].name") && message.contains("reserved"), "{message}");
}
