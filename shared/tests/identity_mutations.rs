//! Untrusted bytes against the token parser: every single-character change to a valid token is
//! refused, and random input never verifies and never panics. Uses an HMAC issuer so that each
//! check is fast; key selection and claim checks are the same for every algorithm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use warden_policy::identity::jwt::{self, TokenError};
use warden_policy::strict_json::StrictObject;
use warden_policy::testing::tokens::sign_raw;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-mutations";

fn hmac_policy() -> warden_policy::identity::compile::CompiledIdentity {
    let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET);
    compile(&format!(
        "identity:\n  issuers:\n    - name: hmac\n      issuer: {ISSUER}\n      audiences: [{AUDIENCE}]\n      algorithms: [HS256]\n      sharedSecret: {secret}\n  routes:\n    - name: api\n      agent: [jwt]\n"
    ))
}

fn verify(policy: &warden_policy::identity::compile::CompiledIdentity, token: &str) -> Result<String, TokenError> {
    jwt::verify(token, policy, &[0], &NoRemoteKeys, &[], now()).map(|v| v.subject)
}

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn every_single_character_change_to_a_valid_token_is_refused() {
    let policy = hmac_policy();
    let token = sign_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims().to_string(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    );
    assert_eq!(verify(&policy, &token).as_deref(), Ok("agent-planner"));
    let alphabet = b"AQgw09-_.=+/ ";
    let mut checked = 0;
    for position in 0..token.len() {
        for &replacement in alphabet {
            let mut mutated = token.clone().into_bytes();
            if mutated[position] == replacement {
                continue;
            }
            mutated[position] = replacement;
            let mutated = String::from_utf8(mutated).unwrap();
            assert!(
                verify(&policy, &mutated).is_err(),
                "a token changed at byte {position} to {:?} verified",
                replacement as char
            );
            checked += 1;
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn truncated_and_extended_tokens_are_refused() {
    let policy = hmac_policy();
    let token =
        sign_raw(r#"{"alg":"HS256"}"#, &claims().to_string(), &EncodingKey::from_secret(SECRET), Algorithm::HS256);
    for end in 0..token.len() {
        assert!(verify(&policy, &token[..end]).is_err(), "prefix of {end} bytes verified");
    }
    for suffix in ["A", ".", ".x", "=", "\0"] {
        assert!(verify(&policy, &format!("{token}{suffix}")).is_err(), "suffix {suffix:?} verified");
    }
}

#[test]
fn random_input_never_verifies_and_never_panics() {
    let policy = hmac_policy();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pieces: [&[u8]; 8] = [b".", b"eyJ", b"hbGciOiJIUzI1NiJ9", b"\"", b"{}", b"%", b"\xff", b"A"];
    for _ in 0..5_000 {
        let mut bytes = Vec::new();
        for _ in 0..rng.below(40) {
            if rng.below(2) == 0 {
                bytes.extend_from_slice(pieces[rng.below(pieces.len())]);
            } else {
                bytes.push(rng.next() as u8);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(verify(&policy, &text).is_err(), "{text:?} verified");
        // The strict JSON reader sees the same untrusted bytes once a token part is decoded.
        let _ = StrictObject::parse(&bytes);
    }
}
