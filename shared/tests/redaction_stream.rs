//! Streamed answers through the redaction filter's event adapters: the SSE bytes split at every
//! position and the text split across deltas at every position give the client the same text,
//! with no secret, no half placeholder and every placeholder restored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::rc::Rc;
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::redaction::answer_stream::{AnswerStream, StreamApi};
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::redactor::{Direction, Redactor, TextKind};
use warden_policy::sse;

fn policy() -> Rc<CompiledRedaction> {
    let doc = parse_document(b"redaction:\n  defaultAction: placeholder\n  actions: { secret: mask }\n").unwrap();
    Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).unwrap())
}

/// A request's redactor that handed out ⟦EMAIL_1⟧ for ann@example.com.
fn redactor(policy: &Rc<CompiledRedaction>) -> Redactor {
    let caller = Caller { agent: Some("planner".into()), tenant: Some("acme".into()), ..Caller::default() };
    let mut redactor = Redactor::new(policy.clone(), caller, "/v1/chat/completions", false);
    assert_eq!(redactor.rewrite("ann@example.com", Direction::Request, TextKind::Plain).unwrap(), "⟦EMAIL_1⟧");
    redactor
}

const TEXT: &str = "Sure ⟦EMAIL_1⟧, your key AKIAIOSFODNN7EXAMPLE is out; mail bob@example.org.";

fn chat_stream(deltas: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    out.extend(sse::event(None, &chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string()));
    for d in deltas {
        out.extend(sse::event(None, &chunk(json!({"content": d}), Value::Null).to_string()));
    }
    out.extend(sse::event(None, &chunk(json!({}), json!("stop")).to_string()));
    out.extend(b"data: [DONE]\n\n");
    out
}

fn messages_stream(deltas: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(sse::event(
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "m1"}}).to_string(),
    ));
    out.extend(sse::event(
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}).to_string(),
    ));
    for d in deltas {
        let event = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}});
        out.extend(sse::event(Some("content_block_delta"), &event.to_string()));
    }
    out.extend(sse::event(Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0}).to_string()));
    out.extend(sse::event(Some("message_stop"), &json!({"type": "message_stop"}).to_string()));
    out
}

/// The text a client rebuilds from the events it received.
fn client_text(api: StreamApi, bytes: &[u8]) -> String {
    let mut framer = sse::Framer::new(1 << 20);
    let mut text = String::new();
    for event in framer.push(bytes).unwrap() {
        let Some(data) = sse::data(&event) else { continue };
        let Ok(value) = serde_json::from_str::<Value>(&data) else { continue };
        let piece = match api {
            StreamApi::ChatCompletions => value.pointer("/choices/0/delta/content"),
            _ => value.pointer("/delta/text"),
        };
        text.push_str(piece.and_then(Value::as_str).unwrap_or_default());
    }
    text
}

fn run(policy: &Rc<CompiledRedaction>, api: StreamApi, bytes: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut redactor = redactor(policy);
    let mut stream = AnswerStream::new(api, 64 * 1024);
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        out.extend(stream.push(&mut redactor, &bytes[from..cut], false).unwrap());
        from = cut;
    }
    out.extend(stream.push(&mut redactor, &bytes[from..], true).unwrap());
    out
}

#[test]
fn a_streamed_answer_is_the_same_wherever_the_bytes_or_the_deltas_are_split() {
    let policy = policy();
    let expected = redactor(&policy).rewrite(TEXT, Direction::Answer, TextKind::Plain).unwrap();
    assert_eq!(expected, "Sure ann@example.com, your key [AWS_ACCESS_KEY] is out; mail [EMAIL].");
    let boundaries: Vec<usize> = (1..TEXT.len()).filter(|&i| TEXT.is_char_boundary(i)).collect();
    for (api, make) in [
        (StreamApi::ChatCompletions, chat_stream as fn(&[&str]) -> Vec<u8>),
        (StreamApi::AnthropicMessages, messages_stream as fn(&[&str]) -> Vec<u8>),
    ] {
        // The text across two deltas, at every position.
        for &cut in &boundaries {
            let bytes = make(&[&TEXT[..cut], &TEXT[cut..]]);
            let out = run(&policy, api, &bytes, &[]);
            assert_eq!(client_text(api, &out), expected, "{api:?}: deltas split at {cut}");
        }
        // The SSE bytes, at every position, with the text in deltas of three characters.
        let pieces: Vec<&str> = {
            let mut v = Vec::new();
            let mut start = 0;
            for (n, &b) in boundaries.iter().enumerate() {
                if n % 3 == 2 {
                    v.push(&TEXT[start..b]);
                    start = b;
                }
            }
            v.push(&TEXT[start..]);
            v
        };
        let bytes = make(&pieces);
        for cut in 1..bytes.len() {
            let out = run(&policy, api, &bytes, &[cut]);
            assert_eq!(client_text(api, &out), expected, "{api:?}: bytes split at {cut}");
        }
    }
}

#[test]
fn tool_call_arguments_are_restored_as_json_source() {
    let policy = policy();
    let mut redactor = redactor(&policy);
    redactor.rewrite("o\"neil@example.com", Direction::Request, TextKind::Plain);
    let mut stream = AnswerStream::new(StreamApi::ChatCompletions, 64 * 1024);
    let chunk = |args: &str| {
        let c = json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}, "finish_reason": null}]});
        sse::event(None, &c.to_string())
    };
    let mut bytes = chunk("{\"to\": \"⟦EMA");
    bytes.extend(chunk("IL_1⟧\"}"));
    bytes.extend(b"data: [DONE]\n\n");
    let out = stream.push(&mut redactor, &bytes, true).unwrap();
    let mut framer = sse::Framer::new(1 << 20);
    let args: String = framer
        .push(&out)
        .unwrap()
        .iter()
        .filter_map(|e| sse::data(e))
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str).map(String::from)
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&args).unwrap(), json!({"to": "ann@example.com"}));
}

/// vLLM, Groq and others end a choice in the chunk that carries its last text: what the channel
/// held comes after that text, in the same chunk.
#[test]
fn a_chunk_that_ends_its_choice_with_text_keeps_the_order() {
    let policy = policy();
    let mut redactor = redactor(&policy);
    let mut stream = AnswerStream::new(StreamApi::ChatCompletions, 64 * 1024);
    let chunk = |delta: Value, finish: Value| {
        sse::event(
            None,
            &json!({"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string(),
        )
    };
    let mut bytes = chunk(json!({"content": "Sure, "}), Value::Null);
    bytes.extend(chunk(json!({"content": "mail bob@example.org"}), json!("stop")));
    bytes.extend(b"data: [DONE]\n\n");
    let out = stream.push(&mut redactor, &bytes, true).unwrap();
    assert_eq!(client_text(StreamApi::ChatCompletions, &out), "Sure, mail [EMAIL]");
}
