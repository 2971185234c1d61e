//! The token attack matrix: each attack its own test, each asserting the exact refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use warden_policy::identity::authenticate::Outcome;
use warden_policy::testing::tokens::{self, b64, sign_raw};

fn rsa() -> tokens::SigningKey {
    tokens::rsa(Algorithm::RS256)
}

fn header_json(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"{kid}"}}"#)
}

#[test]
fn alg_none_is_refused() {
    let token = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims().to_string().as_bytes()));
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "alg_none");
    // Also with a non-empty signature part and odd casing.
    let token = format!("{}.{}.AAAA", b64(br#"{"alg":"NoNe"}"#), b64(claims().to_string().as_bytes()));
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "alg_none");
}

#[test]
fn hs256_signed_with_the_issuers_rsa_public_key_is_refused() {
    // Key confusion: the attacker uses the published RSA public key as an HMAC secret.
    let forged = sign_raw(
        &header_json("HS256", "rsa-1"),
        &claims().to_string(),
        &EncodingKey::from_secret(tokens::RSA_PUBLIC_PEM),
        Algorithm::HS256,
    );
    assert_denied(run(&default_policy(), &bearer(&forged)), 401, "alg_not_allowed");
}

#[test]
fn unknown_kid_is_refused() {
    let mut key = rsa();
    key.kid = "rotated-away".into();
    assert_denied(run(&default_policy(), &bearer(&signed(&key))), 401, "unknown_kid");
}

#[test]
fn kid_with_path_traversal_is_refused() {
    let mut key = rsa();
    key.kid = "../../../../etc/passwd".into();
    assert_denied(run(&default_policy(), &bearer(&signed(&key))), 401, "malformed_kid");
}

#[test]
fn kid_with_injection_strings_is_refused() {
    for kid in ["' OR '1'='1", "rsa-1\"; DROP TABLE keys;--", "rsa-1\r\nX-Injected: 1", "$(curl evil)", "rsa-1%00"] {
        let token = sign_raw(
            &format!(r#"{{"alg":"RS256","kid":{}}}"#, serde_json::to_string(kid).unwrap()),
            &claims().to_string(),
            &rsa().key,
            Algorithm::RS256,
        );
        assert_denied(run(&default_policy(), &bearer(&token)), 401, "malformed_kid");
    }
}

#[test]
fn expired_token_is_refused() {
    let mut c = claims();
    c["exp"] = (NOW - 61).into(); // past the 60 s skew
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "token_expired");
}

#[test]
fn expiry_within_clock_skew_is_accepted() {
    let mut c = claims();
    c["exp"] = (NOW - 30).into();
    assert_allowed(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))));
}

#[test]
fn nbf_in_the_future_is_refused() {
    let mut c = claims();
    c["nbf"] = (NOW + 120).into();
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "token_not_yet_valid");
}

#[test]
fn iat_in_the_future_is_refused() {
    let mut c = claims();
    c["iat"] = (NOW + 3600).into();
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "iat_in_future");
}

#[test]
fn wrong_issuer_is_refused() {
    let mut c = claims();
    c["iss"] = "https://idp.evil.test".into();
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "unknown_issuer");
}

#[test]
fn wrong_audience_is_refused() {
    let mut c = claims();
    c["aud"] = serde_json::json!(["some-other-api"]);
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "bad_audience");
}

#[test]
fn missing_audience_is_refused() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "bad_audience");
}

#[test]
fn missing_exp_is_refused() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "missing_exp");
}

#[test]
fn tampered_payload_is_refused() {
    let token = signed(&rsa());
    let parts: Vec<&str> = token.split('.').collect();
    let mut c = claims();
    c["sub"] = "admin-agent".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(c.to_string().as_bytes()), parts[2]);
    assert_denied(run(&default_policy(), &bearer(&tampered)), 401, "bad_signature");
}

#[test]
fn stripped_signature_is_refused() {
    let token = signed(&rsa());
    let stripped = &token[..token.rfind('.').unwrap() + 1];
    assert_denied(run(&default_policy(), &bearer(stripped)), 401, "missing_signature");
}

#[test]
fn signature_by_another_key_is_refused() {
    let mut other = tokens::rsa_other();
    other.kid = "rsa-1".into(); // claims to be the trusted key
    assert_denied(run(&default_policy(), &bearer(&signed(&other))), 401, "bad_signature");
}

#[test]
fn malformed_base64_is_refused() {
    let token = signed(&rsa());
    let broken = format!("{}!{}", &token[..5], &token[6..]);
    assert_denied(run(&default_policy(), &bearer(&broken)), 401, "token_malformed");
    // Padding is not base64url as JWS uses it.
    let parts: Vec<&str> = token.split('.').collect();
    let padded = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
    assert_denied(run(&default_policy(), &bearer(&padded)), 401, "token_malformed");
}

#[test]
fn malformed_json_is_refused() {
    let token = sign_raw(&header_json("RS256", "rsa-1"), r#"{"iss": "x", "sub": "#, &rsa().key, Algorithm::RS256);
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "token_malformed");
    let token = sign_raw("[\"RS256\"]", &claims().to_string(), &rsa().key, Algorithm::RS256);
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "token_malformed");
}

#[test]
fn oversized_token_is_refused() {
    let mut c = claims();
    c["padding"] = "x".repeat(9 * 1024).into();
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "token_too_large");
}

#[test]
fn duplicate_keys_in_header_are_refused() {
    let token =
        sign_raw(r#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#, &claims().to_string(), &rsa().key, Algorithm::RS256);
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "token_malformed");
}

#[test]
fn duplicate_keys_in_payload_are_refused() {
    let payload =
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"agent-planner","exp":{},"sub":"admin"}}"#, NOW + 300);
    let token = sign_raw(&header_json("RS256", "rsa-1"), &payload, &rsa().key, Algorithm::RS256);
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "token_malformed");
}

#[test]
fn token_in_query_string_is_ignored_when_not_configured() {
    let path = format!("/v1/chat/completions?access_token={}", signed(&rsa()));
    assert_denied(run_with(&default_policy(), &headers(&[]), None, &path), 401, "missing_credentials");
}

#[test]
fn token_in_query_string_is_read_when_configured() {
    let policy = compile(&policy_yaml("[RS256]", "  agentToken:\n    queryParam: access_token\n"));
    let path = format!("/v1/chat/completions?x=1&access_token={}", signed(&rsa()));
    assert_allowed(run_with(&policy, &headers(&[]), None, &path));
}

#[test]
fn jwks_entry_whose_kty_does_not_match_the_token_alg_is_refused() {
    // ES256 token whose kid names the RSA key.
    let mut key = tokens::ec256();
    key.kid = "rsa-1".into();
    assert_denied(run(&default_policy(), &bearer(&signed(&key))), 401, "key_alg_mismatch");
}

#[test]
fn jwks_entry_pinned_to_another_alg_is_refused() {
    // The JWKS pins rsa-1 to RS256; an RS384 token from the same key does not verify with it.
    let key = tokens::SigningKey { alg: Algorithm::RS384, ..tokens::rsa(Algorithm::RS384) };
    assert_denied(run(&default_policy(), &bearer(&signed(&key))), 401, "key_alg_mismatch");
}

#[test]
fn unknown_crit_header_is_refused() {
    let token = sign_raw(
        r#"{"alg":"RS256","kid":"rsa-1","crit":["exp-v2"],"exp-v2":1}"#,
        &claims().to_string(),
        &rsa().key,
        Algorithm::RS256,
    );
    assert_denied(run(&default_policy(), &bearer(&token)), 401, "unsupported_crit");
}

#[test]
fn empty_bearer_is_refused() {
    assert_denied(run(&default_policy(), &headers(&[("authorization", "Bearer ")])), 401, "empty_bearer");
    assert_denied(run(&default_policy(), &headers(&[("authorization", "Bearer")])), 401, "empty_bearer");
}

#[test]
fn two_authorization_headers_are_refused() {
    let good = format!("Bearer {}", signed(&rsa()));
    let h = headers(&[("authorization", &good), ("authorization", &good)]);
    assert_denied(run(&default_policy(), &h), 401, "duplicate_credentials");
}

#[test]
fn encrypted_tokens_with_five_parts_are_refused() {
    assert_denied(run(&default_policy(), &bearer("a.b.c.d.e")), 401, "token_malformed");
}

#[test]
fn missing_credentials_are_refused() {
    assert_denied(run(&default_policy(), &headers(&[])), 401, "missing_credentials");
}

#[test]
fn token_without_subject_is_refused() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_denied(run(&default_policy(), &bearer(&tokens::token(&rsa(), &c))), 401, "missing_subject");
}

#[test]
fn every_configured_algorithm_verifies() {
    let policy = default_policy();
    for key in [tokens::rsa(Algorithm::RS256), tokens::ec256(), tokens::ec384(), tokens::ed25519()] {
        let principal = assert_allowed(run(&policy, &bearer(&signed(&key))));
        assert_eq!(principal.agent, "agent-planner", "{:?}", key.alg);
    }
}

#[test]
fn rsa_family_algorithms_verify_with_an_unpinned_key() {
    // A JWKS entry without `alg` may verify any RSA algorithm the issuer allows.
    let mut jwks: serde_json::Value = serde_json::from_str(&tokens::jwks(&[&tokens::rsa(Algorithm::RS256)])).unwrap();
    jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    let yaml = policy_yaml("[RS256, RS384, RS512, PS256]", "").replace(&standard_jwks(), &jwks.to_string());
    let policy = compile(&yaml);
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256] {
        assert_allowed(run(&policy, &bearer(&signed(&tokens::rsa(alg)))));
    }
}

#[test]
fn algorithm_not_listed_for_the_issuer_is_refused() {
    let policy = compile(&policy_yaml("[ES256]", ""));
    assert_denied(run(&policy, &bearer(&signed(&rsa()))), 401, "alg_not_allowed");
}

#[test]
fn hs256_verifies_only_for_an_issuer_with_a_shared_secret() {
    let secret = b"0123456789abcdef0123456789abcdef-test-secret";
    let yaml = format!(
        "identity:\n  issuers:\n    - name: hmac\n      issuer: {ISSUER}\n      algorithms: [HS256]\n      sharedSecret: {}\n  routes:\n    - name: api\n      agent: [jwt]\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret)
    );
    let policy = compile(&yaml);
    let good =
        sign_raw(r#"{"alg":"HS256"}"#, &claims().to_string(), &EncodingKey::from_secret(secret), Algorithm::HS256);
    assert_allowed(run(&policy, &bearer(&good)));
    let bad = sign_raw(
        r#"{"alg":"HS256"}"#,
        &claims().to_string(),
        &EncodingKey::from_secret(b"another-secret-another-secret-00"),
        Algorithm::HS256,
    );
    assert_denied(run(&policy, &bearer(&bad)), 401, "bad_signature");
}

#[test]
fn denial_never_echoes_the_token() {
    let mut c = claims();
    c["exp"] = (NOW - 3600).into();
    let token = tokens::token(&rsa(), &c);
    let Outcome::Deny(denial) = run(&default_policy(), &bearer(&token)) else { panic!("expected deny") };
    let reply = warden_policy::identity::denial::reply(&denial, "req-1");
    let body = String::from_utf8(reply.body).unwrap();
    let signature = token.rsplit('.').next().unwrap();
    assert!(!body.contains(signature) && !body.contains(&token[..20]), "{body}");
    let challenge = &reply.headers.iter().find(|(k, _)| *k == "www-authenticate").unwrap().1;
    assert_eq!(
        challenge,
        r#"Bearer realm="warden", error="invalid_token", error_description="agent token: token has expired""#
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "token_expired");
    assert_eq!(json["error"]["rule"], "api");
    assert_eq!(json["error"]["request_id"], "req-1");
}
