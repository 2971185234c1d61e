//! What an MCP server is sent: the request without the approvals spent at the gateway.
//!
//! An approval (`params._meta["warden/approval"]`) is Warden's credential: it is checked and
//! used up here, the server has no use for it, and a server holding it could show it where it
//! was not meant to go. So it is taken out of every message, as identity takes out the agent's
//! key; every other member and value is kept as sent, in order (the whitespace between the
//! members of the objects rewritten is not).

use crate::strict_json::{StrictJsonError, StrictObject};
use crate::tool_acl::approval::META_KEY;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The body (one JSON-RPC message or a batch) without approvals, or `None` when no message
/// carries one. The body has been read as JSON-RPC already; an error here means it was not.
pub fn without_approvals(body: &[u8]) -> Result<Option<String>, StrictJsonError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return message_without_approval(body);
    }
    let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| StrictJsonError::Malformed(e.to_string()))?;
    let mut changed = false;
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        match message_without_approval(item.get().as_bytes())? {
            Some(message) => {
                changed = true;
                kept.push(Cow::Owned(message));
            }
            None => kept.push(Cow::Borrowed(item.get())),
        }
    }
    Ok(changed.then(|| format!("[{}]", kept.join(","))))
}

fn message_without_approval(message: &[u8]) -> Result<Option<String>, StrictJsonError> {
    let message = StrictObject::parse(message)?;
    let Some(params) = object(message.raw("params"))? else { return Ok(None) };
    let Some(meta) = object(params.raw("_meta"))? else { return Ok(None) };
    if !meta.contains(META_KEY) {
        return Ok(None);
    }
    let meta = replaced(&meta, META_KEY, None);
    let params = replaced(&params, "_meta", Some(&meta));
    Ok(Some(replaced(&message, "params", Some(&params))))
}

/// The member as an object; `None` when absent or not an object (nothing to take out).
fn object(raw: Option<&RawValue>) -> Result<Option<StrictObject<'_>>, StrictJsonError> {
    match raw {
        Some(raw) if raw.get().starts_with('{') => StrictObject::parse(raw.get().as_bytes()).map(Some),
        _ => Ok(None),
    }
}

/// The object with member `key` given a new value, or left out (`None`).
fn replaced(object: &StrictObject, key: &str, value: Option<&str>) -> String {
    object.rewritten(|name, raw| if name == key { value.map(Cow::Borrowed) } else { Some(Cow::Borrowed(raw.get())) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_approval_is_taken_out_and_the_rest_kept_as_sent() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"issue_refund","arguments":{"amount": 1.50},"_meta":{"progressToken":3,"warden/approval":"eyJ.x.y"}}}"#;
        let sent = without_approvals(body).unwrap().unwrap();
        assert_eq!(
            sent,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"issue_refund","arguments":{"amount": 1.50},"_meta":{"progressToken":3}}}"#
        );
    }

    #[test]
    fn whitespace_and_escaped_member_names_keep_the_document() {
        let body = br#" { "jsonrpc" : "2.0", "id" : 1, "method" : "tools/call",
            "par\u0061ms" : { "name" : "t", "arguments" : { "a" : [1, 2] },
              "_meta" : { "warden\/approval" : "eyJ.x.y", "k" : "v" } } } "#;
        let sent: serde_json::Value = serde_json::from_str(&without_approvals(body).unwrap().unwrap()).unwrap();
        let expected = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"a": [1, 2]}, "_meta": {"k": "v"}}});
        assert_eq!(sent, expected);
    }

    #[test]
    fn an_escaped_key_is_the_same_key() {
        // JSON may write `/` as `\/`: the server would read the same member.
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"warden\/approval":"eyJ.x.y"}}}"#;
        let sent = without_approvals(body).unwrap().unwrap();
        assert!(!sent.contains("eyJ"), "{sent}");
    }

    #[test]
    fn a_batch_loses_only_its_approvals_and_a_body_without_one_is_left_alone() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{"warden/approval":"eyJ.x.y"}}}]"#;
        let sent = without_approvals(body).unwrap().unwrap();
        assert_eq!(
            sent,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","_meta":{}}}]"#
        );
        let plain =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":"warden/approval"}}"#;
        assert_eq!(without_approvals(plain).unwrap(), None);
        assert_eq!(without_approvals(br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#).unwrap(), None);
    }
}
