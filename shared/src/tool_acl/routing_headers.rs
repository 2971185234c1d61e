//! MCP 2026-07-28 repeats a request's method and the name it acts on in HTTP headers
//! (`Mcp-Method`, `Mcp-Name`), so that proxies and servers can route without reading the body.
//! Warden decides on the body; a header that says something else could steer a server, a route
//! or a rate limit keyed on it to another tool than the one decided. So they must agree, or the
//! request is refused as a protocol fault.

use crate::tool_acl::jsonrpc::{Body, Message};
use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// The routing headers of one request, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingHeaders {
    pub method: Option<String>,
    pub name: Option<String>,
    /// One of them sent twice: readers disagree on which counts (the SDKs refuse it).
    pub repeated: bool,
}

/// The members a name can be in, read as raw JSON so that another member's type never matters.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(default, borrow)]
    name: Option<&'a RawValue>,
    #[serde(default, borrow)]
    uri: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "taskId")]
    task_id: Option<&'a RawValue>,
}

impl RoutingHeaders {
    /// The routing headers among a request's headers (names lowercase, as Envoy gives them).
    pub fn read(headers: &[(String, String)]) -> RoutingHeaders {
        let all = |name: &str| headers.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let (method, name) = (all(METHOD_HEADER), all(NAME_HEADER));
        let repeated = method.len() > 1 || name.len() > 1 || all(VERSION_HEADER).len() > 1;
        RoutingHeaders { method: method.into_iter().next(), name: name.into_iter().next(), repeated }
    }

    /// Why the headers disagree with the body, if they do.
    pub fn disagreement(&self, body: &Body) -> Option<&'static str> {
        if self.repeated {
            return Some("a routing header sent twice");
        }
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
        // The member each name-bearing method mirrors (the SDKs' own table); on any other
        // method servers ignore the header, and so does this check.
        let member = match method.as_ref() {
            "tools/call" | "prompts/get" => params.and_then(|n| n.name),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => params.and_then(|n| n.uri),
            m if m.starts_with("tasks/") => params.and_then(|n| n.task_id),
            _ => return None,
        };
        let named = member.and_then(|raw| serde_json::from_str::<Cow<str>>(raw.get()).ok());
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
        let headers =
            RoutingHeaders { method: method.map(String::from), name: name.map(String::from), repeated: false };
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
        // rmcp names subscriptions and tasks too; other methods' names are not looked at.
        let subscribe = r#"{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"file:///a"}}"#;
        assert_eq!(check(Some("resources/subscribe"), Some("file:///a"), subscribe), None);
        let task = r#"{"jsonrpc":"2.0","id":5,"method":"tasks/get","params":{"taskId":"t-1"}}"#;
        assert_eq!(check(Some("tasks/get"), Some("t-1"), task), None);
        let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
        assert_eq!(check(Some("tools/list"), Some("anything"), list), None);
        // Another member's type does not matter.
        let odd = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_order","uri":5}}"#;
        assert_eq!(check(Some("tools/call"), Some("get_order"), odd), None);
    }

    #[test]
    fn headers_that_say_something_else_are_refused() {
        assert!(check(Some("tools/list"), None, CALL).is_some());
        assert!(check(Some("tools/call"), Some("issue_refund"), CALL).is_some());
        assert!(check(None, Some("=?base64?not base64?="), CALL).is_some());
        let batch = format!("[{CALL}]");
        assert!(check(Some("tools/call"), None, &batch).is_some());
        let task = r#"{"jsonrpc":"2.0","id":5,"method":"tasks/cancel","params":{"taskId":"t-1"}}"#;
        assert!(check(Some("tasks/cancel"), Some("t-2"), task).is_some());
        let twice =
            |name: &str| RoutingHeaders::read(&[("mcp-name".into(), "get_order".into()), (name.into(), "x".into())]);
        let body = parse_body(CALL.as_bytes(), 16).unwrap();
        assert!(
            twice("mcp-name").disagreement(&body).is_some(),
            "the first agrees, a later reader may take the second"
        );
        assert!(twice("x-other").disagreement(&body).is_none());
        let unnamed = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#;
        assert!(check(None, Some("get_order"), unnamed).is_some());
    }
}
