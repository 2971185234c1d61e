//! JSON answers and error bodies, each way. An answer that is not what its API promises is
//! passed on as an error in the caller's shape, never half-translated.

use super::{finish_reason, stop_reason};
use serde_json::{json, Value};

/// An Anthropic Messages answer as an OpenAI Chat Completions answer. `None` when the body is
/// not a Messages answer.
pub fn messages_to_chat(body: &[u8], created: u64) -> Option<Vec<u8>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    if answer["type"] != "message" {
        return None;
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in answer["content"].as_array()? {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(json!({"id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": serde_json::to_string(&block["input"]).ok()?}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let finish = finish_reason(answer["stop_reason"].as_str().unwrap_or("end_turn"));
    let mut out = json!({
        "id": answer["id"], "object": "chat.completion", "created": created, "model": answer["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
    });
    // Usage only as the provider reported it: a made-up zero would be billed as zero.
    if answer["usage"].is_object() {
        out["usage"] = chat_usage(&answer["usage"]);
    }
    serde_json::to_vec(&out).ok()
}

/// OpenAI's usage for Anthropic's: OpenAI's prompt count includes the cached part, Anthropic's
/// `input_tokens` does not (cache reads and writes are counted apart).
pub fn chat_usage(usage: &Value) -> Value {
    let count = |key: &str| usage[key].as_u64().unwrap_or(0);
    let cached = count("cache_read_input_tokens");
    let prompt = count("input_tokens") + cached + count("cache_creation_input_tokens");
    let completion = count("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached}})
}

/// Anthropic's usage for OpenAI's.
pub fn messages_usage(usage: &Value) -> Value {
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let cached = usage["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0).min(prompt);
    json!({"input_tokens": prompt - cached, "output_tokens": usage["completion_tokens"].as_u64().unwrap_or(0),
        "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0})
}

/// An OpenAI Chat Completions answer as an Anthropic Messages answer. `None` when the body is
/// not a Chat Completions answer.
pub fn chat_to_messages(body: &[u8]) -> Option<Vec<u8>> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let choice = answer["choices"].as_array()?.first()?;
    let message = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        let input: Value = serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments }).ok()?;
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    let stop = stop_reason(choice["finish_reason"].as_str().unwrap_or("stop"));
    let mut out = json!({
        "id": answer["id"], "type": "message", "role": "assistant", "model": answer["model"],
        "content": content, "stop_reason": stop, "stop_sequence": null,
    });
    if answer["usage"].is_object() {
        out["usage"] = messages_usage(&answer["usage"]);
    }
    serde_json::to_vec(&out).ok()
}

/// The message and type of a provider's error body, in either shape.
fn error_parts(body: &[u8]) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &value["error"];
    let message =
        error["message"].as_str().map(String::from).unwrap_or_else(|| "the provider refused the request".into());
    let kind = error["type"].as_str().unwrap_or("api_error").to_string();
    (message, kind)
}

/// A provider's error (Anthropic's shape) for an OpenAI caller.
pub fn error_to_openai(body: &[u8], status: u16) -> Vec<u8> {
    let (message, kind) = error_parts(body);
    let kind = match (kind.as_str(), status) {
        (_, 429) | ("rate_limit_error", _) => "rate_limit_error",
        ("authentication_error", _) | (_, 401) => "authentication_error",
        ("invalid_request_error", _) | (_, 400) => "invalid_request_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "code": Value::Null, "param": Value::Null}})
        .to_string()
        .into_bytes()
}

/// A provider's error (OpenAI's shape) for an Anthropic caller.
pub fn error_to_anthropic(body: &[u8], status: u16) -> Vec<u8> {
    let (message, _) = error_parts(body);
    let kind = match status {
        400 | 404 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_text_tool_calls_stop_reasons_and_cached_usage() {
        let anthropic = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "Reading."}, {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 0}});
        let chat: Value =
            serde_json::from_slice(&messages_to_chat(anthropic.to_string().as_bytes(), 5).unwrap()).unwrap();
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["choices"][0]["message"]["content"], "Reading.");
        assert_eq!(chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"path\":\"a\"}");
        assert_eq!(
            chat["usage"],
            json!({"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107, "prompt_tokens_details": {"cached_tokens": 90}})
        );
        // And back: the same meaning.
        let again: Value =
            serde_json::from_slice(&chat_to_messages(&serde_json::to_vec(&chat).unwrap()).unwrap()).unwrap();
        assert_eq!(again["content"], anthropic["content"]);
        assert_eq!(again["stop_reason"], "tool_use");
        assert_eq!(again["usage"]["input_tokens"], 10);
        assert_eq!(again["usage"]["cache_read_input_tokens"], 90);
    }

    #[test]
    fn errors_take_the_callers_shape() {
        let openai: Value = serde_json::from_slice(&error_to_openai(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
            529,
        ))
        .unwrap();
        assert_eq!(openai["error"]["message"], "busy");
        assert_eq!(openai["error"]["type"], "server_error");
        let anthropic: Value =
            serde_json::from_slice(&error_to_anthropic(br#"{"error":{"message":"slow down","type":"requests"}}"#, 429))
                .unwrap();
        assert_eq!(anthropic, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
    }
}
