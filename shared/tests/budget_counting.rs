//! Prompt counting against tiktoken itself: chat bodies with names, tool calls, tool results
//! and non-ASCII text must count exactly as `tiktoken_rs::num_tokens_from_messages` does; tool
//! definitions and the Responses and Anthropic shapes exactly as their documented formula
//! computed piece by piece with tiktoken. Rewrites keep every other member byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::sync::OnceLock;
use tiktoken_rs::{num_tokens_from_messages, ChatCompletionRequestMessage, CoreBPE, FunctionCall};
use warden_policy::budget::config::Encoding;
use warden_policy::budget::request::{
    Edits, ModelRequest, RequestError, REPLY_PRIMING, TOKENS_PER_CALL, TOKENS_PER_MESSAGE, TOKENS_PER_TOOL,
    TOOLS_OVERHEAD,
};
use warden_policy::budget::tokenizer::Tokenizers;
use warden_policy::tool_acl::llm::Api;

fn tokenizers() -> &'static Tokenizers {
    static T: OnceLock<Tokenizers> = OnceLock::new();
    T.get_or_init(Tokenizers::default)
}

fn o200k() -> &'static CoreBPE {
    static T: OnceLock<CoreBPE> = OnceLock::new();
    T.get_or_init(|| tiktoken_rs::o200k_base().unwrap())
}

fn n(text: &str) -> u64 {
    o200k().encode_ordinary(text).len() as u64
}

fn count(api: Api, body: &Value) -> u64 {
    let text = body.to_string();
    let request = ModelRequest::parse(api, text.as_bytes()).unwrap();
    request.prompt_tokens(tokenizers(), Encoding::O200k).unwrap()
}

fn message(role: &str, content: &str) -> ChatCompletionRequestMessage {
    ChatCompletionRequestMessage { role: role.into(), content: Some(content.into()), ..Default::default() }
}

/// Chats of every shape the cookbook formula covers, non-ASCII and code included.
fn corpus() -> Vec<(Value, Vec<ChatCompletionRequestMessage>)> {
    let texts = [
        "You are a careful assistant.",
        "Wie spät ist es in Zürich? Grüße aus Köln — naïve café, déjà vu.",
        "東京の天気を教えてください。明日は雨ですか？",
        "مرحبا بالعالم! كيف حالك اليوم؟",
        "fn main() {\n    let x: Vec<u8> = vec![0xFF; 16];\n    println!(\"{x:?}\");\n}\n",
        "emoji: 🤖🛡️📈 and combining marks: e\u{301} a\u{308}",
        "   leading and trailing whitespace   \n\n\t",
        "",
    ];
    let mut corpus = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let system = texts[(i + 1) % texts.len()];
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": text, "name": "alice_ß"},
        ]});
        let expected = vec![message("system", system), {
            let mut m = message("user", text);
            m.name = Some("alice_ß".into());
            m
        }];
        corpus.push((body, expected));
    }
    // An assistant turn with tool calls, then the tool results it got back.
    let arguments = r#"{"city":"Zürich","unit":"celsius","days":[1,2,3]}"#;
    let body = json!({"model": "gpt-4o", "messages": [
        {"role": "user", "content": "Weather in Zürich and 東京?"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"東京\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 3, \"sky\": \"Schnee ❄\"}"},
        {"role": "tool", "tool_call_id": "call_2", "content": "{\"temp\": 11, \"sky\": \"晴れ\"}"},
    ]});
    let expected = vec![
        message("user", "Weather in Zürich and 東京?"),
        ChatCompletionRequestMessage {
            role: "assistant".into(),
            tool_calls: vec![
                FunctionCall { name: "get_weather".into(), arguments: arguments.into() },
                FunctionCall { name: "get_weather".into(), arguments: "{\"city\":\"東京\"}".into() },
            ],
            ..Default::default()
        },
        message("tool", "{\"temp\": 3, \"sky\": \"Schnee ❄\"}"),
        message("tool", "{\"temp\": 11, \"sky\": \"晴れ\"}"),
    ];
    corpus.push((body, expected));
    corpus
}

#[test]
fn chat_messages_count_exactly_as_tiktoken() {
    for (body, messages) in corpus() {
        let expected = num_tokens_from_messages("gpt-4o", &messages).unwrap() as u64;
        assert_eq!(count(Api::ChatCompletions, &body), expected, "{body}");
    }
}

#[test]
fn content_parts_count_as_their_text() {
    let parts = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Grüße "}, {"type": "text", "text": "aus Köln"}]}]});
    let expected = REPLY_PRIMING + TOKENS_PER_MESSAGE + n("user") + n("Grüße ") + n("aus Köln");
    assert_eq!(count(Api::ChatCompletions, &parts), expected);
}

#[test]
fn tool_definitions_count_by_the_documented_formula() {
    let parameters = json!({"type": "object", "properties": {"city": {"type": "string", "description": "Stadt, z. B. Zürich"}}, "required": ["city"]});
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Wetter für eine Stadt", "parameters": parameters}},
        {"type": "function", "function": {"name": "noop"}},
    ]});
    let expected = REPLY_PRIMING
        + TOKENS_PER_MESSAGE
        + n("user")
        + n("hi")
        + TOOLS_OVERHEAD
        + TOKENS_PER_TOOL
        + n("get_weather")
        + n("Wetter für eine Stadt")
        + n(&parameters.to_string())
        + TOKENS_PER_TOOL
        + n("noop");
    assert_eq!(count(Api::ChatCompletions, &body), expected);
}

#[test]
fn responses_and_anthropic_bodies_count_every_billed_part() {
    let responses = json!({"model": "gpt-4o", "instructions": "Sei knapp.", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Wetter in 東京?"}]},
        {"type": "function_call", "name": "get_weather", "arguments": "{\"city\":\"東京\"}", "call_id": "c1"},
        {"type": "function_call_output", "call_id": "c1", "output": "{\"temp\":11}"},
    ], "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}}]});
    let expected = REPLY_PRIMING
        + TOKENS_PER_MESSAGE
        + n("Sei knapp.")
        + (TOKENS_PER_MESSAGE + n("user") + n("Wetter in 東京?"))
        + (TOKENS_PER_MESSAGE + n("get_weather") + TOKENS_PER_CALL + n("{\"city\":\"東京\"}"))
        + (TOKENS_PER_MESSAGE + n("{\"temp\":11}"))
        + TOOLS_OVERHEAD
        + TOKENS_PER_TOOL
        + n("get_weather")
        + n("Weather")
        + n("{\"type\":\"object\"}");
    assert_eq!(count(Api::Responses, &responses), expected);

    let input = json!({"city": "Zürich"});
    let anthropic = json!({"model": "claude-sonnet-4", "max_tokens": 100, "system": "Be brief.", "messages": [
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "3°C, Schnee"}]}]},
    ], "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]});
    let expected = REPLY_PRIMING
        + (TOKENS_PER_MESSAGE + n("Be brief."))
        + (TOKENS_PER_MESSAGE + n("user") + n("Weather in Zürich?"))
        + (TOKENS_PER_MESSAGE + n("assistant") + n("get_weather") + TOKENS_PER_CALL + n(&input.to_string()))
        + (TOKENS_PER_MESSAGE + n("user") + n("3°C, Schnee"))
        + TOOLS_OVERHEAD
        + TOKENS_PER_TOOL
        + n("get_weather")
        + n("Weather")
        + n("{\"type\":\"object\"}");
    assert_eq!(count(Api::AnthropicMessages, &anthropic), expected);
}

#[test]
fn estimates_add_their_margin_to_cl100k() {
    let text = "A sentence that a model with a private tokenizer will see.";
    let cl100k = tiktoken_rs::cl100k_base().unwrap().encode_ordinary(text).len() as u64;
    assert_eq!(tokenizers().count(Encoding::Estimate, text), (cl100k * 125).div_ceil(100));
    assert_eq!(tokenizers().count(Encoding::Cl100k, text), cl100k);
}

#[test]
fn smuggled_and_malformed_bodies_are_refused() {
    let parse = |text: &str| ModelRequest::parse(Api::ChatCompletions, text.as_bytes()).map(|r| r.model);
    assert!(matches!(
        parse(r#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[]}"#),
        Err(RequestError::Malformed(_))
    ));
    assert!(matches!(parse(r#"{"messages":[]}"#), Err(RequestError::NoModel)));
    assert!(matches!(parse(r#"{"model":""}"#), Err(RequestError::NoModel)));
    assert!(matches!(parse(r#"{"model":7}"#), Err(RequestError::WrongType { .. })));
    assert!(matches!(parse(r#"[1,2]"#), Err(RequestError::Malformed(_))));
    assert!(matches!(parse(r#"{"model":"m","max_tokens":-1}"#), Err(RequestError::WrongType { .. })));
    let bad_content = r#"{"model":"gpt-4o","messages":[{"role":"user","content":42}]}"#;
    let request = ModelRequest::parse(Api::ChatCompletions, bad_content.as_bytes()).unwrap();
    assert!(request.prompt_tokens(tokenizers(), Encoding::O200k).is_err());
}

#[test]
fn rewrites_change_only_what_they_must() {
    let text = r#"{"model":"gpt-4o","stream":true,"stream_options":{"other":1},"messages":[{"role":"user","content":"ünïcode \"q\""}],"x":[1,2]}"#;
    let request = ModelRequest::parse(Api::ChatCompletions, text.as_bytes()).unwrap();
    assert!(request.stream && !request.include_usage && request.max_output.is_none());
    let edits = Edits { model: Some("gpt-4o-mini".into()), include_usage: true, max_output: Some(256) };
    let out = request.rewrite(&edits).unwrap();
    let value: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["model"], "gpt-4o-mini");
    assert_eq!(value["stream_options"], json!({"other": 1, "include_usage": true}));
    assert_eq!(value["max_completion_tokens"], 256);
    assert_eq!(value["messages"][0]["content"], "ünïcode \"q\"");
    assert_eq!(value["x"], json!([1, 2]));
    // Without edits a rewrite is the same JSON.
    let same = request.rewrite(&Edits::default()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&same).unwrap(), serde_json::from_str::<Value>(text).unwrap());
    // Caps are read from each API's own member; with both of Chat's, the larger (a provider
    // may honour either); `n` answers each get one.
    let caps = [
        (Api::ChatCompletions, r#"{"model":"m","max_tokens":9}"#, 9, 1),
        (Api::ChatCompletions, r#"{"model":"m","max_completion_tokens":9,"max_tokens":50}"#, 50, 1),
        (Api::ChatCompletions, r#"{"model":"m","max_completion_tokens":90,"max_tokens":50,"n":3}"#, 90, 3),
        (Api::Responses, r#"{"model":"m","max_output_tokens":9}"#, 9, 1),
        (Api::AnthropicMessages, r#"{"model":"m","max_tokens":9,"n":5}"#, 9, 1),
    ];
    for (api, body, cap, choices) in caps {
        let request = ModelRequest::parse(api, body.as_bytes()).unwrap();
        assert_eq!((request.max_output, request.choices), (Some(cap), choices), "{body}");
    }
    assert!(ModelRequest::parse(Api::ChatCompletions, br#"{"model":"m","n":0}"#).is_err());
    assert!(ModelRequest::parse(Api::ChatCompletions, br#"{"model":"m","n":129}"#).is_err());
}

/// Found by fuzzing (`model_request`): writing a cap into a request that already has one
/// replaces it in place instead of adding a second member of the same name.
#[test]
fn a_cap_written_over_an_existing_one_replaces_it() {
    let body = br#"{"model":"m","max_output_tokens":9,"input":"hi"}"#;
    let request = ModelRequest::parse(Api::Responses, body).unwrap();
    let rewritten = request.rewrite(&Edits { max_output: Some(7), ..Edits::default() }).unwrap();
    let again = ModelRequest::parse(Api::Responses, &rewritten).expect("no member twice");
    assert_eq!(again.max_output, Some(7));
}

/// The bound a prompt is first reserved at never falls below its exact count, in any API and
/// either encoding, whatever the text (ASCII, CJK, emoji, one-byte tokens, tool definitions).
#[test]
fn the_prompt_bound_is_never_below_the_exact_count() {
    let texts =
        ["Summarise the quarterly report.", "東京の天気は？ 🤖🤖🤖", "x x x x x x x x", "{\"a\":[1,2,3]}\n\t\t", ""];
    for text in texts {
        let bodies = [
            (
                Api::ChatCompletions,
                json!({"model": "gpt-4o", "messages": [{"role": "system", "content": text}, {"role": "user", "name": "ann", "content": text}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "description": text, "parameters": {"type": "object"}}}]}),
            ),
            (
                Api::Responses,
                json!({"model": "gpt-4o", "instructions": text, "input": [{"role": "user", "content": text}]}),
            ),
            (
                Api::AnthropicMessages,
                json!({"model": "claude-sonnet-4", "max_tokens": 10, "system": text, "messages": [{"role": "user", "content": text}]}),
            ),
        ];
        for (api, body) in bodies {
            let text_body = body.to_string();
            let request = ModelRequest::parse(api, text_body.as_bytes()).unwrap();
            for encoding in [Encoding::O200k, Encoding::Cl100k, Encoding::Estimate] {
                let bound = request.prompt_tokens_bound(encoding).unwrap();
                let exact = request.prompt_tokens(tokenizers(), encoding).unwrap();
                assert!(bound >= exact, "{api:?} {encoding:?} {text:?}: bound {bound} < exact {exact}");
            }
        }
    }
}

/// No vocabulary is built until a prompt is counted exactly.
#[test]
fn tokenizers_are_built_on_first_exact_count() {
    let tokenizers = Tokenizers::default();
    assert!(!tokenizers.built(Encoding::O200k) && !tokenizers.built(Encoding::Cl100k));
    assert_eq!(tokenizers.count(Encoding::O200k, "hello world"), 2);
    assert!(tokenizers.built(Encoding::O200k) && !tokenizers.built(Encoding::Cl100k));
}
