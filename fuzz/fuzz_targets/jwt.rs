//! JWT/JOSE: any bytes as an agent token. Verification never panics, is deterministic, and
//! accepts only tokens within the size bound that name a subject.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::identity::jwt::{verify, NoRemoteKeys};
use warden_policy::policy::parse_document;

/// An HS256 issuer (the seed corpus holds tokens it signed) and an inline EdDSA one.
const POLICY: &str = r#"{"identity": {"issuers": [
  {"name": "hs", "issuer": "https://hs.test", "algorithms": ["HS256"], "audiences": ["gw"], "tenantClaim": "tenant",
   "sharedSecret": "d2FyZGVuLWZ1enotc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY="},
  {"name": "ed", "issuer": "https://ed.test", "algorithms": ["EdDSA"],
   "jwks": {"inline": "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"SggRf1t6dnfscOuH2-N61J0q11sTbSjqZ6RqinJ7HGc\",\"kid\":\"ed-1\"}]}"}}],
  "routes": [{"name": "all", "agent": ["jwt"], "claims": {"role": ["agent"]}}]}}"#;

fn policy() -> &'static CompiledIdentity {
    static COMPILED: OnceLock<CompiledIdentity> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let document = parse_document(POLICY.as_bytes()).expect("the fuzz policy parses");
        CompiledIdentity::compile(document.identity.as_ref().expect("identity")).expect("the fuzz policy compiles")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let first = verify(token, policy(), &[0, 1], &NoRemoteKeys, &["role"], now);
    let second = verify(token, policy(), &[0, 1], &NoRemoteKeys, &["role"], now);
    assert_eq!(first, second, "verification is deterministic");
    if let Ok(verified) = first {
        assert!(token.len() <= policy().max_token_bytes);
        assert!(!verified.subject.is_empty());
        assert!(verified.issuer < 2);
    }
});
