//! File paths in arguments: normalising is idempotent and leaves no dot segment or empty one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::tool_acl::file_path::{normalize, within};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    let Some(normal) = normalize(path) else { return };
    assert_eq!(normalize(&normal).as_deref(), Some(normal.as_str()), "idempotent");
    assert!(normal.starts_with('/'));
    assert!(normal == "/" || !normal.ends_with('/'));
    assert!(!normal[1..].split('/').any(|s| s.is_empty() && normal != "/" || s == "." || s == ".."), "{normal}");
    assert!(!normal.contains('\\'));
    assert!(within(&normal, "/") && within(&normal, &normal));
});
