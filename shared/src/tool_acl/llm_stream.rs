//! Tool calls in a streamed model answer, reassembled across events before they are decided.
//!
//! Events that carry a tool call are held back (and only those: text streams through) until
//! the call is complete; then they are released as they came, or, when the call is blocked,
//! replaced by events that carry a message to the agent (or an error event that ends the
//! stream, when `llm.toolCalls` is `fail`). The hold-back is bounded by the framer's limit
//! per event and by the size of one call's arguments.

use crate::decision::Mode;
use crate::principal::Caller;
use crate::sse;
use crate::strict_json;
use crate::tool_acl::compile::CompiledToolAcl;
use crate::tool_acl::config::ToolCalls;
use crate::tool_acl::llm::{settle, Api};
use crate::tool_acl::llm_answer::{responses, responses_message};
use crate::tool_acl::mcp::Record;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The call index a legacy `function_call` delta is held under (beside `tool_calls` indexes).
const LEGACY_CALL: u64 = u64::MAX;

/// Held events and what they add up to, per tool call.
#[derive(Default)]
struct Pending {
    name: String,
    arguments: String,
    events: Vec<Vec<u8>>,
}

pub struct StreamGuard {
    api: Option<Api>,
    /// Chat: all held events, in order, and the calls they build, by (choice, call index).
    held: Vec<Vec<u8>>,
    calls: BTreeMap<(u64, u64), Pending>,
    /// Responses and Anthropic: calls held by output / block index.
    items: BTreeMap<u64, Pending>,
    /// After a `fail`, everything else is dropped.
    ended: bool,
    /// Anthropic: a tool_use block was blocked and none was let through.
    blocked_only: bool,
    allowed_any: bool,
}

fn data_json(event: &[u8]) -> Option<Value> {
    sse::data(event).and_then(|d| strict_json::value(&d))
}

/// An event whose data cannot be read as JSON but may carry a tool call (a client's lenient
/// parser could find one in it): it cannot be checked, so the stream fails rather than pass it.
fn unreadable_call(event: &[u8]) -> bool {
    let Some(data) = sse::data(event) else { return false };
    let data = data.trim();
    data != "[DONE]"
        && strict_json::value(data).is_none()
        && ["tool_calls", "function_call", "tool_use"].iter().any(|m| data.contains(m))
}

fn with_json(event: &[u8], value: &Value) -> Vec<u8> {
    sse::with_data(event, &value.to_string())
}

impl StreamGuard {
    pub fn new(api: Option<Api>) -> StreamGuard {
        StreamGuard {
            api,
            held: Vec::new(),
            calls: BTreeMap::new(),
            items: BTreeMap::new(),
            ended: false,
            blocked_only: false,
            allowed_any: false,
        }
    }

    /// The bytes to send for `event`, and the decisions it completed.
    pub fn event(
        &mut self,
        acl: &CompiledToolAcl,
        caller: &Caller,
        event: &[u8],
        request_id: &str,
    ) -> (Vec<u8>, Vec<Record>) {
        if self.ended {
            return (Vec::new(), Vec::new());
        }
        if acl.mode != Mode::Shadow && unreadable_call(event) {
            self.ended = true;
            let message = "Warden could not read an event of this answer that may call a tool, so the answer was ended";
            let body = crate::error_body::openai(message, "permission_error", "answer_unchecked", None, request_id);
            return (sse::event(None, &body), Vec::new());
        }
        let mut records = Vec::new();
        let out = match self.api {
            Some(Api::ChatCompletions) => self.chat(acl, caller, event, request_id, &mut records),
            Some(Api::Responses) => self.responses(acl, caller, event, request_id, &mut records),
            Some(Api::AnthropicMessages) => self.anthropic(acl, caller, event, request_id, &mut records),
            None => event.to_vec(),
        };
        (out, records)
    }

    fn failing(acl: &CompiledToolAcl) -> bool {
        acl.mode != Mode::Shadow && acl.llm.as_ref().is_some_and(|l| l.tool_calls == ToolCalls::Fail)
    }

    fn chat(
        &mut self,
        acl: &CompiledToolAcl,
        caller: &Caller,
        event: &[u8],
        request_id: &str,
        records: &mut Vec<Record>,
    ) -> Vec<u8> {
        let data = sse::data(event).unwrap_or_default();
        let done = data.trim() == "[DONE]";
        let chunk: Option<Value> = if done { None } else { strict_json::value(&data) };
        let mut finishing = done;
        if let Some(chunk) = &chunk {
            for choice in chunk.get("choices").and_then(Value::as_array).into_iter().flatten() {
                let c = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                for call in choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let i = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let pending = self.calls.entry((c, i)).or_default();
                    if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                        pending.name.push_str(name);
                    }
                    if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                        pending.arguments.push_str(args);
                    }
                }
                // The legacy `function_call` delta: one call per choice, governed the same.
                if let Some(call) = choice.pointer("/delta/function_call").filter(|f| f.is_object()) {
                    let pending = self.calls.entry((c, LEGACY_CALL)).or_default();
                    if let Some(name) = call.get("name").and_then(Value::as_str) {
                        pending.name.push_str(name);
                    }
                    if let Some(args) = call.get("arguments").and_then(Value::as_str) {
                        pending.arguments.push_str(args);
                    }
                }
                finishing |= choice.get("finish_reason").is_some_and(|f| !f.is_null()) && !self.calls.is_empty();
            }
        }
        if self.calls.is_empty() {
            return event.to_vec();
        }
        self.held.push(event.to_vec());
        if !finishing {
            return Vec::new();
        }
        // Every call is complete: decide them all.
        let mut blocked: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for (key, pending) in &self.calls {
            if let Some(message) = settle(acl, caller, &pending.name, &pending.arguments, request_id, records) {
                blocked.insert(*key, message);
            }
        }
        self.calls.clear();
        let held = std::mem::take(&mut self.held);
        if blocked.is_empty() {
            return held.concat();
        }
        if Self::failing(acl) {
            let message = blocked.values().next().cloned().unwrap_or_default();
            self.ended = true;
            return sse::event(
                None,
                &crate::error_body::openai(&message, "permission_error", "tool_call_blocked", None, request_id),
            );
        }
        let mut out = Vec::new();
        for held_event in held {
            let Some(mut chunk) = data_json(&held_event) else {
                out.extend(held_event);
                continue;
            };
            let mut keep = false;
            if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
                for choice in choices.iter_mut() {
                    let c = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let fully_blocked = blocked.keys().any(|(bc, _)| *bc == c);
                    if let Some(calls) = choice.pointer_mut("/delta/tool_calls").and_then(Value::as_array_mut) {
                        calls.retain(|call| {
                            !blocked.contains_key(&(c, call.get("index").and_then(Value::as_u64).unwrap_or(0)))
                        });
                        if calls.is_empty() {
                            if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                                delta.remove("tool_calls");
                            }
                        }
                    }
                    if blocked.contains_key(&(c, LEGACY_CALL)) {
                        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                            delta.remove("function_call");
                        }
                    }
                    let finish = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                    if finish && fully_blocked {
                        // Say why before the choice ends, and end it as a plain answer.
                        let text: Vec<&String> =
                            blocked.iter().filter(|((bc, _), _)| *bc == c).map(|(_, m)| m).collect();
                        let note = text.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n");
                        if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                            delta.insert("content".into(), json!(note));
                        }
                        choice["finish_reason"] = json!("stop");
                    }
                    let delta_empty = choice.get("delta").and_then(Value::as_object).is_none_or(|d| d.is_empty());
                    keep |= !delta_empty || finish;
                }
            }
            if keep || chunk.get("usage").is_some_and(|u| !u.is_null()) {
                out.extend(with_json(&held_event, &chunk));
            }
        }
        // A stream that ended (`[DONE]`) without a finish reason still says why.
        if done && !blocked.is_empty() && !out.windows(7).any(|w| w == b"content") {
            let note = blocked.values().cloned().collect::<Vec<_>>().join("\n");
            let chunk = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": note}, "finish_reason": "stop"}]});
            let mut synthesized = sse::event(None, &chunk.to_string());
            synthesized.extend(out);
            return synthesized;
        }
        out
    }

    fn responses(
        &mut self,
        acl: &CompiledToolAcl,
        caller: &Caller,
        event: &[u8],
        request_id: &str,
        records: &mut Vec<Record>,
    ) -> Vec<u8> {
        let Some(mut data) = data_json(event) else { return event.to_vec() };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let index = data.get("output_index").and_then(Value::as_u64).unwrap_or(0);
        let is_call_item = data.pointer("/item/type").and_then(Value::as_str) == Some("function_call");
        match kind.as_str() {
            "response.output_item.added" if is_call_item => {
                let pending = self.items.entry(index).or_default();
                pending.name = data.pointer("/item/name").and_then(Value::as_str).unwrap_or("").to_string();
                pending.events.push(event.to_vec());
                Vec::new()
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let Some(pending) = self.items.get_mut(&index) else { return event.to_vec() };
                if kind.ends_with(".done") {
                    pending.arguments = data.get("arguments").and_then(Value::as_str).unwrap_or("").to_string();
                } else if let Some(delta) = data.get("delta").and_then(Value::as_str) {
                    pending.arguments.push_str(delta);
                }
                pending.events.push(event.to_vec());
                Vec::new()
            }
            "response.output_item.done" if is_call_item => {
                let mut pending = self.items.remove(&index).unwrap_or_default();
                let name =
                    data.pointer("/item/name").and_then(Value::as_str).map_or(pending.name.clone(), String::from);
                let arguments = data
                    .pointer("/item/arguments")
                    .and_then(Value::as_str)
                    .map_or(pending.arguments.clone(), String::from);
                let Some(message) = settle(acl, caller, &name, &arguments, request_id, records) else {
                    pending.events.push(event.to_vec());
                    return pending.events.concat();
                };
                if Self::failing(acl) {
                    self.ended = true;
                    let body = json!({"type": "error", "code": "tool_call_blocked", "message": message, "param": null});
                    return sse::event(Some("error"), &body.to_string());
                }
                // The call's events are replaced by a message item at the same position.
                let item = responses_message(data.pointer("/item/id").cloned(), &message);
                let mut added =
                    json!({"type": "response.output_item.added", "output_index": index, "item": item.clone()});
                added["sequence_number"] = data.get("sequence_number").cloned().unwrap_or(json!(0));
                data["item"] = item;
                let mut out = sse::event(Some("response.output_item.added"), &added.to_string());
                out.extend(with_json(event, &data));
                out
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                // The final response repeats every item: blocked calls must not reappear.
                if let Some(response) = data.get_mut("response") {
                    let mut ignored = Vec::new();
                    if responses(acl, caller, response, request_id, &mut ignored) && acl.mode != Mode::Shadow {
                        return with_json(event, &data);
                    }
                }
                event.to_vec()
            }
            _ => event.to_vec(),
        }
    }

    fn anthropic(
        &mut self,
        acl: &CompiledToolAcl,
        caller: &Caller,
        event: &[u8],
        request_id: &str,
        records: &mut Vec<Record>,
    ) -> Vec<u8> {
        let Some(mut data) = data_json(event) else { return event.to_vec() };
        let kind = data.get("type").and_then(Value::as_str).unwrap_or("").to_string();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind.as_str() {
            "content_block_start"
                if data.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use") =>
            {
                let pending = self.items.entry(index).or_default();
                pending.name = data.pointer("/content_block/name").and_then(Value::as_str).unwrap_or("").to_string();
                pending.events.push(event.to_vec());
                Vec::new()
            }
            "content_block_delta" if self.items.contains_key(&index) => {
                if let (Some(pending), Some(part)) =
                    (self.items.get_mut(&index), data.pointer("/delta/partial_json").and_then(Value::as_str))
                {
                    pending.arguments.push_str(part);
                }
                if let Some(pending) = self.items.get_mut(&index) {
                    pending.events.push(event.to_vec());
                }
                Vec::new()
            }
            "content_block_stop" if self.items.contains_key(&index) => {
                let mut pending = self.items.remove(&index).unwrap_or_default();
                let Some(message) = settle(acl, caller, &pending.name, &pending.arguments, request_id, records) else {
                    self.allowed_any = true;
                    pending.events.push(event.to_vec());
                    return pending.events.concat();
                };
                if Self::failing(acl) {
                    self.ended = true;
                    let body = json!({"type": "error", "error": {"type": "permission_error", "message": message}});
                    return sse::event(Some("error"), &body.to_string());
                }
                self.blocked_only = true;
                let start = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
                let delta = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": message}});
                let mut out = sse::event(Some("content_block_start"), &start.to_string());
                out.extend(sse::event(Some("content_block_delta"), &delta.to_string()));
                out.extend(event.to_vec());
                out
            }
            "message_delta" if self.blocked_only && !self.allowed_any => {
                if data.pointer("/delta/stop_reason").and_then(Value::as_str) == Some("tool_use") {
                    data["delta"]["stop_reason"] = json!("end_turn");
                    return with_json(event, &data);
                }
                event.to_vec()
            }
            _ => event.to_vec(),
        }
    }
}
