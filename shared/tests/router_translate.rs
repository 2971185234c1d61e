//! Streamed answers translated between the APIs: cut anywhere, a stream translates to the same
//! events (the translator holds only an incomplete event), and what the agent rebuilds from the
//! translation means what the provider said: text, tool calls, stop reason, usage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use warden_policy::router::translate::stream::{ChatToMessages, MessagesToChat, Translator};
use warden_policy::sse::{self, Framer};

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An Anthropic stream: text, then a tool call whose arguments arrive in pieces, cached usage.
fn anthropic_stream() -> String {
    [
        event("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "usage": {"input_tokens": 12, "cache_read_input_tokens": 88, "output_tokens": 1}}})),
        event("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        event("ping", json!({"type": "ping"})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Héllo, "}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "wörld"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event("content_block_start", json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\":"}})),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"a.txt\"}"}})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        event("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat()
}

/// An OpenAI stream with the same meaning, `\r\n` line ends, and a usage chunk.
fn openai_stream() -> String {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\r\n\r\n",
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Héllo, "}), Value::Null),
        chunk(json!({"content": "wörld"}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": ""}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"path\":"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"a.txt\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        format!("data: {}\r\n\r\n", json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": [],
            "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109, "prompt_tokens_details": {"cached_tokens": 88}}})),
        "data: [DONE]\r\n\r\n".to_string(),
    ]
    .concat()
}

fn to_chat(pieces: &[&[u8]]) -> Vec<u8> {
    let mut t = MessagesToChat::new(7, true);
    let mut out: Vec<u8> = pieces.iter().flat_map(|p| t.push(p)).collect();
    out.extend(t.finish());
    out
}

fn to_messages(pieces: &[&[u8]]) -> Vec<u8> {
    let mut t = ChatToMessages::new();
    let mut out: Vec<u8> = pieces.iter().flat_map(|p| t.push(p)).collect();
    out.extend(t.finish());
    out
}

/// Every way of cutting `stream` in two, and in three at every pair of points a few bytes
/// apart, gives the unsplit translation byte for byte.
fn same_wherever_cut(stream: &[u8], translate: fn(&[&[u8]]) -> Vec<u8>) -> Vec<u8> {
    let whole = translate(&[stream]);
    for i in 0..=stream.len() {
        assert_eq!(translate(&[&stream[..i], &stream[i..]]), whole, "cut at {i}");
    }
    for i in (0..stream.len()).step_by(5) {
        for j in (i..stream.len()).step_by(13) {
            assert_eq!(translate(&[&stream[..i], &stream[i..j], &stream[j..]]), whole, "cut at {i} and {j}");
        }
    }
    // Byte by byte.
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(translate(&bytes), whole);
    whole
}

fn events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut framer = Framer::new(1 << 20);
    framer.push(bytes).unwrap().iter().map(|e| (sse::event_name(e), sse::data(e).unwrap_or_default())).collect()
}

#[test]
fn an_anthropic_stream_reaches_an_openai_agent_as_chunks_wherever_it_was_cut() {
    let out = same_wherever_cut(anthropic_stream().as_bytes(), to_chat);
    let (mut text, mut arguments, mut finish, mut usage, mut done) = (String::new(), String::new(), None, None, false);
    let mut tool = None;
    for (_, data) in events(&out) {
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if chunk["usage"].is_object() {
            usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk["choices"].get(0) else { continue };
        text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        for call in choice["delta"]["tool_calls"].as_array().into_iter().flatten() {
            if let Some(name) = call["function"]["name"].as_str() {
                tool = Some((call["id"].as_str().unwrap().to_string(), name.to_string()));
            }
            arguments.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert!(done);
    assert_eq!(text, "Héllo, wörld");
    assert_eq!(tool, Some(("toolu_1".to_string(), "read_file".to_string())));
    assert_eq!(arguments, r#"{"path":"a.txt"}"#);
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(
        usage,
        Some(
            json!({"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109, "prompt_tokens_details": {"cached_tokens": 88}})
        )
    );
}

#[test]
fn an_openai_stream_reaches_an_anthropic_agent_as_events_wherever_it_was_cut() {
    let out = same_wherever_cut(openai_stream().as_bytes(), to_messages);
    let all = events(&out);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_deref().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let data: Vec<Value> = all.iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(data[2]["delta"]["text"], "Héllo, ");
    assert_eq!(data[5]["content_block"], json!({"type": "tool_use", "id": "call_1", "name": "read_file", "input": {}}));
    let arguments: String = data[6..8].iter().map(|d| d["delta"]["partial_json"].as_str().unwrap()).collect();
    assert_eq!(arguments, r#"{"path":"a.txt"}"#);
    assert_eq!(data[9]["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        data[9]["usage"],
        json!({"input_tokens": 12, "output_tokens": 9, "cache_read_input_tokens": 88, "cache_creation_input_tokens": 0})
    );
}

#[test]
fn a_failure_inside_the_stream_ends_it_with_an_error_in_the_callers_shape() {
    let mut anthropic = anthropic_stream();
    anthropic.truncate(anthropic.find("event: message_delta").unwrap());
    anthropic.push_str(&event(
        "error",
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    let out = String::from_utf8(to_chat(&[anthropic.as_bytes()])).unwrap();
    assert!(out.ends_with("data: [DONE]\n\n"), "{out}");
    assert!(out.contains(r#""error":{"code":null,"message":"Overloaded","type":"server_error"}"#), "{out}");

    // Cut short without its last event: an error, not a stream that looks complete.
    let openai = openai_stream();
    let cut = &openai[..openai.find("data: [DONE]").unwrap()];
    let out = events(&to_messages(&[cut.as_bytes()]));
    assert_eq!(out.last().unwrap().0.as_deref(), Some("error"));
    assert!(!out.iter().any(|(n, _)| n.as_deref() == Some("message_stop")));
}
