//! JSON-RPC/MCP bodies: what the strict reader accepts is JSON any reader accepts, with the
//! same messages: version, method and id as a lenient parser reads them.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use warden_policy::tool_acl::jsonrpc::parse_body;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_body(data, 16) else { return };
    let value: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        // Found by this target: a member Warden never reads may hold a number beyond f64
        // (`8e888`), which a tree builder refuses and Warden, reading only its own members,
        // does not. Every member Warden acts on is typed (ids, methods; arguments are read
        // whole and refused if a number is out of range), so only that difference is allowed.
        Err(e) if e.to_string().starts_with("number out of range") => return,
        Err(e) => panic!("an accepted body is JSON: {e}"),
    };
    let items = match (&value, body.batch) {
        (Value::Array(items), true) => items.clone(),
        (Value::Object(_), false) => vec![value.clone()],
        _ => panic!("batch flag disagrees with the JSON"),
    };
    assert_eq!(items.len(), body.messages.len());
    for (item, message) in items.iter().zip(&body.messages) {
        assert_eq!(item["jsonrpc"], "2.0");
        assert_eq!(item.get("method").and_then(Value::as_str), message.method());
        if let Some(id) = message.id() {
            let read: Value = serde_json::from_str(id.get()).expect("an id is JSON");
            assert_eq!(Some(&read), item.get("id"));
            // Strings or integers, however large (the SDKs accept big integers too).
            let integer = id.get().bytes().all(|b| b.is_ascii_digit() || b == b'-');
            assert!(read.is_string() || (read.is_number() && integer), "ids are strings or integers");
        }
    }
});
