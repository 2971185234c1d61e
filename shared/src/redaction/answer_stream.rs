//! A streamed answer rewritten event by event. The text a protocol splits across events (a
//! choice's content, a tool call's arguments, a content block) goes through one [`TextStream`]
//! per channel, so a value split over two deltas is still found; what a channel holds back is
//! released with its next delta, or in a delta of its own just before the event that ends the
//! channel (`finish_reason`, `content_block_stop`, `…done`, `[DONE]`, the end of the stream).
//! Events that carry a whole document (an MCP message, a Responses `…done` event) are
//! rewritten whole.

use super::json_text;
use super::redactor::{Direction, Redactor, TextKind};
use super::stream::TextStream;
use crate::sse::{self, EventTooLarge, Framer};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamApi {
    ChatCompletions,
    AnthropicMessages,
    Responses,
    /// Each event a whole JSON-RPC message.
    Mcp,
}

/// A channel: (choice or block or output index, which text of it, tool-call index).
type Channel = (u64, &'static str, u64);

pub struct AnswerStream {
    api: StreamApi,
    framer: Framer,
    channels: BTreeMap<Channel, TextStream>,
    /// The last chat chunk's envelope (`id`, `model`, `created`), for the deltas written here.
    envelope: Value,
}

impl AnswerStream {
    pub fn new(api: StreamApi, max_event: usize) -> AnswerStream {
        AnswerStream { api, framer: Framer::new(max_event), channels: BTreeMap::new(), envelope: Value::Null }
    }

    /// Bytes held back now, in the framer and the channels.
    pub fn held(&self) -> usize {
        self.framer.held() + self.channels.values().map(TextStream::held).sum::<usize>()
    }

    /// A chunk of the answer; `end`: the stream ended with it. Returns the bytes to send on.
    pub fn push(&mut self, redactor: &mut Redactor, chunk: &[u8], end: bool) -> Result<Vec<u8>, EventTooLarge> {
        let mut out = Vec::with_capacity(chunk.len());
        for event in self.framer.push(chunk)? {
            self.event(redactor, &event, &mut out);
        }
        if end {
            let rest = self.framer.finish();
            if !rest.is_empty() {
                let mut terminated = rest;
                terminated.extend_from_slice(b"\n\n");
                self.event(redactor, &terminated, &mut out);
            }
            self.flush_all(redactor, &mut out);
        }
        Ok(out)
    }

    fn event(&mut self, redactor: &mut Redactor, event: &[u8], out: &mut Vec<u8>) {
        let Some(data) = sse::data(event) else {
            out.extend_from_slice(event);
            return;
        };
        if data.trim() == "[DONE]" {
            self.flush_all(redactor, out);
            out.extend_from_slice(event);
            return;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            // Not JSON: no text of a known shape; the caller refused unknown content types.
            out.extend_from_slice(event);
            return;
        };
        let changed = match self.api {
            StreamApi::ChatCompletions => self.chat(redactor, &mut value),
            StreamApi::AnthropicMessages => self.messages(redactor, &mut value, out),
            StreamApi::Responses => self.responses(redactor, &mut value, out),
            StreamApi::Mcp => {
                return match json_text::rewrite(&data, &mut |t| redactor.rewrite(t, Direction::Answer, TextKind::Plain))
                {
                    Ok(Some(new)) => out.extend_from_slice(&sse::with_data(event, &new)),
                    _ => out.extend_from_slice(event),
                };
            }
        };
        if changed {
            out.extend_from_slice(&sse::with_data(event, &value.to_string()));
        } else {
            out.extend_from_slice(event);
        }
    }

    /// Passes `text` through the channel; returns the released text if it differs.
    fn through(&mut self, redactor: &mut Redactor, channel: Channel, kind: TextKind, text: &str) -> Option<String> {
        let stream = self.channels.entry(channel).or_insert_with(|| TextStream::new(Direction::Answer, kind));
        let released = stream.push(redactor, text);
        (released != text).then_some(released)
    }

    fn finish_channel(&mut self, redactor: &mut Redactor, channel: Channel) -> String {
        self.channels.remove(&channel).map(|mut s| s.finish(redactor)).unwrap_or_default()
    }

    fn chat(&mut self, redactor: &mut Redactor, chunk: &mut Value) -> bool {
        self.envelope = json!({
            "id": chunk.get("id").cloned().unwrap_or(Value::Null),
            "object": chunk.get("object").cloned().unwrap_or(Value::Null),
            "created": chunk.get("created").cloned().unwrap_or(Value::Null),
            "model": chunk.get("model").cloned().unwrap_or(Value::Null),
        });
        let mut changed = false;
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else { return false };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(delta) = choice.get_mut("delta") {
                for field in ["content", "refusal", "reasoning_content", "reasoning"] {
                    if let Some(text) = delta.get(field).and_then(Value::as_str).map(str::to_string) {
                        if let Some(new) = self.through(redactor, (index, field, 0), TextKind::Plain, &text) {
                            delta[field] = Value::String(new);
                            changed = true;
                        }
                    }
                }
                // The legacy `function_call` streams its arguments like a tool call.
                if let Some(args) =
                    delta.pointer("/function_call/arguments").and_then(Value::as_str).map(str::to_string)
                {
                    if let Some(new) = self.through(redactor, (index, "function_call", 0), TextKind::JsonSource, &args)
                    {
                        delta["function_call"]["arguments"] = Value::String(new);
                        changed = true;
                    }
                }
                if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for call in calls {
                        let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let Some(args) =
                            call.pointer("/function/arguments").and_then(Value::as_str).map(str::to_string)
                        else {
                            continue;
                        };
                        if let Some(new) = self.through(redactor, (index, "arguments", n), TextKind::JsonSource, &args)
                        {
                            call["function"]["arguments"] = Value::String(new);
                            changed = true;
                        }
                    }
                }
            }
            if choice.get("finish_reason").is_some_and(|r| !r.is_null()) {
                // The rest of each of this choice's texts goes in this chunk, after what it
                // carries itself: a provider may end a choice in the chunk with its last text.
                let ended: Vec<Channel> = self.channels.keys().filter(|c| c.0 == index).copied().collect();
                for channel in ended {
                    let rest = self.finish_channel(redactor, channel);
                    if !rest.is_empty() {
                        append_rest(choice, channel, &rest);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    /// A chat chunk carrying the rest of a channel's text.
    fn chat_delta(&self, (index, field, n): Channel, text: &str) -> Value {
        let delta = match field {
            "arguments" => json!({"tool_calls": [{"index": n, "function": {"arguments": text}}]}),
            "function_call" => json!({"function_call": {"arguments": text}}),
            _ => json!({ field: text }),
        };
        let mut chunk = self.envelope.clone();
        chunk["choices"] = json!([{"index": index, "delta": delta, "finish_reason": null}]);
        chunk
    }

    fn messages(&mut self, redactor: &mut Redactor, event: &mut Value, out: &mut Vec<u8>) -> bool {
        let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
        match event.get("type").and_then(Value::as_str) {
            Some("content_block_delta") => {
                let (field, kind) = match event.pointer("/delta/type").and_then(Value::as_str) {
                    Some("text_delta") => ("text", TextKind::Plain),
                    Some("input_json_delta") => ("partial_json", TextKind::JsonSource),
                    Some("thinking_delta") => ("thinking", TextKind::Plain),
                    _ => return false,
                };
                let Some(text) = event.pointer(&format!("/delta/{field}")).and_then(Value::as_str).map(str::to_string)
                else {
                    return false;
                };
                match self.through(redactor, (index, field, 0), kind, &text) {
                    Some(new) => {
                        event["delta"][field] = Value::String(new);
                        true
                    }
                    None => false,
                }
            }
            Some("content_block_stop") => {
                let ended: Vec<Channel> = self.channels.keys().filter(|c| c.0 == index).copied().collect();
                for channel in ended {
                    let rest = self.finish_channel(redactor, channel);
                    if !rest.is_empty() {
                        let data = messages_delta(channel, &rest).to_string();
                        out.extend_from_slice(&sse::event(Some("content_block_delta"), &data));
                    }
                }
                false
            }
            Some("message_stop") => {
                self.flush_all(redactor, out);
                false
            }
            // A block that starts with text of its own (a server tool's result): read whole.
            Some("content_block_start") => self.whole(redactor, event, false),
            _ => false,
        }
    }

    fn responses(&mut self, redactor: &mut Redactor, event: &mut Value, out: &mut Vec<u8>) -> bool {
        let output = event.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let content = event.get("content_index").and_then(Value::as_u64).unwrap_or(0);
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
        let stem = kind.strip_suffix(".delta").or_else(|| kind.strip_suffix(".done")).unwrap_or(&kind);
        let Some((field, text_kind)) = responses_text(stem) else {
            // A whole item or response (`…added`, `…done`, `response.completed`): rewritten
            // whole; what it repeats of the streamed text was counted as it streamed.
            let repeats = kind.ends_with(".done") || kind == "response.completed";
            return self.whole(redactor, event, repeats);
        };
        let channel = (output, field, content);
        if kind.ends_with(".delta") {
            let Some(text) = event.get("delta").and_then(Value::as_str).map(str::to_string) else {
                return self.whole(redactor, event, false);
            };
            return match self.through(redactor, channel, text_kind, &text) {
                Some(new) => {
                    event["delta"] = Value::String(new);
                    true
                }
                None => false,
            };
        }
        let rest = self.finish_channel(redactor, channel);
        if !rest.is_empty() {
            let mut delta = event.clone();
            delta["type"] = Value::String(format!("{stem}.delta"));
            delta["delta"] = Value::String(rest);
            if let Some(map) = delta.as_object_mut() {
                for whole in ["text", "arguments", "input", "refusal", "transcript"] {
                    map.remove(whole);
                }
            }
            out.extend_from_slice(&sse::event(delta["type"].as_str(), &delta.to_string()));
        }
        self.whole(redactor, event, true)
    }

    /// An event rewritten whole; `repeats`: its text was already counted as it streamed.
    fn whole(&mut self, redactor: &mut Redactor, event: &mut Value, repeats: bool) -> bool {
        let text = event.to_string();
        redactor.quiet = repeats;
        let rewritten = json_text::rewrite(&text, &mut |t| redactor.rewrite(t, Direction::Answer, TextKind::Plain));
        redactor.quiet = false;
        match rewritten {
            Ok(Some(new)) => match serde_json::from_str(&new) {
                Ok(v) => {
                    *event = v;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// Every channel's rest, each in a delta of its own (the stream is ending).
    fn flush_all(&mut self, redactor: &mut Redactor, out: &mut Vec<u8>) {
        let channels: Vec<Channel> = self.channels.keys().copied().collect();
        for channel in channels {
            let rest = self.finish_channel(redactor, channel);
            if rest.is_empty() {
                continue;
            }
            let bytes = match self.api {
                StreamApi::ChatCompletions => sse::event(None, &self.chat_delta(channel, &rest).to_string()),
                StreamApi::AnthropicMessages => {
                    sse::event(Some("content_block_delta"), &messages_delta(channel, &rest).to_string())
                }
                StreamApi::Responses => {
                    let (output, field, content) = channel;
                    let kind = responses_stem(field)
                        .map_or("response.output_text.delta".to_string(), |s| format!("{s}.delta"));
                    let kind = kind.as_str();
                    let data = json!({"type": kind, "output_index": output, "content_index": content, "delta": rest});
                    sse::event(Some(kind), &data.to_string())
                }
                StreamApi::Mcp => Vec::new(),
            };
            out.extend_from_slice(&bytes);
        }
    }
}

/// The Responses API's streamed texts: event stem → channel field and how its text is written.
const RESPONSES_TEXTS: [(&str, &str, TextKind); 8] = [
    ("response.output_text", "output_text", TextKind::Plain),
    ("response.refusal", "refusal", TextKind::Plain),
    ("response.reasoning_text", "reasoning_text", TextKind::Plain),
    ("response.reasoning_summary_text", "reasoning_summary_text", TextKind::Plain),
    ("response.audio.transcript", "transcript", TextKind::Plain),
    ("response.function_call_arguments", "arguments", TextKind::JsonSource),
    ("response.custom_tool_call_input", "input", TextKind::Plain),
    ("response.mcp_call_arguments", "mcp_arguments", TextKind::JsonSource),
];

fn responses_text(stem: &str) -> Option<(&'static str, TextKind)> {
    RESPONSES_TEXTS.iter().find(|(s, _, _)| *s == stem).map(|(_, field, kind)| (*field, *kind))
}

fn responses_stem(field: &str) -> Option<&'static str> {
    RESPONSES_TEXTS.iter().find(|(_, f, _)| *f == field).map(|(stem, _, _)| *stem)
}

/// Appends the rest of a channel's text to a chat choice's delta, after its own.
fn append_rest(choice: &mut Value, (_, field, n): Channel, rest: &str) {
    if !choice.get("delta").is_some_and(Value::is_object) {
        choice["delta"] = json!({});
    }
    let delta = &mut choice["delta"];
    let append = |slot: &mut Value| {
        let before = slot.as_str().unwrap_or_default().to_string();
        *slot = Value::String(before + rest);
    };
    match field {
        "arguments" => {
            if !delta.get("tool_calls").is_some_and(Value::is_array) {
                delta["tool_calls"] = json!([]);
            }
            let calls = delta["tool_calls"].as_array_mut();
            let Some(calls) = calls else { return };
            match calls.iter_mut().find(|c| c.get("index").and_then(Value::as_u64) == Some(n)) {
                Some(call) => append(&mut call["function"]["arguments"]),
                None => calls.push(json!({"index": n, "function": {"arguments": rest}})),
            }
        }
        "function_call" => append(&mut delta["function_call"]["arguments"]),
        _ => append(&mut delta[field]),
    }
}

fn messages_delta((index, field, _): Channel, text: &str) -> Value {
    let kind = match field {
        "partial_json" => "input_json_delta",
        "thinking" => "thinking_delta",
        _ => "text_delta",
    };
    json!({"type": "content_block_delta", "index": index, "delta": {"type": kind, field: text}})
}
