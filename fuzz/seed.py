#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) from the shapes the tests use.
Run it again after changing a fixture: `python3 fuzz/seed.py`."""
import base64, hashlib, hmac, json, os, pathlib

root = pathlib.Path(__file__).resolve().parent
repo = root.parent


def write(target, name, data):
    folder = root / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# jwt: tokens of the fuzz policy's HS256 issuer (fuzz_targets/jwt.rs), good and bad.
secret = base64.b64decode("d2FyZGVuLWZ1enotc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=")
def hs256(header, claims):
    signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)
claims = {"iss": "https://hs.test", "aud": "gw", "sub": "agent-1", "exp": 1700000300, "iat": 1699999990,
          "tenant": "acme", "role": "agent", "scope": "a b", "act": {"sub": "outer", "act": {"sub": "inner"}}}
write("jwt", "valid", hs256({"alg": "HS256", "typ": "JWT"}, claims))
write("jwt", "expired", hs256({"alg": "HS256"}, dict(claims, exp=1)))
write("jwt", "alg-none", b64(b'{"alg":"none"}') + "." + b64(json.dumps(claims).encode()) + ".")
write("jwt", "duplicate-alg", b64(b'{"alg":"HS256","alg":"none"}') + "." + b64(b"{}") + ".c2ln")
write("jwt", "eddsa-kid", b64(b'{"alg":"EdDSA","kid":"ed-1"}') + "." + b64(json.dumps(dict(claims, iss="https://ed.test")).encode()) + "." + b64(b"x" * 64))

# jsonrpc: MCP requests as clients send them.
call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/srv/a"}, "_meta": {"warden/approval": "t"}}}
write("jsonrpc", "call", json.dumps(call))
write("jsonrpc", "list", '{"jsonrpc":"2.0","id":"s-1","method":"tools/list","params":{}}')
write("jsonrpc", "batch", json.dumps([call, {"jsonrpc": "2.0", "method": "notifications/initialized"}, {"jsonrpc": "2.0", "id": 3, "result": {}}]))
write("jsonrpc", "escaped", '{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"x"}}')
write("jsonrpc", "null-id", '{"jsonrpc":"2.0","id":null,"method":"ping"}')

# sse: listings and model streams, CRLF and CR line ends, a BOM.
listing = json.dumps({"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "read_file", "inputSchema": {"type": "object"}}]}})
write("sse", "listing", "event: message\nid: 0\ndata: " + listing + "\n\n: keep-alive\r\n\r\ndata: a\rdata: b\r\r")
write("sse", "bom", b"\xef\xbb\xbfdata: {\"id\":1}\n\ndata: x\n\n")
write("sse", "unterminated", "data: {\"choices\":[]}\n\ndata: [DONE]")

# model_request: the three APIs with tools, caps, n, system prompts, tool results.
write("model_request", "chat", json.dumps({"model": "gpt-4o", "n": 2, "max_tokens": 50, "max_completion_tokens": 40, "stream": True,
    "stream_options": {"include_usage": False}, "messages": [{"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}], "name": "u"},
    {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}], "function_call": {"name": "g", "arguments": "{}"}},
    {"role": "tool", "tool_call_id": "c", "content": "result"}],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}], "functions": [{"name": "g"}]}))
write("model_request", "responses", json.dumps({"model": "gpt-4o", "instructions": "x", "max_output_tokens": 9,
    "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}, {"type": "function_call_output", "call_id": "c", "output": "ok"}],
    "tools": [{"type": "function", "name": "f", "parameters": {}}]}))
write("model_request", "anthropic", json.dumps({"model": "claude-3", "max_tokens": 100, "system": [{"type": "text", "text": "s"}],
    "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]}]},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]}],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}]}))

# model_answer: JSON and streamed answers with usage and tool calls.
def events(items, named=False):
    return "".join((f"event: {i.get('type', 'message')}\n" if named else "") + "data: " + json.dumps(i) + "\n\n" for i in items)
write("model_answer", "chat-stream", "\x00" + events([{"choices": [{"index": 0, "delta": {"content": " tok"}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}}]},
    {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 1}}}]) + "data: [DONE]\n\n")
write("model_answer", "anthropic-stream", "\x07" + events([{"type": "message_start", "message": {"usage": {"input_tokens": 3}}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "message_delta", "usage": {"output_tokens": 1}}], named=True))
write("model_answer", "responses-stream", "\x11" + events([{"type": "response.output_text.delta", "delta": "x"},
    {"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 1}}}], named=True))
write("model_answer", "json", "\x00" + json.dumps({"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}))

# canonical: member order, escapes, numbers, nesting.
write("canonical", "mixed", '{ "b": [1, 2.5, -0, 1e3, {"y": null, "x": true}], "a": "\\u00e9\\n\\"q\\"", "\\u0061b": {} }')
write("canonical", "scalars", '[1.0, 10000000000000000000000, "\\ud83d\\ude00", false]')

# policy: the example policies, whole.
for name in ["tool-acl", "token-budget", "identity"]:
    path = repo / "examples" / name / "policy.yaml"
    if path.exists():
        write("policy", name, path.read_text())
write("policy", "json", '{"toolAcl": {"servers": [{"name": "s", "pathPrefix": "/mcp"}], "rules": [{"id": "r", "effect": "deny", "arguments": [{"pointer": "/p", "path": {"within": ["/etc"]}}]}]}}')

# request_id: pairs the SDKs take for one another.
for i, pair in enumerate(['1|"1"', '"0x1"|1', '"abc"|"abc"', '" 1"|"1_0"', '0|""', '"\\u0661"|1', '1.5|1', 'null|1']):
    write("request_id", f"pair-{i}", pair)

# file_path: traversal and separators.
for i, path in enumerate(["/srv/../etc/shadow", "//etc//passwd", "/./a/./b/..", "\\etc\\shadow", "relative/x", "/"]):
    write("file_path", f"path-{i}", path)
print("seed corpora written to", root / "corpus")
