//! Canonical JSON: idempotent, and the same document as the input to a JSON reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden_policy::canonical::write;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut once = Vec::new();
    if write(text, &[], &mut once).is_err() {
        return;
    }
    let once_text = std::str::from_utf8(&once).expect("canonical JSON is UTF-8");
    let mut twice = Vec::new();
    write(once_text, &[], &mut twice).expect("canonical JSON is canonical input");
    assert_eq!(once, twice, "idempotent");
    // Found by this target: serde_json's tree reader takes its reserved `RawValue` key for
    // another document; Warden never reads such a text as a tree (`strict_json::value`).
    let Some(a) = warden_policy::strict_json::value(text) else { return };
    let b: Value = serde_json::from_slice(&once).expect("the output is JSON");
    assert_eq!(a, b, "same document");
});
