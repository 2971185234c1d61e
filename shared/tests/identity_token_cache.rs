//! The verified-token cache: hits are re-checked, bounded, and never widen what a token may do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use std::cell::Cell;
use std::time::Duration;
use warden_policy::identity::jwt::{KeyLookup, TokenError};
use warden_policy::identity::keys::{KeySet, Strictness};
use warden_policy::identity::token_cache::{TokenCache, Verifier};
use warden_policy::testing::tokens;

/// A remote key set that counts how often verification asked for it.
struct CountingKeys {
    set: KeySet,
    lookups: Cell<usize>,
}

impl KeyLookup for CountingKeys {
    fn remote_keys(&self, _issuer: usize) -> Option<&KeySet> {
        self.lookups.set(self.lookups.get() + 1);
        Some(&self.set)
    }
}

fn remote_policy() -> warden_policy::identity::compile::CompiledIdentity {
    compile(&format!(
        "identity:\n  issuers:\n    - name: corp\n      issuer: {ISSUER}\n      algorithms: [RS256]\n      jwks:\n        remote: {{cluster: jwks, path: /jwks}}\n  routes:\n    - name: api\n      agent: [jwt]\n"
    ))
}

fn counting_keys() -> CountingKeys {
    let set =
        KeySet::parse(tokens::jwks(&[&tokens::rsa(Algorithm::RS256)]).as_bytes(), Strictness::UsableKeys).unwrap();
    CountingKeys { set, lookups: Cell::new(0) }
}

/// A policy with one remote issuer, its loaded keys, and a cache of `size` entries.
fn setup(size: usize) -> (warden_policy::identity::compile::CompiledIdentity, CountingKeys, TokenCache) {
    (remote_policy(), counting_keys(), TokenCache::new(size))
}

#[test]
fn a_repeated_token_is_verified_once() {
    let (policy, keys, cache) = setup(16);
    let verifier = Verifier { keys: &keys, cache: &cache };
    let token = signed(&tokens::rsa(Algorithm::RS256));
    for _ in 0..5 {
        assert_eq!(verifier.verify(&token, &policy, &[0], now()).unwrap().subject, "agent-planner");
    }
    assert_eq!(keys.lookups.get(), 1);
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_cached_token_still_expires() {
    let (policy, keys, cache) = setup(16);
    let verifier = Verifier { keys: &keys, cache: &cache };
    let token = signed(&tokens::rsa(Algorithm::RS256)); // exp = NOW + 300, skew 60 s
    verifier.verify(&token, &policy, &[0], now()).unwrap();
    let later = now() + Duration::from_secs(361);
    assert_eq!(verifier.verify(&token, &policy, &[0], later), Err(TokenError::Expired));
}

#[test]
fn a_cached_token_is_refused_where_its_issuer_is_not_accepted() {
    let (policy, keys, cache) = setup(16);
    let verifier = Verifier { keys: &keys, cache: &cache };
    let token = signed(&tokens::rsa(Algorithm::RS256));
    verifier.verify(&token, &policy, &[0], now()).unwrap();
    assert_eq!(verifier.verify(&token, &policy, &[], now()), Err(TokenError::UnknownIssuer));
}

#[test]
fn failures_are_not_cached_and_a_tampered_token_is_no_hit() {
    let (policy, keys, cache) = setup(16);
    let verifier = Verifier { keys: &keys, cache: &cache };
    let token = signed(&tokens::rsa(Algorithm::RS256));
    verifier.verify(&token, &policy, &[0], now()).unwrap();
    let tampered = format!("{}A", token);
    assert_eq!(verifier.verify(&tampered, &policy, &[0], now()), Err(TokenError::BadSignature));
    assert_eq!(cache.len(), 1);
}

#[test]
fn the_cache_is_bounded() {
    let (policy, keys, cache) = setup(2);
    let verifier = Verifier { keys: &keys, cache: &cache };
    for i in 0..5 {
        let mut c = claims();
        c["sub"] = format!("agent-{i}").into();
        verifier.verify(&tokens::token(&tokens::rsa(Algorithm::RS256), &c), &policy, &[0], now()).unwrap();
    }
    assert_eq!(cache.len(), 2);
}

#[test]
fn a_zero_sized_cache_verifies_every_time() {
    let (policy, keys, cache) = setup(0);
    let verifier = Verifier { keys: &keys, cache: &cache };
    let token = signed(&tokens::rsa(Algorithm::RS256));
    verifier.verify(&token, &policy, &[0], now()).unwrap();
    verifier.verify(&token, &policy, &[0], now()).unwrap();
    assert_eq!(keys.lookups.get(), 2);
    assert!(cache.is_empty());
}
