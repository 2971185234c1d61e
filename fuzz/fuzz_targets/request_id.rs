//! JSON-RPC ids compared as the SDKs compare them: the relation is symmetric and reflexive.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use warden_policy::tool_acl::request_id::IdKey;

fn key(text: &[u8]) -> Option<IdKey> {
    let text = std::str::from_utf8(text).ok()?;
    let raw: Box<RawValue> = serde_json::from_str(text).ok()?;
    IdKey::of(&raw)
}

fuzz_target!(|data: &[u8]| {
    let at = data.iter().position(|&b| b == b'|').unwrap_or(data.len());
    let (a, b) = (key(&data[..at]), key(data.get(at + 1..).unwrap_or_default()));
    if let Some(a) = &a {
        assert!(a.aliases(a), "reflexive");
    }
    if let (Some(a), Some(b)) = (a, b) {
        assert_eq!(a.aliases(&b), b.aliases(&a), "symmetric");
    }
});
