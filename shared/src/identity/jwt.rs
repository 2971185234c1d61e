//! JWT verification: parse strictly, pick the key the policy allows, check the signature with
//! `jsonwebtoken`, then the claims. The token's own `alg` only ever narrows what the issuer's
//! configuration allows; it never widens it.

use super::compile::{CompiledIdentity, Issuer, IssuerKeys};
use super::keys::{KeySet, VerifyKey};
use crate::strict_json::StrictObject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAX_KID_BYTES: usize = 128;
const MAX_ACTOR_DEPTH: usize = 8;

/// Why a token was refused. Each variant has a stable reason code for metrics and logs, and a
/// description safe to return to the caller: neither ever contains the token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("unsigned tokens (alg none) are not accepted")]
    AlgNone,
    #[error("token algorithm is not accepted for this issuer")]
    AlgNotAllowed,
    #[error("token header names a critical extension this proxy does not implement")]
    UnsupportedCrit,
    #[error("token has no signature")]
    MissingSignature,
    #[error("token issuer is not trusted here")]
    UnknownIssuer,
    #[error("token key id is malformed")]
    MalformedKid,
    #[error("token key id is not in the issuer's key set")]
    UnknownKid,
    /// As `UnknownKid`, for a fetched key set that a refetch may bring up to date.
    #[error("token key id is not in the issuer's key set")]
    UnknownRemoteKid { issuer: usize },
    #[error("the issuer's keys are not loaded yet")]
    KeysNotLoaded { issuer: usize },
    #[error("the key named by the token cannot verify its algorithm")]
    KeyAlgMismatch,
    #[error("token has no key id and the issuer has several keys for its algorithm")]
    AmbiguousKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token has no expiry")]
    MissingExp,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token has no subject")]
    MissingSubject,
}

impl TokenError {
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge(_) => "token_too_large",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::AlgNone => "alg_none",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::UnsupportedCrit => "unsupported_crit",
            TokenError::MissingSignature => "missing_signature",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::MalformedKid => "malformed_kid",
            TokenError::UnknownKid | TokenError::UnknownRemoteKid { .. } => "unknown_kid",
            TokenError::KeysNotLoaded { .. } => "keys_unavailable",
            TokenError::KeyAlgMismatch => "key_alg_mismatch",
            TokenError::AmbiguousKey => "ambiguous_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::MissingExp => "missing_exp",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "iat_in_future",
            TokenError::BadAudience => "bad_audience",
            TokenError::MissingSubject => "missing_subject",
        }
    }
}

/// Key sets fetched at run time, by issuer index.
pub trait KeyLookup {
    fn remote_keys(&self, issuer: usize) -> Option<&KeySet>;
}

/// For policies whose keys are all inline (approvers).
pub struct NoRemoteKeys;

impl KeyLookup for NoRemoteKeys {
    fn remote_keys(&self, _issuer: usize) -> Option<&KeySet> {
        None
    }
}

/// A token's time claims, kept so a cached verification can be re-checked against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TokenTimes {
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub issuer: usize,
    pub subject: String,
    pub scopes: Vec<String>,
    pub tenant: Option<String>,
    /// RFC 8693 actors, the current actor first.
    pub actors: Vec<String>,
    /// The authentication context class (`acr`), for step-up requirements.
    pub acr: Option<String>,
    /// The claims a route asked about, as found: (claim, values).
    pub claims: Vec<(String, Vec<String>)>,
    /// The token's audiences.
    pub audiences: Vec<String>,
    /// The claims a token slot looks at that the token carries: its string value, or `None`
    /// for a value of another type.
    pub slot_claims: Vec<(String, Option<String>)>,
    pub times: TokenTimes,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// Verifies `token` as signed by one of `allowed_issuers`. `claim_names` are extra claims
/// to read for route requirements.
pub fn verify(
    token: &str,
    policy: &CompiledIdentity,
    allowed_issuers: &[usize],
    keys: &dyn KeyLookup,
    claim_names: &[&str],
    now: SystemTime,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > policy.max_token_bytes {
        return Err(TokenError::TooLarge(policy.max_token_bytes));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a JWS compact token has exactly three parts"));
    };
    let header_bytes = decode_part(header_b64, "header is not base64url")?;
    let header = StrictObject::parse(&header_bytes)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with unique keys"))?;
    let alg_name: String = header.get("alg").ok().flatten().ok_or(TokenError::Malformed("header has no alg string"))?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if header.contains("crit") {
        return Err(TokenError::UnsupportedCrit);
    }
    let kid: Option<String> = header.get("kid").map_err(|_| TokenError::MalformedKid)?;
    if let Some(kid) = &kid {
        check_kid(kid)?;
    }
    if signature_b64.is_empty() {
        return Err(TokenError::MissingSignature);
    }

    let payload_bytes = decode_part(payload_b64, "payload is not base64url")?;
    let claims = StrictObject::parse(&payload_bytes)
        .map_err(|_| TokenError::Malformed("payload is not a JSON object with unique keys"))?;
    let iss: String = claims.get("iss").ok().flatten().ok_or(TokenError::UnknownIssuer)?;
    let issuer_index = *allowed_issuers
        .iter()
        .find(|&&i| policy.issuers.get(i).is_some_and(|issuer| issuer.iss == iss))
        .ok_or(TokenError::UnknownIssuer)?;
    let issuer = &policy.issuers[issuer_index];

    let alg = Algorithm::from_str(&alg_name).map_err(|_| TokenError::AlgNotAllowed)?;
    if !issuer.algorithms.contains(&alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let key = select_key(issuer, issuer_index, keys, alg, kid.as_deref())?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    match jsonwebtoken::crypto::verify(signature_b64, signing_input.as_bytes(), key, alg) {
        Ok(true) => {}
        Ok(false) | Err(_) => return Err(TokenError::BadSignature),
    }

    // The signature holds: from here on the claims are the issuer's word.
    let times = TokenTimes {
        exp: numeric_date(&claims, "exp")?,
        nbf: numeric_date(&claims, "nbf")?,
        iat: numeric_date(&claims, "iat")?,
    };
    check_times(&times, issuer, policy.clock_skew, now)?;
    check_audience(&claims, issuer)?;
    let subject: String =
        claims.get("sub").ok().flatten().filter(|s: &String| !s.is_empty()).ok_or(TokenError::MissingSubject)?;
    let scopes = match claims.get::<StringOrList>(&issuer.scope_claim) {
        Ok(Some(StringOrList::One(s))) => s.split_ascii_whitespace().map(str::to_string).collect(),
        Ok(Some(StringOrList::Many(list))) => list,
        Ok(None) => Vec::new(),
        Err(_) => return Err(TokenError::Malformed("scope claim is neither a string nor a list of strings")),
    };
    let tenant = match &issuer.tenant_claim {
        Some(name) => claims.get::<String>(name).map_err(|_| TokenError::Malformed("tenant claim is not a string"))?,
        None => None,
    };
    let actors = match claims.raw("act") {
        Some(raw) => actor_chain(raw.get().as_bytes())?,
        None => Vec::new(),
    };
    let extra = claim_names
        .iter()
        .filter_map(|name| match claims.get::<StringOrList>(name) {
            Ok(Some(values)) => Some((name.to_string(), values.into_vec())),
            _ => None,
        })
        .collect();
    let acr = claims.get::<String>("acr").map_err(|_| TokenError::Malformed("acr claim is not a string"))?;
    let audiences = claims.get::<StringOrList>("aud").ok().flatten().map(StringOrList::into_vec).unwrap_or_default();
    let slot_claims = policy
        .slot_claim_names
        .iter()
        .filter(|name| claims.contains(name))
        .map(|name| (name.clone(), claims.get::<String>(name).ok().flatten()))
        .collect();
    Ok(VerifiedToken {
        issuer: issuer_index,
        subject,
        scopes,
        tenant,
        actors,
        acr,
        claims: extra,
        audiences,
        slot_claims,
        times,
    })
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what))
}

/// A `kid` is only ever compared, never used as a path or a query; still, anything outside a
/// plain identifier alphabet is refused before it can reach a log line or trigger a refetch.
fn check_kid(kid: &str) -> Result<(), TokenError> {
    let plain = kid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:=+".contains(&b));
    if kid.is_empty() || kid.len() > MAX_KID_BYTES || !plain || kid.contains("..") {
        return Err(TokenError::MalformedKid);
    }
    Ok(())
}

fn select_key<'k>(
    issuer: &'k Issuer,
    issuer_index: usize,
    keys: &'k dyn KeyLookup,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<&'k DecodingKey, TokenError> {
    let (set, unknown_kid) = match &issuer.keys {
        IssuerKeys::SharedSecret(secret) => return Ok(secret),
        IssuerKeys::Inline(set) => (set, TokenError::UnknownKid),
        IssuerKeys::Remote(_) => (
            keys.remote_keys(issuer_index).ok_or(TokenError::KeysNotLoaded { issuer: issuer_index })?,
            TokenError::UnknownRemoteKid { issuer: issuer_index },
        ),
    };
    let key: &VerifyKey = match kid {
        Some(kid) => set.by_kid(kid).ok_or(unknown_kid)?,
        None => {
            let mut candidates = set.accepting(alg);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => only,
                (None, _) => return Err(TokenError::KeyAlgMismatch),
                (Some(_), Some(_)) => return Err(TokenError::AmbiguousKey),
            }
        }
    };
    if !key.accepts(alg) {
        return Err(TokenError::KeyAlgMismatch);
    }
    Ok(&key.key)
}

fn numeric_date(claims: &StrictObject, name: &'static str) -> Result<Option<f64>, TokenError> {
    match claims.get::<f64>(name) {
        Ok(Some(v)) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
        Ok(None) => Ok(None),
        _ => Err(TokenError::Malformed("a time claim is not a NumericDate")),
    }
}

/// `exp`, `nbf` and `iat` against this proxy's clock, with the configured skew.
pub fn check_times(times: &TokenTimes, issuer: &Issuer, skew: Duration, now: SystemTime) -> Result<(), TokenError> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let skew = skew.as_secs_f64();
    match times.exp {
        Some(exp) if now > exp + skew => return Err(TokenError::Expired),
        Some(_) => {}
        None if issuer.require_exp => return Err(TokenError::MissingExp),
        None => {}
    }
    if times.nbf.is_some_and(|nbf| nbf > now + skew) {
        return Err(TokenError::NotYetValid);
    }
    if times.iat.is_some_and(|iat| iat > now + skew) {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(())
}

fn check_audience(claims: &StrictObject, issuer: &Issuer) -> Result<(), TokenError> {
    if issuer.audiences.is_empty() {
        return Ok(());
    }
    let aud = claims.get::<StringOrList>("aud").map_err(|_| TokenError::BadAudience)?.ok_or(TokenError::BadAudience)?;
    if aud.into_vec().iter().any(|a| issuer.audiences.contains(a)) {
        Ok(())
    } else {
        Err(TokenError::BadAudience)
    }
}

/// Reads an RFC 8693 `act` claim: `{"sub": "agent", "act": {"sub": "earlier actor", ...}}`.
fn actor_chain(mut act: &[u8]) -> Result<Vec<String>, TokenError> {
    let mut chain = Vec::new();
    loop {
        if chain.len() == MAX_ACTOR_DEPTH {
            return Err(TokenError::Malformed("act claim nests too deeply"));
        }
        let object = StrictObject::parse(act)
            .map_err(|_| TokenError::Malformed("act claim is not an object with unique keys"))?;
        let sub: String = object.get("sub").ok().flatten().ok_or(TokenError::Malformed("act claim has no sub"))?;
        chain.push(sub);
        match object.raw("act") {
            Some(inner) => act = inner.get().as_bytes(),
            None => return Ok(chain),
        }
    }
}
