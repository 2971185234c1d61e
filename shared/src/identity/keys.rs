//! Verification keys: a JWKS document turned into keys bound to the algorithms they may verify.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::str::FromStr;

/// RSA moduli below this many bytes (2048 bits) are refused.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// A key set larger than this is refused: no honest issuer publishes that many keys.
pub const MAX_KEYS: usize = 64;

/// The kind of public key, which fixes the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyFamily {
    /// The family an algorithm needs. `None` for HMAC, whose key is the issuer's shared secret.
    pub fn for_algorithm(alg: Algorithm) -> Option<KeyFamily> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(KeyFamily::Rsa),
            Algorithm::ES256 => Some(KeyFamily::EcP256),
            Algorithm::ES384 => Some(KeyFamily::EcP384),
            Algorithm::EdDSA => Some(KeyFamily::Ed25519),
            // HMAC uses the issuer's shared secret; anything newer is unknown here.
            _ => None,
        }
    }
}

/// One public key, with what it may verify.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The `alg` the JWKS pinned for this key, if any.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether this key may verify a token signed with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        KeyFamily::for_algorithm(alg) == Some(self.family) && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    Malformed(String),
    #[error("key {index} ({kid}): {detail}")]
    BadKey { index: usize, kid: String, detail: String },
    #[error("has more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("has no usable signing key")]
    Empty,
}

/// How strictly to read a key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// Inline in the policy: every key must be a usable signing key.
    EveryKey,
    /// Fetched from an issuer: keys for other uses or algorithms are skipped, as issuers
    /// publish keys for more than this proxy needs; the set must still yield one usable key.
    UsableKeys,
}

/// The usable keys of one issuer.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    /// Keys skipped as unusable when the set was read leniently.
    pub skipped: usize,
}

#[derive(Deserialize)]
struct JwksDocument<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
}

impl KeySet {
    pub fn parse(json: &[u8], strictness: Strictness) -> Result<KeySet, JwksError> {
        let document: JwksDocument = serde_json::from_slice(json).map_err(|e| JwksError::Malformed(e.to_string()))?;
        if document.keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let mut set = KeySet::default();
        for (index, raw) in document.keys.iter().enumerate() {
            match read_key(raw) {
                Ok(key) => set.keys.push(key),
                Err((kid, detail)) if strictness == Strictness::EveryKey => {
                    return Err(JwksError::BadKey { index, kid, detail });
                }
                Err(_) => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn by_kid(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys without regard to `kid` that could verify `alg`: used for tokens without `kid`.
    pub fn accepting(&self, alg: Algorithm) -> impl Iterator<Item = &VerifyKey> {
        self.keys.iter().filter(move |k| k.accepts(alg))
    }
}

fn read_key(raw: &RawValue) -> Result<VerifyKey, (String, String)> {
    let jwk: Jwk = serde_json::from_str(raw.get()).map_err(|e| ("?".to_string(), format!("not a JWK: {e}")))?;
    let kid = jwk.common.key_id.clone();
    let label = kid.clone().unwrap_or_else(|| "no kid".to_string());
    let fail = |detail: String| (label.clone(), detail);
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err(fail("is not a signing key (use is not \"sig\")".to_string()));
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(declared) => Some(
            Algorithm::from_str(&declared.to_string())
                .map_err(|_| fail(format!("alg {declared} is not a JWS signing algorithm")))?,
        ),
    };
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let modulus_len = base64_len(&rsa.n);
            if modulus_len < MIN_RSA_MODULUS_BYTES {
                return Err(fail(format!("RSA modulus is {} bits, below 2048", modulus_len * 8)));
            }
            KeyFamily::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyFamily::EcP256,
            EllipticCurve::P384 => KeyFamily::EcP384,
            ref other => return Err(fail(format!("curve {other:?} is not supported"))),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => KeyFamily::Ed25519,
        AlgorithmParameters::OctetKeyPair(okp) => {
            return Err(fail(format!("curve {:?} is not supported", okp.curve)));
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(fail("symmetric keys do not belong in a JWKS; use the issuer's sharedSecret".to_string()));
        }
        _ => return Err(fail("key type is not supported".to_string())),
    };
    // kty and alg must agree: an RSA key that says it is for ES256 is a broken or hostile set.
    if let Some(alg) = alg {
        if KeyFamily::for_algorithm(alg) != Some(family) {
            return Err(fail(format!("kty does not match its alg {alg:?}")));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| fail(format!("unusable key material: {e}")))?;
    Ok(VerifyKey { kid, family, alg, key })
}

/// Decoded length of an unpadded base64url string.
fn base64_len(text: &str) -> usize {
    text.trim_end_matches('=').len() * 3 / 4
}
