//! End to end through the real Envoy binary (`WARDEN_ENVOY_VERSION`, default the newest
//! supported), with `envoy/identity.yaml`: JWT, API key and mTLS agents, user tokens, key
//! rotation and fetch failures, the audit log and the stats Envoy exposes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::Duration;
use warden_integration_tests::audit;
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::{EchoUpstream, JwksBehaviour, JwksServer};
use warden_integration_tests::http_client;
use warden_policy::testing::tokens::{self, SigningKey};

const CONFIG: &str = "envoy/identity.yaml";
const ISSUER: &str = "https://idp.warden.test";
const DEMO_API_KEY: &str = "wk-ci-bot-3c1f9e2a7d5b4e08";

struct Bed {
    envoy: Envoy,
    _upstream: EchoUpstream,
    jwks: JwksServer,
}

async fn start(policy: Option<&str>, jwks: JwksBehaviour) -> Bed {
    let upstream = EchoUpstream::start(0).await.unwrap();
    let jwks = JwksServer::start(0, jwks).await.unwrap();
    let mut builder = Envoy::builder(CONFIG).cluster("upstream", upstream.port()).cluster("jwks", jwks.port());
    if let Some(policy) = policy {
        builder = builder.policy("warden.identity", policy);
    }
    let envoy = builder.start().await.unwrap();
    Bed { envoy, _upstream: upstream, jwks }
}

fn claims(sub: &str, scope: &str) -> Value {
    let now = tokens::now_secs();
    json!({"iss": ISSUER, "aud": "warden-gateway", "sub": sub, "exp": now + 600, "iat": now, "scope": scope, "tenant": "acme"})
}

fn token(key: &SigningKey, sub: &str, scope: &str) -> String {
    tokens::token(key, &claims(sub, scope))
}

async fn send(client: &reqwest::Client, url: String, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Value) {
    let mut request = client.post(url).body("{}");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn rsa() -> SigningKey {
    tokens::rsa(Algorithm::RS256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_agent_reaches_the_upstream_with_its_principal_and_without_its_token() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let bearer = format!("Bearer {}", token(&rsa(), "agent-planner", "models:call"));
    let (status, _, body) = send(
        &client,
        format!("{}/v1/chat/completions", bed.envoy.url("agents_plain")),
        &[
            ("authorization", &bearer),
            ("x-warden-agent", "forged-admin"),
            ("x-warden-tenant", "forged"),
            ("x-agent-session", "sess-1"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = &body["echo"]["headers"];
    assert_eq!(seen["x-warden-agent"], "agent-planner");
    assert_eq!(seen["x-warden-tenant"], "acme");
    assert_eq!(seen["x-warden-session"], "sess-1");
    assert_eq!(seen["x-warden-auth-method"], "jwt");
    assert!(seen.get("authorization").is_none(), "the agent's token never reaches the upstream: {seen}");

    let audit = bed.envoy.wait_for_access_log(1).await;
    let record = audit.last().unwrap();
    let principal = audit::part(record, "principal").unwrap_or_else(|| panic!("{record:#}"));
    assert_eq!(principal["agent"], "agent-planner");
    assert_eq!(principal["tenant"], "acme");
    assert_eq!(principal["session"], "sess-1");
    assert_eq!(principal["auth_methods"], serde_json::json!(["jwt"]));
    assert_eq!(audit::field(record, "identity", "decision").unwrap(), "allow;rule=llm;reason=authenticated");
    audit::check_schema(&audit).unwrap();
    assert_eq!(bed.envoy.stat("wasmcustom.warden.identity.allowed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_credentials_get_401_with_a_bearer_challenge() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let url = format!("{}/v1/chat/completions", bed.envoy.url("agents_plain"));

    let (status, headers, body) = send(&client, url.clone(), &[]).await;
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").unwrap().contains("error=\"invalid_token\""));
    assert_eq!(body["error"]["code"], "missing_credentials");
    assert_eq!(body["error"]["rule"], "llm");
    assert!(body.get("echo").is_none(), "the upstream was not called");

    let mut expired = claims("agent-planner", "models:call");
    expired["exp"] = json!(tokens::now_secs() - 3600);
    let expired = tokens::token(&rsa(), &expired);
    let (status, headers, body) = send(&client, url.clone(), &[("authorization", &format!("Bearer {expired}"))]).await;
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").unwrap().contains("token has expired"));
    assert_eq!(body["error"]["code"], "token_expired");
    assert!(!body.to_string().contains(&expired[..30]), "the token is never echoed");
    assert!(!body["error"]["request_id"].as_str().unwrap_or("").is_empty(), "the denial carries Envoy's request id");

    let forged = tokens::token(&tokens::rsa_other(), &claims("agent-planner", "models:call"));
    let (status, _, body) = send(&client, url, &[("authorization", &format!("Bearer {forged}"))]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unknown_kid")));
    assert_eq!(bed.envoy.stat("wasmcustom.warden.identity.denied.token_expired").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_scope_gets_403_naming_the_scope() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let bearer = format!("Bearer {}", token(&rsa(), "agent-reader", "tools:read"));
    let (status, headers, body) =
        send(&client, format!("{}/v1/chat/completions", bed.envoy.url("agents_plain")), &[("authorization", &bearer)])
            .await;
    assert_eq!(status, 403);
    assert!(header(&headers, "www-authenticate").unwrap().contains("error=\"insufficient_scope\", error_description=\"this route needs the scopes: models:call\", scope=\"models:call\""));
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert_eq!(body["error"]["type"], "permission_error");
    let audit = bed.envoy.wait_for_access_log(1).await;
    let record = audit.last().unwrap();
    let agent = audit::field(record, "principal", "agent");
    assert_eq!(agent.as_deref(), Some("agent-reader"), "the refused agent was verified and is audited");
    assert_eq!(audit::field(record, "identity", "decision").unwrap(), "deny;rule=llm;reason=insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_the_agent_they_map_to() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let url = format!("{}/v1/embeddings", bed.envoy.url("agents_plain"));
    let (status, _, body) = send(&client, url.clone(), &[("x-api-key", DEMO_API_KEY)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["headers"]["x-warden-agent"], "ci-bot");
    assert_eq!(body["echo"]["headers"]["x-warden-auth-method"], "api_key");
    assert!(body["echo"]["headers"].get("x-api-key").is_none());
    let (status, _, body) = send(&client, url, &[("x-api-key", "wk-guessed-key")]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unknown_api_key")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_agent_acting_for_a_user_is_identified_by_its_spiffe_id() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let url = format!("https://localhost:{}/mcp", bed.envoy.port("agents_mtls"));
    let mut user_claims = claims("alice@acme.test", "");
    user_claims["token_use"] = "user".into();
    let user = tokens::token(&rsa(), &user_claims);
    let agent_scope = format!("Bearer {}", token(&rsa(), "spiffe://warden.test/ns/agents/sa/planner", "tools:call"));

    let planner = http_client::mtls("agent-planner").unwrap();
    let (status, _, body) =
        send(&planner, url.clone(), &[("x-user-token", &user), ("authorization", &agent_scope)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["headers"]["x-warden-agent"], "spiffe://warden.test/ns/agents/sa/planner");
    assert_eq!(body["echo"]["headers"]["x-warden-user"], "alice@acme.test");
    assert_eq!(body["echo"]["headers"]["x-warden-auth-method"], "mtls+jwt");

    // The user's token cannot stand in for the agent's, nor the agent's for the user's, and
    // a user of another tenant is not carried in by an agent of acme.
    let user_as_agent = format!("Bearer {user}");
    let (status, _, body) =
        send(&planner, url.clone(), &[("x-user-token", &user), ("authorization", &user_as_agent)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("wrong_token_kind")));
    let other_user = {
        let mut c = claims("bob@acme.test", "");
        c["token_use"] = "user".into();
        tokens::token(&rsa(), &c)
    };
    let (status, _, body) =
        send(&planner, url.clone(), &[("x-user-token", &other_user), ("authorization", &user_as_agent)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("wrong_token_kind")));
    let agent_as_user = agent_scope.trim_start_matches("Bearer ").to_string();
    let (status, _, body) =
        send(&planner, url.clone(), &[("x-user-token", &agent_as_user), ("authorization", &agent_scope)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("same_token_twice")));
    let foreign_user = {
        let mut c = claims("eve@globex.test", "");
        c["token_use"] = "user".into();
        c["tenant"] = "globex".into();
        tokens::token(&rsa(), &c)
    };
    let (status, _, body) =
        send(&planner, url.clone(), &[("x-user-token", &foreign_user), ("authorization", &agent_scope)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("tenant_mismatch")));

    // Without the user it acts for, the MCP route refuses the agent.
    let (status, _, body) = send(&planner, url.clone(), &[("authorization", &agent_scope)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("missing_user")));

    // A certificate from a foreign trust domain is refused even with valid tokens.
    let intruder = http_client::mtls("agent-foreign").unwrap();
    let (status, _, body) = send(&intruder, url, &[("x-user-token", &user), ("authorization", &agent_scope)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("untrusted_peer")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_by_one_agent_is_refused_to_another() {
    let bed = start(None, JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let url = format!("{}/v1/chat/completions", bed.envoy.url("agents_plain"));
    let first = format!("Bearer {}", token(&rsa(), "agent-a", "models:call"));
    let second = format!("Bearer {}", token(&rsa(), "agent-b", "models:call"));
    for _ in 0..3 {
        let (status, _, _) =
            send(&client, url.clone(), &[("authorization", &first), ("x-agent-session", "shared-sess")]).await;
        assert_eq!(status, 200);
    }
    let (status, _, body) = send(&client, url, &[("authorization", &second), ("x-agent-session", "shared-sess")]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("session_agent_mismatch")));
}

fn rotation_policy() -> String {
    r#"identity:
  keyWait: 3s
  issuers:
    - name: corp-idp
      issuer: https://idp.warden.test
      algorithms: [RS256, ES256]
      jwks:
        remote:
          cluster: jwks
          path: /.well-known/jwks.json
          retryInterval: 1s
          unknownKidRefetchInterval: 1s
  routes:
    - name: llm
      agent: [jwt]
"#
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let bed = start(Some(&rotation_policy()), JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let url = format!("{}/v1/chat/completions", bed.envoy.url("agents_plain"));
    let old = format!("Bearer {}", token(&rsa(), "agent-old-key", ""));
    assert_eq!(send(&client, url.clone(), &[("authorization", &old)]).await.0, 200);

    let mut new_key = tokens::ec256();
    new_key.kid = "rotated-in".into();
    bed.jwks.set(JwksBehaviour::Serve(tokens::jwks(&[&rsa(), &new_key])));
    let fetches_before = bed.jwks.fetches();
    let new = format!("Bearer {}", token(&new_key, "agent-new-key", ""));
    let (status, _, body) = send(&client, url, &[("authorization", &new)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["echo"]["path"], "/v1/chat/completions");
    assert!(bed.jwks.fetches() > fetches_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_key_server_denies_until_it_recovers() {
    let bed = start(Some(&rotation_policy()), JwksBehaviour::Fail(500)).await;
    let client = http_client::plain().unwrap();
    let url = format!("{}/v1/chat/completions", bed.envoy.url("agents_plain"));
    let bearer = format!("Bearer {}", token(&rsa(), "agent-planner", ""));
    // Let the first fetches fail, then ask.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, body) = send(&client, url.clone(), &[("authorization", &bearer)]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("keys_unavailable")));
    assert!(bed.envoy.stat("wasmcustom.warden.identity.jwks_fetch.failure").await >= 1);

    bed.jwks.set(JwksBehaviour::Serve(tokens::jwks(&[&rsa()])));
    let mut status = 0;
    for _ in 0..40 {
        status = send(&client, url.clone(), &[("authorization", &bearer)]).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "allowed once the key server answers again");
    assert!(bed.envoy.stat("wasmcustom.warden.identity.jwks_fetch.success").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_lets_denied_requests_through_and_logs_them() {
    let policy = rotation_policy().replace("identity:\n", "identity:\n  mode: shadow\n");
    let bed = start(Some(&policy), JwksBehaviour::Serve(tokens::jwks(&[&rsa()]))).await;
    let client = http_client::plain().unwrap();
    let (status, _, body) = send(
        &client,
        format!("{}/v1/chat/completions", bed.envoy.url("agents_plain")),
        &[("authorization", "Bearer not.a.jwt")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let audit = bed.envoy.wait_for_access_log(1).await;
    let decision = audit::field(audit.last().unwrap(), "identity", "decision");
    assert_eq!(decision.as_deref(), Some("shadow_deny;rule=llm;reason=token_malformed"));
    assert_eq!(bed.envoy.stat("wasmcustom.warden.identity.shadow_denied.token_malformed").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_refuses_a_policy_with_a_typo_and_says_which_field() {
    let upstream = EchoUpstream::start(0).await.unwrap();
    let policy = rotation_policy().replace("retryInterval", "retryIntervl");
    let result =
        Envoy::builder(CONFIG).cluster("upstream", upstream.port()).policy("warden.identity", &policy).start().await;
    let error = format!("{:#}", result.err().expect("Envoy must refuse the config"));
    assert!(error.contains("identity.issuers[0].jwks.remote.retryIntervl: unknown field `retryIntervl`"), "{error}");
}
