//! The request flow the filter glue runs, over an in-memory host: what is stripped, recorded,
//! forwarded and replied.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use warden_policy::host::Host;
use warden_policy::identity::request::{decide, strip_untrusted_headers, CapturedRequest, Step};
use warden_policy::identity::token_cache::{TokenCache, Verifier};
use warden_policy::testing::{tokens, MemoryHost};

fn run_flow(policy: &warden_policy::identity::compile::CompiledIdentity, host: &MemoryHost) -> Step {
    host.now_secs.set(NOW);
    let cache = TokenCache::new(16);
    let verifier = Verifier { keys: &NoRemoteKeys, cache: &cache };
    let mut request = CapturedRequest::capture(host, policy).unwrap();
    strip_untrusted_headers(host, policy, &mut request).unwrap();
    decide(host, policy, &verifier, &request, true).unwrap()
}

fn policy_with(extra: &str) -> warden_policy::identity::compile::CompiledIdentity {
    compile(&policy_yaml(
        "[RS256]",
        &format!("  forward:\n    agent: x-agent-id\n    tenant: x-warden-tenant\n{extra}"),
    ))
}

#[test]
fn an_allowed_request_is_recorded_forwarded_and_stripped() {
    let policy = policy_with("");
    let auth = format!("Bearer {}", signed(&tokens::rsa(Algorithm::RS256)));
    let host = MemoryHost::with_headers(&[
        (":authority", "gw"),
        (":path", "/v1/chat"),
        ("x-request-id", "r-1"),
        ("authorization", &auth),
        ("x-agent-id", "forged"),
        ("x-warden-user", "forged-user"),
    ]);
    let step = run_flow(&policy, &host);
    assert!(matches!(step, Step::Continue(_)), "{step:?}");
    assert_eq!(host.field("warden.principal", "agent").as_deref(), Some("agent-planner"));
    assert_eq!(host.field("warden.principal", "tenant").as_deref(), Some("acme"));
    assert_eq!(host.field("warden.audit", "identity.decision").as_deref(), Some("allow;rule=api;reason=authenticated"));
    assert_eq!(
        host.header("x-agent-id").as_deref(),
        Some("agent-planner"),
        "forged value replaced by the verified one"
    );
    assert_eq!(host.header("x-warden-user"), None);
    assert_eq!(host.header("authorization"), None);
    assert_eq!(host.metric("warden.identity.allowed"), 1);
}

/// A route may match a header Warden sets (`x-warden-model`): Envoy chose the route before any
/// filter ran, so once identity has removed what the client sent, the route is chosen again.
#[test]
fn a_forged_warden_header_makes_the_route_be_chosen_again() {
    let policy = policy_with("");
    let auth = format!("Bearer {}", signed(&tokens::rsa(Algorithm::RS256)));
    let host = MemoryHost::with_headers(&[
        (":authority", "gw"),
        (":path", "/v1/chat"),
        ("authorization", &auth),
        ("x-warden-model", "gpt-4o-mini"),
    ]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    assert_eq!(host.header("x-warden-model"), None);
    assert_eq!(host.route_cache_cleared.get(), 1);
    // Nothing forged: the route stands.
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", &auth)]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    assert_eq!(host.route_cache_cleared.get(), 0);
}

#[test]
fn a_denied_request_gets_a_local_reply_and_no_principal() {
    let policy = policy_with("");
    let host = MemoryHost::with_headers(&[
        (":authority", "gw"),
        (":path", "/v1/chat"),
        ("x-request-id", "r-2"),
        ("x-agent-id", "forged"),
    ]);
    let step = run_flow(&policy, &host);
    assert!(matches!(step, Step::Replied(_)), "{step:?}");
    let reply = host.reply.borrow();
    let reply = reply.as_ref().unwrap();
    assert_eq!(reply.status, 401);
    let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(body["error"]["request_id"], "r-2");
    assert!(host.record("warden.principal").is_none());
    assert_eq!(host.header("x-agent-id"), None);
    assert_eq!(host.metric("warden.identity.denied.missing_credentials"), 1);
}

#[test]
fn a_token_in_the_query_is_removed_from_the_upstream_url() {
    let policy = policy_with("  agentToken:\n    queryParam: access_token\n");
    let token = signed(&tokens::rsa(Algorithm::RS256));
    let path = format!("/v1/chat?stream=true&access_token={token}");
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", &path)]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    assert_eq!(host.header(":path").as_deref(), Some("/v1/chat?stream=true"));
}

#[test]
fn forward_credentials_keeps_them() {
    let policy = policy_with("  forwardCredentials: true\n");
    let auth = format!("Bearer {}", signed(&tokens::rsa(Algorithm::RS256)));
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", &auth)]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    assert_eq!(host.header("authorization"), Some(auth));
}

#[test]
fn a_session_held_by_another_agent_is_refused_and_the_refused_agent_is_audited() {
    let policy = policy_with("  session:\n    header: x-session\n");
    let bearer_for = |sub: &str| {
        let mut c = claims();
        c["sub"] = sub.into();
        format!("Bearer {}", tokens::token(&tokens::rsa(Algorithm::RS256), &c))
    };
    let host = MemoryHost::with_headers(&[
        (":authority", "gw"),
        (":path", "/v1"),
        ("x-session", "s-9"),
        ("authorization", &bearer_for("agent-a")),
    ]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));

    // A second request on the same proxy (the same shared data), from another agent.
    host.set_request_header("authorization", Some(&bearer_for("agent-b"))).unwrap();
    host.properties.borrow_mut().clear();
    let step = run_flow(&policy, &host);
    assert!(matches!(step, Step::Replied(_)), "{step:?}");
    assert_eq!(host.reply.borrow().as_ref().unwrap().status, 403);
    assert_eq!(host.field("warden.principal", "agent").as_deref(), Some("agent-b"));
    assert!(host.field("warden.principal", "session").is_none(), "the session it claimed is not recorded as its own");
}

#[test]
fn the_agent_tokens_acr_is_recorded_for_step_ups_and_a_malformed_one_refused() {
    let policy = policy_with("");
    let mut claims = claims();
    claims["acr"] = serde_json::json!("phrh");
    let auth = format!("Bearer {}", tokens::token(&tokens::rsa(Algorithm::RS256), &claims));
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", &auth)]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    assert_eq!(host.field("warden.principal", "acr").as_deref(), Some("phrh"));

    claims["acr"] = serde_json::json!(["phrh"]);
    let auth = format!("Bearer {}", tokens::token(&tokens::rsa(Algorithm::RS256), &claims));
    let host = MemoryHost::with_headers(&[(":authority", "gw"), (":path", "/v1/chat"), ("authorization", &auth)]);
    assert!(matches!(run_flow(&policy, &host), Step::Replied(_)));
}

/// What a client could use to pose as a principal or to steer Envoy is gone before anything
/// else sees the request: underscore twins of reserved headers, and Envoy's control headers.
#[test]
fn underscore_twins_and_envoy_control_headers_are_stripped_on_entry() {
    let policy = policy_with("");
    let auth = format!("Bearer {}", signed(&tokens::rsa(Algorithm::RS256)));
    let host = MemoryHost::with_headers(&[
        (":authority", "gw"),
        (":path", "/v1/chat"),
        ("authorization", &auth),
        ("x_warden_tenant", "globex"),
        ("x_agent_id", "forged"),
        ("x-envoy-max-retries", "5"),
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-upstream-stream-duration-ms", "1"),
        ("x-envoy-internal", "true"),
        ("x_custom_header", "kept"),
    ]);
    assert!(matches!(run_flow(&policy, &host), Step::Continue(_)));
    let left: Vec<String> = host.headers.borrow().iter().map(|(k, _)| k.clone()).collect();
    for gone in ["x_warden_tenant", "x_agent_id", "x-envoy-max-retries", "x-envoy-retry-on"] {
        assert!(!left.iter().any(|k| k == gone), "{gone} survived: {left:?}");
    }
    assert!(!left.iter().any(|k| k.starts_with("x-envoy-") && k != "x-envoy-internal"), "{left:?}");
    assert!(left.iter().any(|k| k == "x_custom_header"), "other underscore headers are not Warden's business");
    assert_eq!(host.header("x-warden-tenant").as_deref(), Some("acme"));
}
