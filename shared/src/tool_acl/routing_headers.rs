//! MCP 2026-07-28 repeats a request's method and the name it acts on in HTTP headers
//! (`Mcp-Method`, `Mcp-Name`), so that proxies and servers can route without reading the body.
//! Warden decides on the body; a header that says something else could steer a server, a route
//! or a rate limit keyed on it to another tool than the one decided. So they must agree, or the
//! request is refused as a protocol fault.

use crate::tool_acl::jsonrpc::{Body, Message};
use base64::Engine;
use serde::Deserialize;
use std::borrow::Cow;

pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";

/// The routing headers of one request, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingHeaders {
    pub method: Option<String>,
    pub name: Option<String>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    uri: Option<Cow<'a, str>>,
}

impl RoutingHeaders {
    /// Why the headers disagree with the body, if they do.
    pub fn disagreement(&self, body: &Body) -> Option<&'static str> {
        if self.method.is_none() && self.name.is_none() {
            return None;
        }
        // The headers describe one message: a batch cannot be described by them.
        let ([message], false) = (body.messages.as_slice(), body.batch) else {
            return Some("routing headers on a batch");
        };
        let (method, params) = match message {
            Message::Request { method, params, .. } | Message::Notification { method, params } => (method, params),
            Message::Response { .. } => return Some("routing headers on a response"),
        };
        if self.method.as_deref().is_some_and(|m| m != method) {
            return Some("Mcp-Method is not the body's method");
        }
        let Some(header) = &self.name else { return None };
        let params = params.and_then(|p| serde_json::from_str::<Named>(p.get()).ok());
        let named = match method.as_ref() {
            "tools/call" | "prompts/get" => params.and_then(|n| n.name),
            "resources/read" => params.and_then(|n| n.uri),
            // Other methods name nothing; a name sent with one says nothing the body does.
            _ => return Some("Mcp-Name on a method that names nothing"),
        };
        match (decode(header), named) {
            (Some(header), Some(named)) if header == named => None,
            _ => Some("Mcp-Name is not the name in the body"),
        }
    }
}

/// A header value as MCP 2026-07-28 encodes it: verbatim, or `=?base64?<standard base64 of
/// the UTF-8>?=` for what a header cannot carry. A malformed encoding decodes to nothing, so it
/// never matches.
fn decode(value: &str) -> Option<String> {
    let Some(payload) = value.strip_prefix("=?base64?").and_then(|v| v.strip_suffix("?=")) else {
        return Some(value.to_string());
    };
    // The engine refuses non-canonical padding and trailing bits, as the SDKs do.
    let bytes = base64::engine::general_purpose::STANDARD.decode(payload).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tool_acl::jsonrpc::parse_body;

    fn check(method: Option<&str>, name: Option<&str>, body: &str) -> Option<&'static str> {
        let headers = RoutingHeaders { method: method.map(String::from), name: name.map(String::from) };
        headers.disagreement(&parse_body(body.as_bytes(), 16).unwrap())
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","arguments":{}}}"#;

    #[test]
    fn headers_that_say_what_the_body_says_pass() {
        assert_eq!(check(None, None, CALL), None);
        assert_eq!(check(Some("tools/call"), Some("get_order"), CALL), None);
        // base64 of "get_order"
        assert_eq!(check(Some("tools/call"), Some("=?base64?Z2V0X29yZGVy?="), CALL), None);
        let read = r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}"#;
        assert_eq!(check(Some("resources/read"), Some("file:///a"), read), None);
    }

    #[test]
    fn headers_that_say_something_else_are_refused() {
        assert!(check(Some("tools/list"), None, CALL).is_some());
        assert!(check(Some("tools/call"), Some("issue_refund"), CALL).is_some());
        assert!(check(None, Some("=?base64?not base64?="), CALL).is_some());
        let batch = format!("[{CALL}]");
        assert!(check(Some("tools/call"), None, &batch).is_some());
        let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
        assert!(check(Some("tools/list"), Some("get_order"), list).is_some());
        let unnamed = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#;
        assert!(check(None, Some("get_order"), unnamed).is_some());
    }
}
