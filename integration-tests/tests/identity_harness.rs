//! The identity filter's wiring and host-fault behaviour, driven through the wasmtime host:
//! configure-time refusals, key-set callouts and timers, paused and resumed requests, shared
//! data across VMs, shadow mode and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::Algorithm;
use std::time::Duration;
use warden_integration_tests::proxy_wasm_host::{Action, HostEnv, Plugin, Vm};
use warden_integration_tests::repo;
use warden_policy::testing::tokens::{self, SigningKey};

const ISSUER: &str = "https://idp.warden.test";

fn plugin() -> Plugin {
    Plugin::load(&repo::filter_wasm("warden_identity")).expect("built identity filter")
}

fn remote_policy(extra: &str) -> String {
    format!(
        r#"identity:
  keyWait: 1s
  issuers:
    - name: corp
      issuer: {ISSUER}
      algorithms: [RS256, ES256]
      tenantClaim: tenant
      jwks:
        remote:
          cluster: jwks
          path: /.well-known/jwks.json
          authority: idp.warden.test
          refreshInterval: 60s
          retryInterval: 5s
          timeout: 500ms
          unknownKidRefetchInterval: 30s
  session:
    header: x-agent-session
  forward:
    agent: x-warden-agent
    tenant: x-warden-tenant
  routes:
    - name: api
      agent: [jwt]
{extra}"#
    )
}

fn token_for(key: &SigningKey, env: &HostEnv, sub: &str) -> String {
    let now = env.now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    tokens::token(key, &serde_json::json!({"iss": ISSUER, "sub": sub, "exp": now + 600, "tenant": "acme"}))
}

fn request(vm: &mut Vm, token: &str, extra: &[(&str, &str)]) -> (u32, Action) {
    let stream = vm.new_stream().unwrap();
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("x-request-id", "req-7"),
        ("authorization", auth.as_str()),
    ];
    headers.extend_from_slice(extra);
    let action = vm.request_headers(stream, &headers, true).unwrap();
    (stream, action)
}

/// Starts a VM whose key set has been fetched, answering the first fetch with `keys`.
fn vm_with_keys(env: &HostEnv, policy: &str, keys: &[&SigningKey]) -> Vm {
    let mut vm = plugin().start(env, policy.as_bytes()).unwrap();
    vm.tick().unwrap();
    let call = vm.http_calls().pop().expect("key-set fetch on first tick");
    vm.respond_http_call(call.token, 200, &[], tokens::jwks(keys).as_bytes()).unwrap();
    vm
}

#[test]
fn refuses_a_policy_with_a_typo_and_names_the_field() {
    let policy = remote_policy("").replace("refreshInterval", "refreshIntervall");
    let (vm, accepted) = plugin().start_unchecked(&HostEnv::default(), policy.as_bytes()).unwrap();
    assert!(!accepted);
    assert!(
        vm.log_text().contains("identity.issuers[0].jwks.remote.refreshIntervall: unknown field `refreshIntervall`"),
        "{}",
        vm.log_text()
    );
}

#[test]
fn refuses_an_unparsable_inline_jwks_and_an_unknown_algorithm() {
    let bad_jwks = "identity:\n  issuers:\n    - {name: a, issuer: b, algorithms: [RS256], jwks: {inline: '{\"keys\": 7}'}}\n  routes: [{name: r, agent: [jwt]}]\n";
    let (vm, accepted) = plugin().start_unchecked(&HostEnv::default(), bad_jwks.as_bytes()).unwrap();
    assert!(!accepted);
    assert!(vm.log_text().contains("identity.issuers[0].jwks.inline: JWKS not a JWKS document"), "{}", vm.log_text());

    let bad_alg = remote_policy("").replace("[RS256, ES256]", "[RS256, RS999]");
    let (vm, accepted) = plugin().start_unchecked(&HostEnv::default(), bad_alg.as_bytes()).unwrap();
    assert!(!accepted);
    assert!(
        vm.log_text().contains("identity.issuers[0].algorithms[1]: unknown algorithm \"RS999\""),
        "{}",
        vm.log_text()
    );
}

#[test]
fn fetches_keys_through_the_configured_cluster_on_start() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(100)));
    vm.tick().unwrap();
    let calls = vm.http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "jwks");
    assert_eq!(calls[0].header(":path"), Some("/.well-known/jwks.json"));
    assert_eq!(calls[0].header(":authority"), Some("idp.warden.test"));
    assert_eq!(calls[0].timeout, Duration::from_millis(500));
    vm.respond_http_call(calls[0].token, 200, &[], tokens::jwks(&[&tokens::rsa(Algorithm::RS256)]).as_bytes()).unwrap();
    assert_eq!(env.metric("warden.identity.jwks_fetch.success"), 1);
    assert_eq!(env.metric("warden.identity.keys_loaded"), 1);
}

#[test]
fn allows_a_valid_token_records_the_principal_and_strips_what_clients_sent() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    let token = token_for(&rsa, &env, "agent-planner");
    let (stream, action) = request(
        &mut vm,
        &token,
        &[("x-warden-agent", "forged-admin"), ("x-warden-user", "forged-user"), ("x-agent-session", "s-1")],
    );
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.field(stream, "warden.principal", "agent").as_deref(), Some("agent-planner"));
    assert_eq!(vm.field(stream, "warden.principal", "tenant").as_deref(), Some("acme"));
    assert_eq!(vm.field(stream, "warden.principal", "session").as_deref(), Some("s-1"));
    assert_eq!(vm.field(stream, "warden.principal", "auth_methods").as_deref(), Some("jwt"));
    assert_eq!(
        vm.field(stream, "warden.audit", "identity.decision").as_deref(),
        Some("allow;rule=api;reason=authenticated")
    );
    // Forged identity headers are gone; the verified ones are set; the token stays at the gateway.
    assert_eq!(vm.forwarded_header(stream, "x-warden-agent").as_deref(), Some("agent-planner"));
    assert_eq!(vm.forwarded_header(stream, "x-warden-tenant").as_deref(), Some("acme"));
    assert_eq!(vm.forwarded_header(stream, "x-warden-user"), None);
    assert_eq!(vm.forwarded_header(stream, "authorization"), None);
    assert_eq!(env.metric("warden.identity.allowed"), 1);
}

/// The principal is declared read-only for the access log: a second identity filter on the
/// same request (an operator's mistake) cannot replace who the caller is. Its write fails, and
/// the request is refused rather than passed on; the VM lives on for the next request.
#[test]
fn a_principal_already_written_is_never_replaced() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    assert_eq!(vm.declared().get("warden.principal"), Some(&true), "declared read-only");
    assert_eq!(vm.declared().get("warden.audit"), Some(&false));
    let token = token_for(&rsa, &env, "agent-planner");
    let (first, _) = request(&mut vm, &token, &[]);
    assert_eq!(vm.field(first, "warden.principal", "agent").as_deref(), Some("agent-planner"));

    let stream = vm.new_stream().unwrap();
    vm.set_principal(stream, &warden_policy::testing::principal::example());
    let auth = format!("Bearer {}", token_for(&rsa, &env, "agent-other"));
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("authorization", auth.as_str()),
    ];
    assert_eq!(vm.request_headers(stream, &headers, true).unwrap(), Action::Pause);
    assert_eq!(vm.local_reply(stream).map(|r| r.status), Some(503));
    assert_eq!(
        vm.field(stream, "warden.principal", "agent").as_deref(),
        Some("spiffe://warden.test/ns/agents/sa/planner")
    );

    let (after, action) = request(&mut vm, &token, &[]);
    assert_eq!(action, Action::Continue, "the VM still serves");
    assert!(vm.local_reply(after).is_none());
}

#[test]
fn denies_with_401_and_a_bearer_challenge_and_never_calls_upstream() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    let token = tokens::token(&rsa, &serde_json::json!({"iss": ISSUER, "sub": "a", "exp": 1}));
    let (stream, action) = request(&mut vm, &token, &[("x-warden-agent", "forged")]);
    assert_eq!(action, Action::Pause);
    let reply = vm.local_reply(stream).expect("local reply");
    assert_eq!(reply.status, 401);
    assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer realm=\"warden\", error=\"invalid_token\""));
    assert_eq!(reply.json()["error"]["code"], "token_expired");
    assert_eq!(reply.json()["error"]["request_id"], "req-7");
    assert_eq!(vm.field(stream, "warden.principal", "agent"), None);
    assert_eq!(
        vm.field(stream, "warden.audit", "identity.decision").as_deref(),
        Some("deny;rule=api;reason=token_expired")
    );
    assert_eq!(env.metric("warden.identity.denied.token_expired"), 1, "{:?}", env.metrics());
}

#[test]
fn a_request_before_the_first_fetch_waits_and_is_resumed_when_keys_arrive() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    let token = token_for(&rsa, &env, "agent-early");
    let (stream, action) = request(&mut vm, &token, &[]);
    assert_eq!(action, Action::Pause, "waits for keys instead of failing");
    assert_eq!(vm.resumed(stream), 0);
    // The root sends the fetch on its first tick, and only one.
    vm.tick().unwrap();
    vm.tick().unwrap();
    let calls = vm.http_calls();
    assert_eq!(calls.len(), 1);
    vm.respond_http_call(calls[0].token, 200, &[], tokens::jwks(&[&rsa]).as_bytes()).unwrap();
    assert_eq!(vm.resumed(stream), 1);
    assert_eq!(vm.local_reply(stream), None);
    assert_eq!(vm.field(stream, "warden.principal", "agent").as_deref(), Some("agent-early"));
}

#[test]
fn a_waiting_request_is_denied_when_the_fetch_fails_with_failure_mode_deny() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    let (stream, action) = request(&mut vm, &token_for(&tokens::rsa(Algorithm::RS256), &env, "a"), &[]);
    assert_eq!(action, Action::Pause);
    vm.tick().unwrap();
    let call = vm.http_calls().pop().unwrap();
    vm.respond_http_call(call.token, 503, &[], b"").unwrap();
    assert_eq!(vm.resumed(stream), 0);
    let reply = vm.local_reply(stream).expect("denied");
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (401, Some("keys_unavailable")));
    assert_eq!(env.metric("warden.identity.jwks_fetch.failure"), 1);
}

#[test]
fn a_waiting_request_passes_unauthenticated_with_failure_mode_allow() {
    let env = HostEnv::default();
    let policy = remote_policy("").replace("identity:\n", "identity:\n  failureMode: allow\n");
    let mut vm = plugin().start(&env, policy.as_bytes()).unwrap();
    let (stream, _) = request(&mut vm, &token_for(&tokens::rsa(Algorithm::RS256), &env, "a"), &[]);
    vm.tick().unwrap();
    let call = vm.http_calls().pop().unwrap();
    vm.fail_http_call(call.token).unwrap();
    assert_eq!(vm.resumed(stream), 1);
    assert_eq!(vm.field(stream, "warden.principal", "agent"), None, "no principal without verification");
    assert_eq!(vm.forwarded_header(stream, "authorization"), None);
    assert_eq!(env.metric("warden.identity.failure_mode_allowed"), 1);
    assert_eq!(env.metric("warden.identity.failure_mode_applied"), 1);
    let decision = vm.field(stream, "warden.audit", "identity.decision");
    assert_eq!(decision.as_deref(), Some("allow;rule=failure-mode;reason=keys_unavailable"));
}

#[test]
fn a_fetch_that_cannot_be_sent_releases_waiting_requests_at_once() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    vm.forget_cluster("jwks");
    let (stream, action) = request(&mut vm, &token_for(&tokens::rsa(Algorithm::RS256), &env, "a"), &[]);
    assert_eq!(action, Action::Pause);
    vm.tick().unwrap();
    let reply = vm.local_reply(stream).expect("decided on the same tick, not after keyWait");
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (401, Some("keys_unavailable")));
    assert_eq!(env.metric("warden.identity.jwks_fetch.failure"), 1);
}

#[test]
fn a_hung_fetch_releases_waiting_requests_after_key_wait() {
    let env = HostEnv::default();
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    let (stream, _) = request(&mut vm, &token_for(&tokens::rsa(Algorithm::RS256), &env, "a"), &[]);
    vm.advance(&env, Duration::from_millis(900)).unwrap();
    assert_eq!(vm.local_reply(stream), None, "still waiting inside keyWait");
    vm.advance(&env, Duration::from_millis(200)).unwrap();
    assert_eq!(vm.local_reply(stream).map(|r| r.status), Some(401));
}

#[test]
fn a_stream_reset_while_waiting_is_never_resumed() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = plugin().start(&env, remote_policy("").as_bytes()).unwrap();
    let (stream, _) = request(&mut vm, &token_for(&rsa, &env, "a"), &[]);
    vm.finish(stream).unwrap();
    vm.tick().unwrap();
    let call = vm.http_calls().pop().unwrap();
    vm.respond_http_call(call.token, 200, &[], tokens::jwks(&[&rsa]).as_bytes()).unwrap();
    assert!(vm.stream(stream).is_none());
}

#[test]
fn keeps_the_last_good_keys_when_a_refresh_fails() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    vm.advance(&env, Duration::from_secs(61)).unwrap();
    let refresh = vm.http_calls().pop().expect("refresh after refreshInterval");
    vm.respond_http_call(refresh.token, 200, &[], b"{\"keys\": \"garbage\"}").unwrap();
    let (stream, action) = request(&mut vm, &token_for(&rsa, &env, "agent-after-failed-refresh"), &[]);
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.field(stream, "warden.principal", "agent").as_deref(), Some("agent-after-failed-refresh"));
    // A failed refresh is retried after retryInterval, not after refreshInterval.
    vm.advance(&env, Duration::from_secs(5)).unwrap();
    assert_eq!(vm.http_calls().len(), 1);
}

#[test]
fn a_key_withdrawn_from_the_key_set_stops_working_even_for_cached_tokens() {
    let env = HostEnv::default();
    let (withdrawn, kept) = (tokens::rsa(Algorithm::RS256), tokens::ec256());
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&withdrawn, &kept]);
    let token = token_for(&withdrawn, &env, "agent-old");
    assert_eq!(request(&mut vm, &token, &[]).1, Action::Continue, "verified and cached");
    vm.advance(&env, Duration::from_secs(61)).unwrap();
    let refresh = vm.http_calls().pop().expect("refresh");
    vm.respond_http_call(refresh.token, 200, &[], tokens::jwks(&[&kept]).as_bytes()).unwrap();
    let (stream, action) = request(&mut vm, &token, &[]);
    assert_eq!(action, Action::Pause, "waits for one refetch of the unknown kid");
    vm.tick().unwrap();
    let refetch = vm.http_calls().pop().expect("refetch");
    vm.respond_http_call(refetch.token, 200, &[], tokens::jwks(&[&kept]).as_bytes()).unwrap();
    assert_eq!(vm.local_reply(stream).unwrap().json()["error"]["code"], "unknown_kid");
}

#[test]
fn an_unknown_kid_triggers_one_rate_limited_refetch_for_rotation() {
    let env = HostEnv::default();
    let (old, mut new) = (tokens::rsa(Algorithm::RS256), tokens::ec256());
    new.kid = "rotated-in".into();
    let mut vm = vm_with_keys(&env, &remote_policy(""), &[&old]);
    let (stream, action) = request(&mut vm, &token_for(&new, &env, "agent-new-key"), &[]);
    assert_eq!(action, Action::Pause);
    assert!(vm.http_calls().is_empty(), "requests never send callouts themselves");
    vm.tick().unwrap();
    let refetch = vm.http_calls().pop().expect("refetch for the unknown kid");
    vm.respond_http_call(refetch.token, 200, &[], tokens::jwks(&[&old, &new]).as_bytes()).unwrap();
    assert_eq!(vm.resumed(stream), 1);
    assert_eq!(vm.field(stream, "warden.principal", "agent").as_deref(), Some("agent-new-key"));

    // Another unknown kid inside unknownKidRefetchInterval is refused at once, without a fetch.
    let mut stranger = tokens::rsa_other();
    stranger.kid = "never-published".into();
    let (stream, action) = request(&mut vm, &token_for(&stranger, &env, "x"), &[]);
    assert_eq!(action, Action::Pause);
    assert!(vm.http_calls().is_empty());
    assert_eq!(vm.local_reply(stream).unwrap().json()["error"]["code"], "unknown_kid");
}

#[test]
fn session_bindings_are_shared_between_vms() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let mut worker_1 = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    let mut worker_2 = vm_with_keys(&env, &remote_policy(""), &[&rsa]);
    let (_, action) = request(&mut worker_1, &token_for(&rsa, &env, "agent-a"), &[("x-agent-session", "sess-42")]);
    assert_eq!(action, Action::Continue);
    let (stream, action) = request(&mut worker_2, &token_for(&rsa, &env, "agent-b"), &[("x-agent-session", "sess-42")]);
    assert_eq!(action, Action::Pause);
    let reply = worker_2.local_reply(stream).unwrap();
    assert_eq!((reply.status, reply.json()["error"]["code"].as_str()), (403, Some("session_agent_mismatch")));
    // The refused agent was verified: the audit record names it, without the session it claimed.
    assert_eq!(worker_2.field(stream, "warden.principal", "agent").as_deref(), Some("agent-b"));
    assert_eq!(worker_2.field(stream, "warden.principal", "session"), None);
    assert_eq!(worker_2.forwarded_header(stream, "x-warden-agent"), None);
    let (_, action) = request(&mut worker_2, &token_for(&rsa, &env, "agent-a"), &[("x-agent-session", "sess-42")]);
    assert_eq!(action, Action::Continue);
}

#[test]
fn shadow_mode_records_and_counts_but_lets_the_request_through() {
    let env = HostEnv::default();
    let rsa = tokens::rsa(Algorithm::RS256);
    let policy = remote_policy("").replace("identity:\n", "identity:\n  mode: shadow\n");
    let mut vm = vm_with_keys(&env, &policy, &[&rsa]);
    let (stream, action) = request(&mut vm, "not-a-jwt", &[("x-warden-agent", "forged")]);
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.local_reply(stream), None);
    assert_eq!(
        vm.field(stream, "warden.audit", "identity.decision").as_deref(),
        Some("shadow_deny;rule=api;reason=token_malformed")
    );
    assert_eq!(vm.field(stream, "warden.principal", "agent"), None);
    assert_eq!(vm.forwarded_header(stream, "x-warden-agent"), None, "forged headers are stripped in shadow mode too");
    assert_eq!(env.metric("warden.identity.shadow_denied.token_malformed"), 1);
}

#[test]
fn mtls_peer_identity_is_read_from_the_connection() {
    let env = HostEnv::default();
    let policy =
        "identity:\n  mtls:\n    trustDomains: [warden.test]\n  routes:\n    - name: mesh\n      agent: [mtls]\n";
    let mut vm = plugin().start(&env, policy.as_bytes()).unwrap();
    let stream = vm.new_stream().unwrap();
    vm.set_property(stream, "connection.uri_san_peer_certificate", b"spiffe://warden.test/ns/agents/sa/planner");
    let action = vm.request_headers(stream, &[(":path", "/mcp"), (":authority", "gw")], true).unwrap();
    assert_eq!(action, Action::Continue);
    assert_eq!(
        vm.field(stream, "warden.principal", "agent").as_deref(),
        Some("spiffe://warden.test/ns/agents/sa/planner")
    );
    assert_eq!(vm.field(stream, "warden.principal", "auth_methods").as_deref(), Some("mtls"));
}
