//! Verified tokens remembered per VM, so an agent that sends the same token on every call pays
//! for its signature check once. RS256 and ES256 verification costs about a millisecond inside
//! a Wasm VM; a cache hit costs a hash lookup. Envoy's own `jwt_authn` filter does the same.
//!
//! Only fully verified tokens are stored, keyed by the exact token text. A hit is re-checked
//! against the clock (`exp`, `nbf`, `iat`) and the issuers allowed where it is presented, so a
//! cached token expires on time and a user token is never accepted as an agent token. The cache
//! is cleared whenever a key set changes, so a key removed by the issuer stops working at once.

use super::compile::CompiledIdentity;
use super::jwt::{self, KeyLookup, TokenError, VerifiedToken};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct TokenCache {
    max_entries: usize,
    entries: RefCell<HashMap<String, VerifiedToken>>,
}

impl TokenCache {
    pub fn new(max_entries: usize) -> Self {
        Self { max_entries, entries: RefCell::new(HashMap::new()) }
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }

    fn insert(&self, token: &str, verified: &VerifiedToken) {
        if self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        if entries.len() >= self.max_entries {
            // Make room by dropping the entry that expires first: it is the least useful.
            let soonest = entries
                .iter()
                .min_by(|a, b| a.1.times.exp.unwrap_or(f64::MAX).total_cmp(&b.1.times.exp.unwrap_or(f64::MAX)))
                .map(|(k, _)| k.clone());
            if let Some(key) = soonest {
                entries.remove(&key);
            }
        }
        entries.insert(token.to_string(), verified.clone());
    }
}

/// Where verification finds its keys and remembers its results.
pub struct Verifier<'a> {
    pub keys: &'a dyn KeyLookup,
    pub cache: &'a TokenCache,
}

impl Verifier<'_> {
    /// [`jwt::verify`], answered from the cache when this exact token verified before.
    pub fn verify(
        &self,
        token: &str,
        policy: &CompiledIdentity,
        allowed_issuers: &[usize],
        now: SystemTime,
    ) -> Result<VerifiedToken, TokenError> {
        if token.len() > policy.max_token_bytes {
            return Err(TokenError::TooLarge(policy.max_token_bytes));
        }
        let hit = self.cache.entries.borrow().get(token).cloned();
        if let Some(verified) = hit {
            if !allowed_issuers.contains(&verified.issuer) {
                return Err(TokenError::UnknownIssuer);
            }
            jwt::check_times(&verified.times, &policy.issuers[verified.issuer], policy.clock_skew, now)?;
            return Ok(verified);
        }
        let claim_names: Vec<&str> = policy.claim_names.iter().map(String::as_str).collect();
        let verified = jwt::verify(token, policy, allowed_issuers, self.keys, &claim_names, now)?;
        self.cache.insert(token, &verified);
        Ok(verified)
    }
}
