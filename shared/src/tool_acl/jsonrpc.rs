//! JSON-RPC 2.0 messages as MCP's Streamable HTTP transport POSTs them: one message or a batch,
//! read into borrowed, typed structs. Anything a server might read differently from us (a
//! duplicate member, a wrong version, an id that is neither string nor integer) is refused.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Standard JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Warden's own code for a policy denial (in the server-error range the spec reserves).
pub const POLICY_DENIED: i64 = -32001;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonRpcError {
    #[error("the body is not JSON: {0}")]
    Parse(String),
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(&'static str),
    #[error("the batch has {0} messages, more than the {1} allowed")]
    BatchTooLarge(usize, usize),
}

impl JsonRpcError {
    pub fn code(&self) -> i64 {
        match self {
            JsonRpcError::Parse(_) => PARSE_ERROR,
            JsonRpcError::Invalid(_) | JsonRpcError::BatchTooLarge(..) => INVALID_REQUEST,
        }
    }
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    jsonrpc: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// A member that is present is `Some`, even when it is `null` (serde's `Option` would make
/// `"id": null` look absent, turning a request into a notification).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// One message from the client.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    Notification {
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    /// The client answering a request the server sent it (sampling, elicitation, roots).
    Response {
        id: &'a RawValue,
    },
}

impl Message<'_> {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&RawValue> {
        match self {
            Message::Request { id, .. } | Message::Response { id } => Some(id),
            Message::Notification { .. } => None,
        }
    }
}

/// A POSTed body: one message, or a batch (MCP 2025-03-26; removed from later versions, still
/// parsed so that no server that accepts batches receives one unchecked).
#[derive(Debug, Clone)]
pub struct Body<'a> {
    pub messages: Vec<Message<'a>>,
    pub batch: bool,
}

pub fn parse_body(bytes: &[u8], max_batch: usize) -> Result<Body<'_>, JsonRpcError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(|e| JsonRpcError::Parse(e.to_string()))?;
        if items.is_empty() {
            return Err(JsonRpcError::Invalid("an empty batch"));
        }
        if items.len() > max_batch {
            return Err(JsonRpcError::BatchTooLarge(items.len(), max_batch));
        }
        let messages = items.into_iter().map(|raw| parse_message(raw.get())).collect::<Result<_, _>>()?;
        return Ok(Body { messages, batch: true });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| JsonRpcError::Parse("the body is not UTF-8".into()))?;
    Ok(Body { messages: vec![parse_message(text)?], batch: false })
}

fn parse_message(text: &str) -> Result<Message<'_>, JsonRpcError> {
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    if first != Some(b'{') {
        return Err(JsonRpcError::Invalid("a message is not a JSON object"));
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            JsonRpcError::Parse(e.to_string())
        } else {
            JsonRpcError::Invalid("a member has the wrong type or appears twice")
        }
    })?;
    if wire.jsonrpc != "2.0" {
        return Err(JsonRpcError::Invalid("jsonrpc must be \"2.0\""));
    }
    if let Some(id) = wire.id {
        check_id(id)?;
    }
    if let Some(params) = wire.params {
        if !matches!(params.get().as_bytes().first(), Some(b'{' | b'[')) {
            return Err(JsonRpcError::Invalid("params must be an object or an array"));
        }
    }
    match (wire.method, wire.id) {
        (Some(_), _) if wire.result.is_some() || wire.error.is_some() => {
            Err(JsonRpcError::Invalid("a message is both a request and a response"))
        }
        (Some(method), Some(id)) => Ok(Message::Request { id, method, params: wire.params }),
        (Some(method), None) => Ok(Message::Notification { method, params: wire.params }),
        (None, Some(id)) if wire.result.is_some() != wire.error.is_some() => Ok(Message::Response { id }),
        (None, _) => Err(JsonRpcError::Invalid("a message has neither a method nor exactly one of result and error")),
    }
}

/// MCP requires ids to be strings or integers; `null`, fractions and objects are refused.
fn check_id(id: &RawValue) -> Result<(), JsonRpcError> {
    let text = id.get();
    let ok = match text.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => text.bytes().skip(1).all(|b| b.is_ascii_digit()),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(JsonRpcError::Invalid("id must be a string or an integer"))
    }
}

/// A successful JSON-RPC response carrying `result` (already JSON).
pub fn result_response(id: &RawValue, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_notification_response() {
        let body = parse_body(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#, 4).unwrap();
        assert!(!body.batch);
        assert!(matches!(&body.messages[0], Message::Request { method, .. } if method == "tools/call"));
        let body = parse_body(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, 4).unwrap();
        assert!(matches!(&body.messages[0], Message::Notification { .. }));
        let body = parse_body(br#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#, 4).unwrap();
        assert!(matches!(&body.messages[0], Message::Response { .. }));
    }

    #[test]
    fn escaped_method_names_are_decoded() {
        let body = parse_body(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#, 4).unwrap();
        assert_eq!(body.messages[0].method(), Some("tools/call"));
    }

    #[test]
    fn refusals() {
        let cases: &[&[u8]] = &[
            br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            br#"{"id":1,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","method":"tools/call"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            br#"[]"#,
            br#"[1]"#,
            br#"{"jsonrpc":"2.0","#,
            b"\xff",
            b"",
        ];
        for case in cases {
            assert!(parse_body(case, 4).is_err(), "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn batch_limits() {
        let one = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let batch = format!("[{one},{one},{one}]");
        assert_eq!(parse_body(batch.as_bytes(), 3).unwrap().messages.len(), 3);
        assert_eq!(parse_body(batch.as_bytes(), 2).unwrap_err(), JsonRpcError::BatchTooLarge(3, 2));
    }

    #[test]
    fn error_responses_echo_the_id() {
        let id = RawValue::from_string("\"a\"".into()).unwrap();
        assert_eq!(
            crate::error_body::jsonrpc(Some(id.get()), -32601, "no", None),
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"no"}}"#
        );
        assert!(crate::error_body::jsonrpc(None, -32700, "bad", None).contains(r#""id":null"#));
    }
}
