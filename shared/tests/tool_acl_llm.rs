//! Function tools on model routes, without a proxy: declared tools in requests, tool calls in
//! JSON answers and in streams of all three APIs, split at every point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::sse::Framer;
use warden_policy::tool_acl::compile::CompiledToolAcl;
use warden_policy::tool_acl::llm::{check_response, decide_request, Api, RequestAction, StreamGuard};

fn policy(extra: &str) -> CompiledToolAcl {
    let yaml = format!(
        "toolAcl:\n  llm:\n    paths: [/v1/]\n{extra}  rules:\n    - id: weather\n      effect: allow\n      servers: [llm]\n      tools: [get_weather]\n      arguments: [{{pointer: /city, maxLength: 20}}]\n"
    );
    CompiledToolAcl::compile(parse_document(yaml.as_bytes()).unwrap().tool_acl.as_ref().unwrap()).unwrap()
}

fn caller() -> Caller {
    Caller { agent: Some("a".into()), ..Caller::default() }
}

/// Streams `events` through a guard, split into two chunks at `split` (bytes).
fn stream(acl: &CompiledToolAcl, api: Api, text: &str, split: usize) -> String {
    let mut framer = Framer::new(1 << 20);
    let mut guard = StreamGuard::new(Some(api));
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (chunk, last) in [(&bytes[..split], false), (&bytes[split..], true)] {
        let mut events = framer.push(chunk).unwrap();
        if last {
            let rest = framer.finish();
            if !rest.is_empty() {
                events.push(rest);
            }
        }
        for event in events {
            out.extend(guard.event(acl, &caller(), &event, "req-1").0);
        }
    }
    String::from_utf8(out).unwrap()
}

fn sse(events: &[(&str, Value)]) -> String {
    events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect()
}

fn responses_stream(tool: &str, arguments: &str) -> String {
    let item = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": tool, "arguments": ""});
    let done_item =
        json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": tool, "arguments": arguments});
    sse(&[
        ("response.created", json!({"type": "response.created", "response": {"id": "resp_1", "output": []}})),
        ("response.output_item.added", json!({"type": "response.output_item.added", "output_index": 0, "item": item})),
        (
            "response.function_call_arguments.delta",
            json!({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": &arguments[..arguments.len() / 2]}),
        ),
        (
            "response.function_call_arguments.delta",
            json!({"type": "response.function_call_arguments.delta", "output_index": 0, "item_id": "fc_1", "delta": &arguments[arguments.len() / 2..]}),
        ),
        (
            "response.function_call_arguments.done",
            json!({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc_1", "arguments": arguments}),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": 0, "item": done_item}),
        ),
        (
            "response.completed",
            json!({"type": "response.completed", "response": {"id": "resp_1", "output": [done_item]}}),
        ),
    ])
}

fn anthropic_stream(tool: &str, arguments: &str) -> String {
    sse(&[
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1", "content": [], "stop_reason": null}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "On it."}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": &arguments[..arguments.len() / 2]}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": &arguments[arguments.len() / 2..]}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 1})),
        ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}})),
        ("message_stop", json!({"type": "message_stop"})),
    ])
}

#[test]
fn allowed_calls_stream_through_unchanged_in_every_api() {
    let acl = policy("");
    for (api, text) in [
        (Api::Responses, responses_stream("get_weather", r#"{"city":"Paris"}"#)),
        (Api::AnthropicMessages, anthropic_stream("get_weather", r#"{"city":"Paris"}"#)),
    ] {
        for split in 0..=text.len() {
            assert_eq!(stream(&acl, api, &text, split), text, "{api:?} split at {split}");
        }
    }
}

#[test]
fn blocked_calls_are_replaced_at_every_split_in_every_api() {
    let acl = policy("");
    // A call to another tool, and an allowed tool with arguments outside its constraint.
    for (tool, arguments) in
        [("delete_repository", r#"{"repo":"prod"}"#), ("get_weather", r#"{"city":"Llanfairpwllgwyngyll-town"}"#)]
    {
        for (api, text) in [
            (Api::Responses, responses_stream(tool, arguments)),
            (Api::AnthropicMessages, anthropic_stream(tool, arguments)),
        ] {
            let whole = stream(&acl, api, &text, 0);
            assert!(!whole.contains("\"function_call\"") && !whole.contains("\"tool_use\""), "{api:?}: {whole}");
            assert!(!whole.contains("input_json_delta") && !whole.contains("function_call_arguments"), "{whole}");
            assert!(whole.contains("Warden blocked a call to tool"), "{whole}");
            if api == Api::AnthropicMessages {
                assert!(whole.contains("\"stop_reason\":\"end_turn\"") && whole.contains("On it."), "{whole}");
            }
            for split in (0..=text.len()).step_by(5) {
                assert_eq!(stream(&acl, api, &text, split), whole, "{api:?} split at {split}");
            }
        }
    }
}

#[test]
fn fail_mode_ends_the_stream_with_an_error_event() {
    let acl = policy("    toolCalls: fail\n");
    let out = stream(&acl, Api::AnthropicMessages, &anthropic_stream("rm_rf", "{}"), 0);
    assert!(out.contains("event: error") && out.contains("permission_error"), "{out}");
    assert!(!out.contains("message_stop"), "nothing after the error: {out}");
    let out = stream(&acl, Api::Responses, &responses_stream("rm_rf", "{}"), 0);
    assert!(out.contains("event: error") && !out.contains("response.completed"), "{out}");
}

#[test]
fn json_answers_of_every_api() {
    let acl = policy("");
    let chat = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
        "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "2", "type": "function", "function": {"name": "wire_money", "arguments": "{}"}}]}}]});
    let checked = check_response(&acl, &caller(), Some(Api::ChatCompletions), &chat.to_string(), "r");
    let out: Value = serde_json::from_str(checked.replacement.as_ref().unwrap()).unwrap();
    let calls = out["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "the allowed call stays");
    assert!(out["choices"][0]["message"]["content"].as_str().unwrap().contains("wire_money"));
    assert_eq!(checked.records.len(), 2);

    let responses = json!({"output": [{"type": "function_call", "id": "fc", "name": "wire_money", "arguments": "{}"}]});
    let checked = check_response(&acl, &caller(), Some(Api::Responses), &responses.to_string(), "r");
    let out: Value = serde_json::from_str(checked.replacement.as_ref().unwrap()).unwrap();
    assert_eq!(out["output"][0]["type"], "message");

    let anthropic = json!({"stop_reason": "tool_use", "content": [{"type": "tool_use", "id": "t", "name": "wire_money", "input": {}}]});
    let checked = check_response(&acl, &caller(), Some(Api::AnthropicMessages), &anthropic.to_string(), "r");
    let out: Value = serde_json::from_str(checked.replacement.as_ref().unwrap()).unwrap();
    assert_eq!(out["content"][0]["type"], "text");
    assert_eq!(out["stop_reason"], "end_turn");

    // Invalid arguments from the model are never let through.
    let bad = json!({"choices": [{"index": 0, "message": {"tool_calls": [{"id": "1", "function": {"name": "get_weather", "arguments": "{not json"}}]}}]});
    let checked = check_response(&acl, &caller(), Some(Api::ChatCompletions), &bad.to_string(), "r");
    assert_eq!(checked.records[0].decision.reason, "call_arguments_invalid");
    // No tool call: nothing is parsed or rewritten.
    let plain = json!({"choices": [{"message": {"content": "hi"}}]});
    assert!(check_response(&acl, &caller(), Some(Api::ChatCompletions), &plain.to_string(), "r").replacement.is_none());
}

#[test]
fn declared_tools_in_every_api_shape() {
    let acl = policy("");
    let bodies = [
        (
            "/v1/chat/completions",
            json!({"model": "m", "tools": [{"type": "function", "function": {"name": "get_weather"}}, {"type": "function", "function": {"name": "shell"}}], "parallel_tool_calls": true}),
        ),
        (
            "/v1/responses",
            json!({"model": "m", "tools": [{"type": "function", "name": "get_weather"}, {"type": "web_search"}]}),
        ),
        (
            "/v1/messages",
            json!({"model": "m", "tools": [{"name": "get_weather", "input_schema": {}}, {"name": "shell", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "shell"}}),
        ),
    ];
    for (path, body) in bodies {
        let decided = decide_request(&acl, &caller(), path, body.to_string().as_bytes(), "r");
        assert_eq!(decided.removed, 1, "{path}");
        let RequestAction::Forward { rewritten: Some(new_body) } = decided.action else { panic!("{path}") };
        let sent: Value = serde_json::from_slice(&new_body).unwrap();
        assert_eq!(sent["tools"].as_array().unwrap().len(), 1, "{path}");
        assert!(sent.get("tool_choice").is_none(), "{path}");
        assert_eq!(sent["model"], "m");
    }
    // Every tool removed: the tool settings go too.
    let only_bad = json!({"model": "m", "tools": [{"type": "function", "function": {"name": "shell"}}], "tool_choice": "auto", "parallel_tool_calls": false});
    let decided = decide_request(&acl, &caller(), "/v1/chat/completions", only_bad.to_string().as_bytes(), "r");
    let RequestAction::Forward { rewritten: Some(new_body) } = decided.action else { panic!() };
    assert_eq!(serde_json::from_slice::<Value>(&new_body).unwrap(), json!({"model": "m"}));
    // Refuse mode, and bodies that cannot be read.
    let refuse = policy("    declaredTools: refuse\n");
    let decided = decide_request(&refuse, &caller(), "/v1/chat/completions", only_bad.to_string().as_bytes(), "r");
    assert!(matches!(decided.action, RequestAction::Reply { status: 403, .. }));
    for bad in [&b"not json"[..], br#"{"tools": 5}"#, br#"{"tools": [{"type": "function"}]}"#, br#"{"a":1,"a":2}"#] {
        let decided = decide_request(&acl, &caller(), "/v1/chat/completions", bad, "r");
        assert!(matches!(decided.action, RequestAction::Reply { status: 400, .. }), "{}", String::from_utf8_lossy(bad));
    }
}

/// Chat Completions' legacy `functions` / `function_call` are governed like `tools` /
/// `tool_calls`: in the request, in a JSON answer and in a stream, at every split.
#[test]
fn legacy_function_calls_are_governed_like_tool_calls() {
    let acl = policy("");
    // The request: a function the agent may not call is removed, and a `function_call` that
    // names it goes with it.
    let request = json!({"model": "m", "messages": [], "functions": [{"name": "get_weather"}, {"name": "wire_money"}],
        "function_call": {"name": "wire_money"}});
    let decided = decide_request(&acl, &caller(), "/v1/chat/completions", request.to_string().as_bytes(), "r");
    let RequestAction::Forward { rewritten: Some(body) } = decided.action else { panic!("rewritten") };
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["functions"], json!([{"name": "get_weather"}]));
    assert!(sent.get("function_call").is_none(), "{sent}");

    // A JSON answer carrying only a legacy call.
    let answer = json!({"choices": [{"index": 0, "finish_reason": "function_call",
        "message": {"role": "assistant", "content": null, "function_call": {"name": "wire_money", "arguments": "{\"to\":\"x\"}"}}}]});
    let checked = check_response(&acl, &caller(), Some(Api::ChatCompletions), &answer.to_string(), "r");
    let replaced: Value = serde_json::from_str(checked.replacement.as_deref().expect("blocked")).unwrap();
    let message = &replaced["choices"][0]["message"];
    assert!(message.get("function_call").is_none(), "{replaced}");
    assert!(message["content"].as_str().unwrap().contains("wire_money"));
    assert_eq!(replaced["choices"][0]["finish_reason"], "stop");
    let allowed = answer.to_string().replace("wire_money", "get_weather").replace("\\\"to\\\"", "\\\"city\\\"");
    assert!(check_response(&acl, &caller(), Some(Api::ChatCompletions), &allowed, "r").replacement.is_none());

    // Streamed: the call's deltas are held and never reach the agent.
    let chunk = |delta: Value, finish: Value| json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let events = [
        chunk(
            json!({"role": "assistant", "content": null, "function_call": {"name": "wire_money", "arguments": ""}}),
            Value::Null,
        ),
        chunk(json!({"function_call": {"arguments": "{\"to\":"}}), Value::Null),
        chunk(json!({"function_call": {"arguments": "\"x\"}"}}), Value::Null),
        chunk(json!({}), json!("function_call")),
    ];
    let text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n";
    for split in (1..text.len()).step_by(5) {
        let out = stream(&acl, Api::ChatCompletions, &text, split);
        assert!(!out.contains("function_call\":{"), "split {split}: {out}");
        assert!(out.contains("Warden blocked a call to tool \\\"wire_money\\\""), "split {split}: {out}");
        assert!(out.ends_with("data: [DONE]\n\n"));
    }
}

/// Found by fuzzing: serde_json reads an object whose member is its reserved `RawValue` key as
/// another document, and a stream event it cannot read passed unchecked. An event that may
/// carry a tool call and cannot be read now ends the stream.
#[test]
fn an_event_that_may_call_a_tool_and_cannot_be_read_ends_the_stream() {
    let acl = policy("");
    let smuggled = r#"{"$serde_json::private::RawValue":"{}","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"wire_money","arguments":"{}"}}]}}]}"#;
    let text = format!("data: {smuggled}\n\ndata: [DONE]\n\n");
    let out = stream(&acl, Api::ChatCompletions, &text, 3);
    assert!(!out.contains("wire_money"), "{out}");
    assert!(out.contains("answer_unchecked"), "{out}");
}
