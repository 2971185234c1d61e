//! Streamed answers, event by event: each complete provider event becomes the caller's events
//! as soon as it arrives (only an incomplete event is held, by the SSE framer), so the first
//! token reaches the agent with the provider's. A failure the provider reports inside the
//! stream ends it with an error event in the caller's shape.

use super::answer::{chat_usage, messages_usage};
use super::{finish_reason, stop_reason};
use crate::sse::{self, Framer};
use serde_json::{json, Value};

/// The largest provider event held while it arrives.
pub const MAX_EVENT: usize = 1 << 20;

/// A streamed answer translated into the caller's API: the provider's bytes in, the caller's
/// out. Each translator says what one provider event becomes and how its caller is told of a
/// failure; framing, and ending a stream cut short, are the same for both.
pub trait Translator {
    fn framer(&mut self) -> &mut Framer;
    /// The stream has ended (its last event, or an error sent).
    fn finished(&self) -> bool;
    /// The caller's bytes for one complete provider event.
    fn event(&mut self, event: &[u8]) -> Vec<u8>;
    /// Ends the stream with an error in the caller's shape.
    fn fail(&mut self, message: &str) -> Vec<u8>;

    /// The caller's bytes for the next piece of the provider's stream.
    fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let events = match self.framer().push(bytes) {
            Ok(events) => events,
            Err(e) => return self.fail(&e.to_string()),
        };
        let mut out = Vec::new();
        for event in events {
            out.extend(self.event(&event));
        }
        out
    }

    /// The end of the provider's stream: a stream cut short ends with an error.
    fn finish(&mut self) -> Vec<u8> {
        let _ = self.framer().finish();
        if self.finished() {
            return Vec::new();
        }
        self.fail("the provider's stream ended before its last event")
    }
}

/// Anthropic Messages events to OpenAI Chat Completions chunks.
pub struct MessagesToChat {
    framer: Framer,
    id: String,
    model: String,
    created: u64,
    /// The caller asked for a usage chunk (`stream_options.include_usage`).
    include_usage: bool,
    /// Anthropic block index -> OpenAI tool-call index, for the block being streamed.
    tool_index: Option<(u64, u64)>,
    next_tool: u64,
    usage: Value,
    finished: bool,
}

impl MessagesToChat {
    pub fn new(created: u64, include_usage: bool) -> Self {
        MessagesToChat {
            framer: Framer::new(MAX_EVENT),
            id: String::new(),
            model: String::new(),
            created,
            include_usage,
            tool_index: None,
            next_tool: 0,
            usage: json!({}),
            finished: false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> Vec<u8> {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        sse::event(None, &chunk.to_string())
    }
}

impl Translator for MessagesToChat {
    fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn event(&mut self, event: &[u8]) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        let Some(data) = sse::data(event) else { return Vec::new() };
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            return self.fail("the provider sent an event that is not JSON");
        };
        match value["type"].as_str().unwrap_or_default() {
            "message_start" => {
                let message = &value["message"];
                self.id = message["id"].as_str().unwrap_or_default().to_string();
                self.model = message["model"].as_str().unwrap_or_default().to_string();
                self.usage = message["usage"].clone();
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            "content_block_start" => {
                let block = &value["content_block"];
                if block["type"] != "tool_use" {
                    return Vec::new();
                }
                let index = self.next_tool;
                self.next_tool += 1;
                self.tool_index = Some((value["index"].as_u64().unwrap_or(0), index));
                self.chunk(
                    json!({"tool_calls": [{"index": index, "id": block["id"], "type": "function",
                        "function": {"name": block["name"], "arguments": ""}}]}),
                    Value::Null,
                )
            }
            "content_block_delta" => {
                let delta = &value["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self.chunk(json!({"content": delta["text"]}), Value::Null),
                    Some("input_json_delta") => {
                        let block = value["index"].as_u64().unwrap_or(0);
                        let Some((_, index)) = self.tool_index.filter(|(b, _)| *b == block) else { return Vec::new() };
                        self.chunk(
                            json!({"tool_calls": [{"index": index, "function": {"arguments": delta["partial_json"]}}]}),
                            Value::Null,
                        )
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                for (key, count) in value["usage"].as_object().into_iter().flatten() {
                    self.usage[key] = count.clone();
                }
                let finish = finish_reason(value["delta"]["stop_reason"].as_str().unwrap_or("end_turn"));
                self.chunk(json!({}), finish.into())
            }
            "message_stop" => {
                self.finished = true;
                let mut out = Vec::new();
                if self.include_usage {
                    let chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [], "usage": chat_usage(&self.usage)});
                    out.extend(sse::event(None, &chunk.to_string()));
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
                out
            }
            "error" => {
                let message = value["error"]["message"].as_str().unwrap_or("the provider failed").to_string();
                self.fail(&message)
            }
            // `ping`, `content_block_stop`, and what a later API version adds.
            _ => Vec::new(),
        }
    }

    fn fail(&mut self, message: &str) -> Vec<u8> {
        self.finished = true;
        let mut out =
            sse::event(None, &json!({"error": {"message": message, "type": "server_error", "code": null}}).to_string());
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}

/// OpenAI Chat Completions chunks to Anthropic Messages events.
pub struct ChatToMessages {
    framer: Framer,
    started: bool,
    /// The open content block: its index and whether it is a tool call (and which).
    open: Option<(u64, Option<u64>)>,
    next_block: u64,
    stop: Option<&'static str>,
    usage: Option<Value>,
    finished: bool,
}

impl Default for ChatToMessages {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatToMessages {
    pub fn new() -> Self {
        ChatToMessages {
            framer: Framer::new(MAX_EVENT),
            started: false,
            open: None,
            next_block: 0,
            stop: None,
            usage: None,
            finished: false,
        }
    }

    fn emit(out: &mut Vec<u8>, name: &str, data: Value) {
        out.extend(sse::event(Some(name), &data.to_string()));
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            Self::emit(out, "content_block_stop", json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: Value, tool: Option<u64>) -> u64 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        Self::emit(
            out,
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some((index, tool));
        index
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        self.close_block(out);
        let usage = self.usage.as_ref().map(messages_usage).unwrap_or_else(|| json!({"output_tokens": 0}));
        Self::emit(
            out,
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null}, "usage": usage}),
        );
        Self::emit(out, "message_stop", json!({"type": "message_stop"}));
        self.finished = true;
    }
}

impl Translator for ChatToMessages {
    fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn event(&mut self, event: &[u8]) -> Vec<u8> {
        if self.finished {
            return Vec::new();
        }
        let Some(data) = sse::data(event) else { return Vec::new() };
        let mut out = Vec::new();
        if data.trim() == "[DONE]" {
            self.end(&mut out);
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            return self.fail("the provider sent an event that is not JSON");
        };
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().unwrap_or("the provider failed").to_string();
            return self.fail(&message);
        }
        if !self.started {
            self.started = true;
            Self::emit(
                &mut out,
                "message_start",
                json!({"type": "message_start", "message": {"id": chunk["id"], "type": "message", "role": "assistant",
                    "model": chunk["model"], "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            );
        }
        if chunk["usage"].is_object() {
            self.usage = Some(chunk["usage"].clone());
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else { return out };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((index, None)) => index,
                _ => self.open_block(&mut out, json!({"type": "text", "text": ""}), None),
            };
            Self::emit(
                &mut out,
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let tool = call["index"].as_u64().unwrap_or(0);
            let index = match self.open {
                Some((index, Some(open))) if open == tool => index,
                _ => self.open_block(
                    &mut out,
                    json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}),
                    Some(tool),
                ),
            };
            if let Some(arguments) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                Self::emit(
                    &mut out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": arguments}}),
                );
            }
        }
        if let Some(finish) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(finish));
            self.close_block(&mut out);
        }
        out
    }

    fn fail(&mut self, message: &str) -> Vec<u8> {
        self.finished = true;
        sse::event(
            Some("error"),
            &json!({"type": "error", "error": {"type": "api_error", "message": message}}).to_string(),
        )
    }
}
