//! The error bodies Warden answers with, one builder per caller protocol, so that every filter
//! refuses in the same words: OpenAI's shape (model APIs, and any reply that is neither
//! Anthropic's nor JSON-RPC), Anthropic's Messages shape, and JSON-RPC's (MCP). Each names the
//! rule that decided, when one did, and the request id that finds the access-log line; none
//! echoes what the client sent.

use crate::model_api::Api;
use serde_json::{json, Value};

/// `{"error": {"message", "type", "code", "rule", "request_id"}}`: `kind` is OpenAI's `type`
/// (`permission_error`, `rate_limit_error`, …), `code` a stable reason code.
pub fn openai(message: &str, kind: &str, code: &str, rule: Option<&str>, request_id: &str) -> String {
    let mut error = json!({"message": message, "type": kind, "code": code, "request_id": request_id});
    if let Some(rule) = rule {
        error["rule"] = rule.into();
    }
    json!({ "error": error }).to_string()
}

/// Anthropic's `{"type": "error", "error": {"type", "message"}}`, with the same code, rule and
/// request id; the error type follows the status as Anthropic's API uses them.
pub fn anthropic(status: u32, message: &str, code: &str, rule: Option<&str>, request_id: &str) -> String {
    let kind = match status {
        429 => "rate_limit_error",
        413 => "request_too_large",
        400 => "invalid_request_error",
        401 => "authentication_error",
        503 => "overloaded_error",
        _ => "permission_error",
    };
    let mut error = json!({"type": kind, "message": message, "code": code});
    if let Some(rule) = rule {
        error["rule"] = rule.into();
    }
    json!({"type": "error", "error": error, "request_id": request_id}).to_string()
}

/// The error body for a model API's clients: Anthropic's for its Messages API, else OpenAI's.
pub fn model_api(
    api: Option<Api>,
    status: u32,
    message: &str,
    kind: &str,
    code: &str,
    rule: Option<&str>,
    request_id: &str,
) -> String {
    match api {
        Some(Api::AnthropicMessages) => anthropic(status, message, code, rule, request_id),
        _ => openai(message, kind, code, rule, request_id),
    }
}

/// A JSON-RPC error response; `id` (its raw JSON text) is `null` when the request's id could
/// not be read.
pub fn jsonrpc(id: Option<&str>, code: i64, message: &str, data: Option<&Value>) -> String {
    let id = id.unwrap_or("null");
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    match data {
        Some(data) => {
            format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message},"data":{data}}}}}"#)
        }
        None => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}}}}}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_gets_its_own_shape_with_the_same_facts() {
        let openai: Value =
            serde_json::from_str(&openai("no", "permission_error", "denied", Some("r1"), "req-1")).unwrap();
        assert_eq!(openai["error"]["code"], "denied");
        assert_eq!(openai["error"]["rule"], "r1");
        assert_eq!(openai["error"]["request_id"], "req-1");
        let anthropic: Value =
            serde_json::from_str(&model_api(Some(Api::AnthropicMessages), 429, "no", "x", "spent", None, "req-2"))
                .unwrap();
        assert_eq!(
            (anthropic["type"].as_str(), anthropic["error"]["type"].as_str()),
            (Some("error"), Some("rate_limit_error"))
        );
        assert_eq!(anthropic["request_id"], "req-2");
        assert!(anthropic["error"].get("rule").is_none());
        let rpc: Value = serde_json::from_str(&jsonrpc(Some("7"), -32600, "bad \"quote\"", None)).unwrap();
        assert_eq!((rpc["id"].as_i64(), rpc["error"]["message"].as_str()), (Some(7), Some("bad \"quote\"")));
    }
}
