//! API keys: the policy holds only SHA-256 hashes; a presented key is hashed and compared to
//! every entry in constant time, so neither timing nor an early exit tells which entry came close.

use super::compile::{ApiKeyPrincipal, ApiKeys};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Longest key accepted; longer values are refused before hashing.
pub const MAX_API_KEY_BYTES: usize = 512;

pub fn lookup<'p>(keys: &'p ApiKeys, presented: &str) -> Option<&'p ApiKeyPrincipal> {
    if presented.is_empty() || presented.len() > MAX_API_KEY_BYTES {
        return None;
    }
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Visit every entry whatever matches; remember the match as an index chosen in constant time.
    let mut found = subtle::Choice::from(0u8);
    let mut index = 0u32;
    for (i, entry) in keys.entries.iter().enumerate() {
        let hit = entry.sha256.ct_eq(&digest);
        index.conditional_assign(&(i as u32), hit);
        found |= hit;
    }
    if bool::from(found) {
        keys.entries.get(index as usize)
    } else {
        None
    }
}

/// Lowercase hex SHA-256 of a key, as written in the policy.
pub fn hash_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
