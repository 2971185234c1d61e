//! Recorded MCP and model answers shared by the harness tests, the end-to-end tests and the
//! benchmark.

use serde_json::{json, Value};

/// The example policy the demo, tests and benchmark all use.
pub fn example_policy() -> String {
    std::fs::read_to_string(crate::repo::root().join("examples/tool-acl/policy.yaml")).unwrap_or_default()
}

/// A `tools/call` request of about `size` bytes (the argument `content` is padded).
pub fn call_request(id: u64, tool: &str, path: &str, size: usize) -> String {
    let skeleton = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"path": path, "content": ""}}});
    let pad = size.saturating_sub(skeleton.to_string().len());
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"path": path, "content": "x".repeat(pad)}}})
    .to_string()
}

/// The tools a demo file server lists: the example policy allows some and hides the rest.
pub fn tool_definitions(count: usize) -> Vec<Value> {
    let base = [
        ("read_file", true, false),
        ("write_file", false, false),
        ("delete_file", false, true),
        ("search_files", true, false),
        ("admin_reindex", false, false),
        ("exec_shell", false, true),
    ];
    (0..count)
        .map(|i| {
            let (name, read_only, destructive) = base[i % base.len()];
            let name = if i < base.len() { name.to_string() } else { format!("{name}_{i}") };
            json!({
                "name": name,
                "description": format!("Tool {name}: does what its name says, on the demo file tree."),
                "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}, "required": ["path"]},
                "annotations": {"readOnlyHint": read_only, "destructiveHint": destructive},
            })
        })
        .collect()
}

/// A JSON-RPC answer to `tools/list` with these tools.
pub fn list_answer(id: u64, tools: &[Value]) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}).to_string()
}

/// The same answer as one server-sent event, as Streamable HTTP servers send it.
pub fn list_answer_sse(id: u64, tools: &[Value]) -> String {
    format!("event: message\nid: 0\ndata: {}\n\n", list_answer(id, tools))
}

/// A streamed Chat Completions answer in which the model calls `tool` with `arguments`,
/// split across chunks as OpenAI does, with some text first.
pub fn chat_stream_with_call(tool: &str, arguments: &str) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![
        chunk(json!({"role": "assistant", "content": "Let me check."}), Value::Null),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": tool, "arguments": ""}}]}),
            Value::Null,
        ),
    ];
    let (a, b) = arguments.split_at(arguments.len() / 2);
    for part in [a, b] {
        events.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}), Value::Null));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out
}
