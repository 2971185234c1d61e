//! Tool calls in a model's JSON answer: checked, and the blocked ones replaced by a message or
//! the whole answer failed, as `llm.toolCalls` says.

use crate::decision::{Mode, Verdict};
use crate::principal::Caller;
use crate::tool_acl::compile::CompiledToolAcl;
use crate::tool_acl::config::ToolCalls;
use crate::tool_acl::llm::{blocked_message, settle, Api};
use crate::tool_acl::mcp::Record;
use serde_json::{json, Value};

pub struct Checked {
    pub records: Vec<Record>,
    /// The answer to send instead, when a call was blocked.
    pub replacement: Option<String>,
}

fn tool_calls_fail(acl: &CompiledToolAcl) -> bool {
    acl.llm.as_ref().is_some_and(|l| l.tool_calls == ToolCalls::Fail)
}

pub fn check_response(
    acl: &CompiledToolAcl,
    caller: &Caller,
    api: Option<Api>,
    body: &str,
    request_id: &str,
) -> Checked {
    let mut checked = Checked { records: vec![], replacement: None };
    // Most answers carry no tool call: find out without building a tree.
    let markers: &[&str] = match api {
        // `function_call` is Chat's legacy single call, governed like `tool_calls`.
        Some(Api::ChatCompletions) => &["\"tool_calls\"", "\"function_call\""],
        Some(Api::Responses) => &["\"function_call\""],
        Some(Api::AnthropicMessages) => &["\"tool_use\""],
        None => return checked,
    };
    if !markers.iter().any(|m| body.contains(m)) {
        return checked;
    }
    // A BOM is dropped by the SDKs' decoders (fetch, httpx): so here.
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let Some(mut answer) = crate::strict_json::value(body) else {
        // It may hold a tool call that cannot be checked: withheld, never passed unread.
        if acl.mode != Mode::Shadow {
            let message = "Warden could not read this answer, which may call a tool, so it was withheld";
            checked.replacement =
                Some(crate::error_body::openai(message, "permission_error", "answer_unchecked", None, request_id));
        }
        return checked;
    };
    let blocked = match api {
        Some(Api::ChatCompletions) => chat(acl, caller, &mut answer, request_id, &mut checked.records),
        Some(Api::Responses) => responses(acl, caller, &mut answer, request_id, &mut checked.records),
        Some(Api::AnthropicMessages) => anthropic(acl, caller, &mut answer, request_id, &mut checked.records),
        None => false,
    };
    if !blocked || acl.mode == Mode::Shadow {
        return checked;
    }
    checked.replacement = Some(if tool_calls_fail(acl) {
        let first = checked.records.iter().find(|r| r.decision.verdict == Verdict::Deny);
        let message = first.map_or_else(|| "a tool call was blocked".to_string(), |r| blocked_message(r, request_id));
        crate::error_body::openai(&message, "permission_error", "tool_call_blocked", None, request_id)
    } else {
        answer.to_string()
    });
    checked
}

/// `choices[].message.tool_calls[]`: blocked calls are removed and their message becomes the
/// assistant's content; a choice left with no call finishes with `stop`.
fn chat(
    acl: &CompiledToolAcl,
    caller: &Caller,
    answer: &mut Value,
    request_id: &str,
    records: &mut Vec<Record>,
) -> bool {
    let mut blocked_any = false;
    let Some(choices) = answer.get_mut("choices").and_then(Value::as_array_mut) else { return false };
    for choice in choices {
        let Some(message) = choice.get_mut("message") else { continue };
        let mut notes = Vec::new();
        let mut none_left = true;
        if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            calls.retain(|call| {
                let name = call.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
                let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                match settle(acl, caller, name, arguments, request_id, records) {
                    None => true,
                    Some(note) => {
                        notes.push(note);
                        false
                    }
                }
            });
            none_left = calls.is_empty();
        }
        // The legacy single call: blocked the same way.
        let mut legacy_blocked = false;
        if let Some(call) = message.get("function_call").filter(|c| c.is_object()) {
            let name = call.get("name").and_then(Value::as_str).unwrap_or("");
            let arguments = call.get("arguments").and_then(Value::as_str).unwrap_or("{}");
            match settle(acl, caller, name, arguments, request_id, records) {
                None => none_left = false,
                Some(note) => {
                    notes.push(note);
                    legacy_blocked = true;
                }
            }
        }
        if notes.is_empty() {
            continue;
        }
        blocked_any = true;
        if let Some(object) = message.as_object_mut() {
            if legacy_blocked {
                object.remove("function_call");
            }
            if object.get("tool_calls").and_then(Value::as_array).is_some_and(Vec::is_empty) {
                object.remove("tool_calls");
            }
        }
        if none_left {
            choice["finish_reason"] = json!("stop");
        }
        let message = &mut choice["message"];
        let previous = message.get("content").and_then(Value::as_str).unwrap_or("").to_string();
        let text = if previous.is_empty() { notes.join("\n") } else { format!("{previous}\n{}", notes.join("\n")) };
        message["content"] = json!(text);
    }
    blocked_any
}

/// `output[]` items of type `function_call`: a blocked one becomes an assistant message.
pub(crate) fn responses(
    acl: &CompiledToolAcl,
    caller: &Caller,
    answer: &mut Value,
    request_id: &str,
    records: &mut Vec<Record>,
) -> bool {
    let mut blocked_any = false;
    let Some(output) = answer.get_mut("output").and_then(Value::as_array_mut) else { return false };
    for item in output {
        if item.get("type").and_then(Value::as_str) != Some("function_call") {
            continue;
        }
        let name = item.get("name").and_then(Value::as_str).unwrap_or("");
        let arguments = item.get("arguments").and_then(Value::as_str).unwrap_or("{}");
        if let Some(note) = settle(acl, caller, name, arguments, request_id, records) {
            blocked_any = true;
            *item = responses_message(item.get("id").cloned(), &note);
        }
    }
    blocked_any
}

pub(crate) fn responses_message(id: Option<Value>, text: &str) -> Value {
    json!({
        "type": "message",
        "id": id.unwrap_or(json!("msg_warden")),
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

/// `content[]` blocks of type `tool_use`: a blocked one becomes a text block; an answer left
/// with no call stops with `end_turn`.
fn anthropic(
    acl: &CompiledToolAcl,
    caller: &Caller,
    answer: &mut Value,
    request_id: &str,
    records: &mut Vec<Record>,
) -> bool {
    let mut blocked_any = false;
    let mut calls_left = false;
    let Some(content) = answer.get_mut("content").and_then(Value::as_array_mut) else { return false };
    for block in content.iter_mut() {
        if block.get("type").and_then(Value::as_str) != Some("tool_use") {
            continue;
        }
        let name = block.get("name").and_then(Value::as_str).unwrap_or("");
        let input = block.get("input").map_or_else(|| "{}".to_string(), Value::to_string);
        match settle(acl, caller, name, &input, request_id, records) {
            None => calls_left = true,
            Some(note) => {
                blocked_any = true;
                *block = json!({"type": "text", "text": note});
            }
        }
    }
    if blocked_any && !calls_left {
        answer["stop_reason"] = json!("end_turn");
    }
    blocked_any
}
