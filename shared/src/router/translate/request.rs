//! Request bodies, each way. Every member of the source request is either carried (mapped to
//! its counterpart), known to be safe to leave out (a storage or caching hint that changes no
//! answer), or refused as [`Unsupported`].

use super::{Unsupported, DEFAULT_MAX_TOKENS};
use serde_json::{json, Map, Value};

type Result<T> = std::result::Result<T, Unsupported>;

fn unsupported<T>(what: impl Into<String>) -> Result<T> {
    Err(Unsupported::member(what))
}

/// The body as a tree, read strictly: a text holding serde_json's reserved `RawValue` key
/// anywhere is refused (a tree read from it is not the document the other filters read).
fn object(body: &[u8]) -> Result<Map<String, Value>> {
    match std::str::from_utf8(body).ok().and_then(crate::strict_json::value) {
        Some(Value::Object(map)) => Ok(map),
        _ => unsupported("a body that is not a plain JSON object"),
    }
}

/// Refuses an object with a member outside `known`: a member one side would read and the other
/// would not (a tool named twice, by `name` and `function.name`) is not carried.
fn only(value: &Value, known: &[&str], what: &str) -> Result<()> {
    match value.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        Some(extra) => unsupported(format!("{what} member {extra:?}")),
        None => Ok(()),
    }
}

fn text_of(value: &Value, what: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => return unsupported(format!("{what} content other than text")),
                }
            }
            Ok(text)
        }
        _ => unsupported(format!("{what} content")),
    }
}

/// OpenAI members that change no answer: storage, tracing and caching hints.
const CHAT_IGNORED: [&str; 5] = ["store", "metadata", "service_tier", "prompt_cache_key", "safety_identifier"];

/// An OpenAI Chat Completions request as an Anthropic Messages request for `model`.
pub fn chat_to_messages(body: &[u8], model: &str) -> Result<Vec<u8>> {
    let source = object(body)?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut system = Vec::<String>::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut max_tokens = None;
    let mut tool_choice: Option<Value> = None;
    let mut parallel = true;
    for (key, value) in &source {
        match key.as_str() {
            "model" => {}
            "messages" => {
                let Value::Array(list) = value else { return unsupported("messages") };
                for message in list {
                    chat_message(message, &mut system, &mut messages)?;
                }
            }
            "max_tokens" | "max_completion_tokens" if !value.is_null() => {
                let cap = value.as_u64().ok_or_else(|| Unsupported::member(key.as_str()))?;
                max_tokens = Some(max_tokens.map_or(cap, |m: u64| m.max(cap)));
            }
            "temperature" if !value.is_null() => match value.as_f64() {
                // Anthropic's range is 0-1; OpenAI's goes to 2.
                Some(t) if (0.0..=1.0).contains(&t) => {
                    out.insert("temperature".into(), value.clone());
                }
                _ => return unsupported("temperature above 1"),
            },
            "top_p" if !value.is_null() => {
                out.insert("top_p".into(), value.clone());
            }
            "stop" if !value.is_null() => {
                let stops = match value {
                    Value::String(s) => vec![Value::String(s.clone())],
                    Value::Array(list) => list.clone(),
                    _ => return unsupported("stop"),
                };
                out.insert("stop_sequences".into(), Value::Array(stops));
            }
            "stream" => {
                out.insert("stream".into(), value.clone());
            }
            // Anthropic streams always report usage; the translated stream gives it back when asked.
            "stream_options" => {}
            "user" if !value.is_null() => {
                out.insert("metadata".into(), json!({ "user_id": value }));
            }
            "n" if value.is_null() || value.as_u64() == Some(1) => {}
            "response_format" if value.is_null() || value["type"] == "text" => {}
            "tools" if !value.is_null() => {
                let Value::Array(tools) = value else { return unsupported("tools") };
                let mut translated = Vec::with_capacity(tools.len());
                for tool in tools {
                    if tool["type"] != "function" {
                        return unsupported("tools other than functions");
                    }
                    only(tool, &["type", "function"], "a tool's")?;
                    only(&tool["function"], &["name", "description", "parameters", "strict"], "a function's")?;
                    let function = &tool["function"];
                    let name = function["name"].as_str().ok_or_else(|| Unsupported::member("tools[].function.name"))?;
                    let mut entry = json!({"name": name, "input_schema": function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))});
                    if let Some(description) = function.get("description").filter(|d| !d.is_null()) {
                        entry["description"] = description.clone();
                    }
                    translated.push(entry);
                }
                out.insert("tools".into(), Value::Array(translated));
            }
            "tool_choice" if !value.is_null() => {
                tool_choice = Some(match value {
                    Value::String(s) if s == "auto" => json!({"type": "auto"}),
                    Value::String(s) if s == "required" => json!({"type": "any"}),
                    Value::String(s) if s == "none" => json!({"type": "none"}),
                    Value::Object(o) if o.get("type") == Some(&json!("function")) => {
                        let name =
                            value["function"]["name"].as_str().ok_or_else(|| Unsupported::member("tool_choice"))?;
                        json!({"type": "tool", "name": name})
                    }
                    _ => return unsupported("tool_choice"),
                });
            }
            "parallel_tool_calls" => parallel = value.as_bool() != Some(false),
            k if CHAT_IGNORED.contains(&k) => {}
            _ if value.is_null() => {}
            other => return unsupported(other),
        }
    }
    if !parallel {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        choice["disable_parallel_tool_use"] = true.into();
    }
    if let Some(choice) = tool_choice {
        out.insert("tool_choice".into(), choice);
    }
    if !system.is_empty() {
        out.insert("system".into(), system.join("\n\n").into());
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert("max_tokens".into(), max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).into());
    Ok(serde_json::to_vec(&Value::Object(out)).unwrap_or_default())
}

/// Appends `blocks` as a message of `role`, merged into the previous one when it has the same
/// role (Anthropic's turns alternate; OpenAI sends each tool result as its own message).
fn push_turn(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == role) {
        if let Some(content) = last["content"].as_array_mut() {
            content.extend(blocks);
            return;
        }
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// An OpenAI user content part as an Anthropic block.
fn user_part(part: &Value) -> Result<Value> {
    match part["type"].as_str() {
        Some("text") => Ok(json!({"type": "text", "text": part["text"]})),
        Some("image_url") => {
            let url = part["image_url"]["url"].as_str().ok_or_else(|| Unsupported::member("image_url"))?;
            match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                Some((media_type, data)) => {
                    Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
                }
                None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
            }
        }
        other => unsupported(format!("content parts of type {}", other.unwrap_or("(none)"))),
    }
}

fn chat_message(message: &Value, system: &mut Vec<String>, messages: &mut Vec<Value>) -> Result<()> {
    let role = message["role"].as_str().unwrap_or_default();
    match role {
        "system" | "developer" => system.push(text_of(&message["content"], "system")?),
        "user" => {
            let blocks = match &message["content"] {
                Value::String(text) => vec![json!({"type": "text", "text": text})],
                Value::Array(parts) => parts.iter().map(user_part).collect::<Result<Vec<_>>>()?,
                _ => return unsupported("user content"),
            };
            push_turn(messages, "user", blocks);
        }
        "assistant" => {
            let mut blocks = Vec::new();
            let text = text_of(&message["content"], "assistant")?;
            if !text.is_empty() {
                blocks.push(json!({"type": "text", "text": text}));
            }
            if let Some(calls) = message["tool_calls"].as_array() {
                for call in calls {
                    let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
                    let input: Value =
                        match serde_json::from_str(if arguments.trim().is_empty() { "{}" } else { arguments }) {
                            Ok(v @ Value::Object(_)) => v,
                            _ => return unsupported("tool-call arguments that are not a JSON object"),
                        };
                    blocks.push(
                        json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}),
                    );
                }
            }
            push_turn(messages, "assistant", blocks);
        }
        "tool" => {
            let content = text_of(&message["content"], "tool")?;
            let block = json!({"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": content});
            push_turn(messages, "user", vec![block]);
        }
        other => return unsupported(format!("messages of role {other:?}")),
    }
    Ok(())
}

/// Anthropic members that change no answer: prompt-caching hints.
const MESSAGES_IGNORED: [&str; 1] = ["cache_control"];

/// An Anthropic Messages request as an OpenAI Chat Completions request for `model`.
/// `max_tokens_member` is the cap's name the provider reads (`max_completion_tokens` for
/// OpenAI, `max_tokens` for self-hosted servers).
pub fn messages_to_chat(body: &[u8], model: &str, max_tokens_member: &str) -> Result<Vec<u8>> {
    let source = object(body)?;
    let mut out = Map::new();
    out.insert("model".into(), model.into());
    let mut messages = Vec::new();
    let mut parallel = true;
    if let Some(system) = source.get("system").filter(|s| !s.is_null()) {
        let text = text_of(system, "system")?;
        messages.push(json!({"role": "system", "content": text}));
    }
    for (key, value) in &source {
        match key.as_str() {
            "model" | "system" => {}
            "messages" => {
                let Value::Array(list) = value else { return unsupported("messages") };
                for message in list {
                    anthropic_message(message, &mut messages)?;
                }
            }
            "max_tokens" => {
                out.insert(max_tokens_member.into(), value.clone());
            }
            "temperature" | "top_p" if !value.is_null() => {
                out.insert(key.clone(), value.clone());
            }
            "stop_sequences" if !value.is_null() => {
                out.insert("stop".into(), value.clone());
            }
            "stream" => {
                out.insert("stream".into(), value.clone());
                if value == &Value::Bool(true) {
                    // The Anthropic stream ends with usage; ask OpenAI for it.
                    out.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
            "metadata" => {
                if let Some(user) = value.get("user_id").filter(|u| !u.is_null()) {
                    out.insert("user".into(), user.clone());
                }
            }
            "tools" if !value.is_null() => {
                let Value::Array(tools) = value else { return unsupported("tools") };
                let mut translated = Vec::with_capacity(tools.len());
                for tool in tools {
                    if tool.get("type").is_some_and(|t| t != "custom") {
                        return unsupported("server tools");
                    }
                    only(tool, &["type", "name", "description", "input_schema", "cache_control"], "a tool's")?;
                    let mut function = json!({"name": tool["name"], "parameters": tool["input_schema"]});
                    if let Some(description) = tool.get("description").filter(|d| !d.is_null()) {
                        function["description"] = description.clone();
                    }
                    translated.push(json!({"type": "function", "function": function}));
                }
                out.insert("tools".into(), Value::Array(translated));
            }
            "tool_choice" if !value.is_null() => {
                let choice = match value["type"].as_str() {
                    Some("auto") => json!("auto"),
                    Some("any") => json!("required"),
                    Some("none") => json!("none"),
                    Some("tool") => json!({"type": "function", "function": {"name": value["name"]}}),
                    _ => return unsupported("tool_choice"),
                };
                parallel = value["disable_parallel_tool_use"] != true;
                out.insert("tool_choice".into(), choice);
            }
            k if MESSAGES_IGNORED.contains(&k) => {}
            _ if value.is_null() => {}
            other => return unsupported(other),
        }
    }
    if !parallel {
        out.insert("parallel_tool_calls".into(), false.into());
    }
    out.insert("messages".into(), Value::Array(messages));
    Ok(serde_json::to_vec(&Value::Object(out)).unwrap_or_default())
}

fn anthropic_message(message: &Value, messages: &mut Vec<Value>) -> Result<()> {
    let role = message["role"].as_str().unwrap_or_default();
    let blocks = match &message["content"] {
        Value::String(text) => vec![json!({"type": "text", "text": text})],
        Value::Array(blocks) => blocks.clone(),
        _ => return unsupported("message content"),
    };
    match role {
        "user" => {
            let mut parts = Vec::new();
            for block in &blocks {
                match block["type"].as_str() {
                    Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
                    Some("image") => {
                        let source = &block["source"];
                        let url = match source["type"].as_str() {
                            Some("base64") => format!(
                                "data:{};base64,{}",
                                source["media_type"].as_str().unwrap_or_default(),
                                source["data"].as_str().unwrap_or_default()
                            ),
                            Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
                            _ => return unsupported("image sources other than base64 and url"),
                        };
                        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    // Each result becomes its own `tool` message, before the turn's other content.
                    Some("tool_result") => {
                        if block["is_error"] == true {
                            // OpenAI has no error flag: the text says so.
                            let text = format!("(error) {}", text_of(&block["content"], "tool_result")?);
                            messages
                                .push(json!({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}));
                        } else {
                            let text = text_of(&block["content"], "tool_result")?;
                            messages
                                .push(json!({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}));
                        }
                    }
                    other => return unsupported(format!("user blocks of type {}", other.unwrap_or("(none)"))),
                }
            }
            if !parts.is_empty() {
                messages.push(json!({"role": "user", "content": parts}));
            }
        }
        "assistant" => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for block in &blocks {
                match block["type"].as_str() {
                    Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                    Some("tool_use") => {
                        let arguments = serde_json::to_string(&block["input"]).unwrap_or_else(|_| "{}".into());
                        calls.push(json!({"id": block["id"], "type": "function",
                            "function": {"name": block["name"], "arguments": arguments}}));
                    }
                    other => return unsupported(format!("assistant blocks of type {}", other.unwrap_or("(none)"))),
                }
            }
            let mut message =
                json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { text.into() }});
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            messages.push(message);
        }
        other => return unsupported(format!("messages of role {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_chat_request_with_system_tools_calls_and_results_becomes_a_messages_request() {
        let chat = json!({
            "model": "smart", "max_completion_tokens": 300, "temperature": 0.2, "stop": "END", "user": "u-1",
            "parallel_tool_calls": false, "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "read_file", "description": "Reads",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Read a.txt"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "read_file", "arguments": "{\"path\":\"a.txt\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "and?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
            ]
        });
        let out = json_of(chat_to_messages(chat.to_string().as_bytes(), "claude-sonnet-4-5").unwrap());
        assert_eq!(out["model"], "claude-sonnet-4-5");
        assert_eq!(out["system"], "Be brief.");
        assert_eq!(out["max_tokens"], 300);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"]["user_id"], "u-1");
        assert_eq!(out["tool_choice"], json!({"type": "any", "disable_parallel_tool_use": true}));
        assert_eq!(out["tools"][0]["input_schema"]["properties"]["path"]["type"], "string");
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "the tool result and the next user text share one user turn");
        assert_eq!(
            messages[1]["content"][0],
            json!({"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a.txt"}})
        );
        assert_eq!(
            messages[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "call_1", "content": "hello"})
        );
        assert_eq!(
            messages[2]["content"][2]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "AAAA"})
        );
    }

    #[test]
    fn what_has_no_counterpart_is_refused_by_name() {
        let cases = [
            (json!({"model": "m", "messages": [], "n": 2}), "n"),
            (json!({"model": "m", "messages": [], "logprobs": true}), "logprobs"),
            (json!({"model": "m", "messages": [], "temperature": 1.5}), "temperature above 1"),
            (json!({"model": "m", "messages": [], "response_format": {"type": "json_object"}}), "response_format"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "content parts of type input_audio",
            ),
        ];
        for (body, what) in cases {
            assert_eq!(chat_to_messages(body.to_string().as_bytes(), "c"), Err(Unsupported::member(what)), "{body}");
        }
        let thinking = json!({"model": "m", "max_tokens": 5, "messages": [], "thinking": {"type": "enabled"}});
        assert_eq!(
            messages_to_chat(thinking.to_string().as_bytes(), "g", "max_tokens"),
            Err(Unsupported::member("thinking"))
        );
        let top_k = json!({"model": "m", "max_tokens": 5, "messages": [], "top_k": 5});
        assert_eq!(
            messages_to_chat(top_k.to_string().as_bytes(), "g", "max_tokens"),
            Err(Unsupported::member("top_k"))
        );
    }

    #[test]
    fn a_messages_request_with_system_tools_uses_and_results_becomes_a_chat_request() {
        let messages = json!({
            "model": "claude", "max_tokens": 200, "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "stream": true, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "tools": [{"name": "read_file", "description": "Reads", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "Read a.txt"},
                {"role": "assistant", "content": [{"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "hello"}]},
                    {"type": "text", "text": "and?"}]}
            ]
        });
        let out =
            json_of(messages_to_chat(messages.to_string().as_bytes(), "gpt-4o", "max_completion_tokens").unwrap());
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["max_completion_tokens"], 200);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        assert_eq!(out["parallel_tool_calls"], false);
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["user"], "u-1");
        assert_eq!(out["tools"][0]["function"]["parameters"], json!({"type": "object"}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[2]["tool_calls"][0]["function"]["arguments"], "{\"path\":\"a.txt\"}");
        assert_eq!(m[2]["content"], "Reading.");
        assert_eq!(m[3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "hello"}));
        assert_eq!(m[4]["content"][0]["text"], "and?");
    }
}
