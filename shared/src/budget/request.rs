//! A model request as the budget needs it: which model, its output cap, whether it streams,
//! and every billed token of its prompt (messages, tool definitions, tool calls and results)
//! in OpenAI Chat Completions, OpenAI Responses and Anthropic Messages bodies.
//!
//! Bodies are read with borrowed, typed structs; a top-level member twice is refused (one
//! parser would see one `model`, the provider another).

use super::config::Encoding;
use super::tokenizer::{Tokenizers, ESTIMATE_MARGIN_PERCENT};
use crate::model_api::Api;
use crate::strict_json::StrictObject;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Framing tokens per message (OpenAI's cookbook: `<|start|>role<|message|>…<|end|>`).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Added when a message carries a `name`.
pub const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
pub const REPLY_PRIMING: u64 = 3;
/// Added per tool call in a message.
pub const TOKENS_PER_CALL: u64 = 1;
/// Per tool definition, on top of its name, description and schema text (an estimate: the
/// providers render definitions into a hidden system text).
pub const TOKENS_PER_TOOL: u64 = 8;
/// Once per request that declares tools.
pub const TOOLS_OVERHEAD: u64 = 12;
/// An image, file or audio part: a flat estimate (a 512×512 high-detail image tile set).
pub const MEDIA_TOKENS: u64 = 765;
/// The most answers one request may ask for (OpenAI's own limit on `n`).
pub const MAX_CHOICES: u64 = 128;
/// Content nesting deeper than this (tool results holding blocks) is refused.
const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not a JSON object: {0}")]
    Malformed(String),
    #[error("the request names no model")]
    NoModel,
    #[error("`{member}` cannot be read: {detail}")]
    WrongType { member: String, detail: String },
}

/// What a rewrite changes in the forwarded body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits {
    /// A cheaper model chosen because a budget was spent.
    pub model: Option<String>,
    /// Ask an OpenAI stream for its usage chunk.
    pub include_usage: bool,
    /// Write the default output cap.
    pub max_output: Option<u32>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        *self == Edits::default()
    }
}

pub struct ModelRequest<'a> {
    pub api: Api,
    object: StrictObject<'a>,
    pub model: String,
    pub stream: bool,
    /// Chat Completions: `stream_options.include_usage` was asked for by the client.
    pub include_usage: bool,
    /// The output cap the request sets per answer, in whichever member its API uses (the
    /// larger when Chat Completions' `max_completion_tokens` and legacy `max_tokens` are both
    /// present: a provider may honour either).
    pub max_output: Option<u64>,
    /// How many answers it asks for (Chat Completions' `n`), each up to the cap.
    pub choices: u64,
}

fn wrong(member: &str, e: impl std::fmt::Display) -> RequestError {
    RequestError::WrongType { member: member.to_string(), detail: e.to_string() }
}

impl<'a> ModelRequest<'a> {
    pub fn parse(api: Api, body: &'a [u8]) -> Result<ModelRequest<'a>, RequestError> {
        let object = StrictObject::parse(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let get_u64 = |key: &str| object.get::<Option<u64>>(key).map(Option::flatten).map_err(|e| wrong(key, e));
        let model: String = object.get("model").map_err(|e| wrong("model", e))?.ok_or(RequestError::NoModel)?;
        if model.is_empty() {
            return Err(RequestError::NoModel);
        }
        let stream = object.get::<Option<bool>>("stream").map_err(|e| wrong("stream", e))?.flatten().unwrap_or(false);
        let include_usage = match object.raw("stream_options") {
            Some(raw) if raw.get() != "null" => {
                let options = StrictObject::parse(raw.get().as_bytes()).map_err(|e| wrong("stream_options", e))?;
                options.get::<Option<bool>>("include_usage").map_err(|e| wrong("stream_options", e))?.flatten()
                    == Some(true)
            }
            _ => false,
        };
        let max_output = match api {
            Api::ChatCompletions => match (get_u64("max_completion_tokens")?, get_u64("max_tokens")?) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
            Api::Responses => get_u64("max_output_tokens")?,
            Api::AnthropicMessages => get_u64("max_tokens")?,
        };
        let choices = match api {
            Api::ChatCompletions => get_u64("n")?.unwrap_or(1),
            Api::Responses | Api::AnthropicMessages => 1,
        };
        if choices == 0 || choices > MAX_CHOICES {
            return Err(wrong("n", format!("must be between 1 and {MAX_CHOICES}")));
        }
        Ok(ModelRequest { api, object, model, stream, include_usage, max_output, choices })
    }

    /// The prompt's tokens under `encoding`, with the framing every API adds.
    pub fn prompt_tokens(&self, tokenizers: &Tokenizers, encoding: Encoding) -> Result<u64, RequestError> {
        self.count(Counter { tokenizers: Some(tokenizers), encoding })
    }

    /// An upper bound of `prompt_tokens` that needs no tokenizer: every text counts one token
    /// per byte (a byte-level BPE token always covers at least one byte; an `estimate` adds its
    /// margin to that too), everything else as when counted exactly. Reserving it can never overshoot a budget; the exact count is
    /// needed only when the bound does not fit.
    pub fn prompt_tokens_bound(&self, encoding: Encoding) -> Result<u64, RequestError> {
        self.count(Counter { tokenizers: None, encoding })
    }

    fn count(&self, counter: Counter<'_>) -> Result<u64, RequestError> {
        match self.api {
            Api::ChatCompletions => counter.chat(&self.object),
            Api::Responses => counter.responses(&self.object),
            Api::AnthropicMessages => counter.anthropic(&self.object),
        }
    }

    /// The member an output cap is written to when the request sets none.
    pub fn cap_member(&self) -> &'static str {
        match self.api {
            Api::ChatCompletions => "max_completion_tokens",
            Api::Responses => "max_output_tokens",
            Api::AnthropicMessages => "max_tokens",
        }
    }

    /// The body with `edits` applied, members in their order, new ones appended.
    pub fn rewrite(&self, edits: &Edits) -> Result<Vec<u8>, RequestError> {
        let mut out = Vec::with_capacity(
            self.object.members().iter().map(|(k, v)| k.len() + v.get().len() + 4).sum::<usize>() + 64,
        );
        out.push(b'{');
        let mut first = true;
        let mut push = |out: &mut Vec<u8>, key: &str, value: &str| {
            if !first {
                out.push(b',');
            }
            first = false;
            // Keys came from valid JSON or are ours: quoting through serde keeps escapes right.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        };
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
        let mut wrote_options = false;
        let mut wrote_cap = false;
        let cap_member = self.cap_member();
        for (key, value) in self.object.members() {
            match key.as_ref() {
                k if k == cap_member && edits.max_output.is_some() => {
                    push(&mut out, cap_member, &edits.max_output.unwrap_or_default().to_string());
                    wrote_cap = true;
                }
                "model" if edits.model.is_some() => {
                    push(&mut out, "model", &quoted(edits.model.as_deref().unwrap_or_default()));
                }
                "stream_options" if edits.include_usage && value.get() != "null" => {
                    let options =
                        StrictObject::parse(value.get().as_bytes()).map_err(|e| wrong("stream_options", e))?;
                    let mut inner = String::from("{");
                    for (k, v) in options.members().iter().filter(|(k, _)| k != "include_usage") {
                        inner.push_str(&quoted(k));
                        inner.push(':');
                        inner.push_str(v.get());
                        inner.push(',');
                    }
                    inner.push_str("\"include_usage\":true}");
                    push(&mut out, "stream_options", &inner);
                    wrote_options = true;
                }
                "stream_options" if edits.include_usage => {}
                _ => push(&mut out, key, value.get()),
            }
        }
        if edits.include_usage && !wrote_options {
            push(&mut out, "stream_options", "{\"include_usage\":true}");
        }
        if let (Some(cap), false) = (edits.max_output, wrote_cap) {
            push(&mut out, cap_member, &cap.to_string());
        }
        out.push(b'}');
        Ok(out)
    }
}

/// Counts a request's texts exactly (with a tokenizer) or at their upper bound (without).
struct Counter<'t> {
    tokenizers: Option<&'t Tokenizers>,
    encoding: Encoding,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow, default)]
    function_call: Option<Function<'a>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow)]
    function: Function<'a>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Cow<'a, str>,
}

/// A content part, content block or Responses input item: the fields any of them bill.
#[derive(Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
    /// Anthropic `tool_use` input: its JSON text is what the model saw.
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    /// Message content, or an Anthropic `tool_result`'s content.
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    /// A Responses `function_call_output`.
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
}

/// A tool definition in any of the three shapes: Chat nests it under `function`, Responses
/// and Anthropic do not.
#[derive(Deserialize)]
struct ToolDefinition<'a> {
    #[serde(borrow, default)]
    function: Option<Box<ToolDefinition<'a>>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

impl Counter<'_> {
    fn text(&self, text: &str) -> u64 {
        match self.tokenizers {
            Some(tokenizers) => tokenizers.count(self.encoding, text),
            None => match self.encoding {
                Encoding::Estimate => (text.len() as u64 * (100 + ESTIMATE_MARGIN_PERCENT)).div_ceil(100),
                _ => text.len() as u64,
            },
        }
    }

    fn member<'a, T: Deserialize<'a>>(object: &StrictObject<'a>, key: &str) -> Result<Option<T>, RequestError> {
        match object.raw(key) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str(raw.get()).map(Some).map_err(|e| wrong(key, e)),
        }
    }

    fn chat(&self, object: &StrictObject) -> Result<u64, RequestError> {
        let messages: Vec<Message> = Self::member(object, "messages")?.unwrap_or_default();
        let mut total = REPLY_PRIMING;
        for m in &messages {
            total += TOKENS_PER_MESSAGE + self.text(m.role.as_deref().unwrap_or_default());
            if let Some(content) = m.content {
                total += self.content(content, 0)?;
            }
            if let Some(name) = &m.name {
                total += self.text(name) + TOKENS_PER_NAME;
            }
            let calls = m.tool_calls.iter().flatten().map(|c| &c.function).chain(m.function_call.as_ref());
            for call in calls {
                total += self.text(&call.name) + self.text(&call.arguments) + TOKENS_PER_CALL;
            }
            if let Some(refusal) = &m.refusal {
                total += self.text(refusal);
            }
        }
        total += self.tools(object, "tools")? + self.tools(object, "functions")?;
        Ok(total)
    }

    fn responses(&self, object: &StrictObject) -> Result<u64, RequestError> {
        let mut total = REPLY_PRIMING;
        if let Some(instructions) = Self::member::<Cow<str>>(object, "instructions")? {
            total += TOKENS_PER_MESSAGE + self.text(&instructions);
        }
        if let Some(input) = object.raw("input") {
            total += match input.get().as_bytes().first() {
                Some(b'"') => TOKENS_PER_MESSAGE + self.content(input, 0)?,
                _ => {
                    let items: Vec<Part> = serde_json::from_str(input.get()).map_err(|e| wrong("input", e))?;
                    let mut sum = 0;
                    for item in &items {
                        sum += TOKENS_PER_MESSAGE + self.part(item, 0)?;
                    }
                    sum
                }
            };
        }
        Ok(total + self.tools(object, "tools")?)
    }

    fn anthropic(&self, object: &StrictObject) -> Result<u64, RequestError> {
        let mut total = REPLY_PRIMING;
        if let Some(system) = object.raw("system") {
            total += TOKENS_PER_MESSAGE + self.content(system, 0)?;
        }
        let messages: Vec<Message> = Self::member(object, "messages")?.unwrap_or_default();
        for m in &messages {
            total += TOKENS_PER_MESSAGE + self.text(m.role.as_deref().unwrap_or_default());
            if let Some(content) = m.content {
                total += self.content(content, 0)?;
            }
        }
        Ok(total + self.tools(object, "tools")?)
    }

    /// Content written as a string, an array of parts, or `null`.
    fn content(&self, raw: &RawValue, depth: usize) -> Result<u64, RequestError> {
        if depth > MAX_DEPTH {
            return Err(wrong("content", "nested too deeply"));
        }
        match raw.get().as_bytes().first() {
            Some(b'"') => {
                let text: Cow<str> = serde_json::from_str(raw.get()).map_err(|e| wrong("content", e))?;
                Ok(self.text(&text))
            }
            Some(b'[') => {
                let parts: Vec<Part> = serde_json::from_str(raw.get()).map_err(|e| wrong("content", e))?;
                let mut sum = 0;
                for part in &parts {
                    sum += self.part(part, depth + 1)?;
                }
                Ok(sum)
            }
            Some(b'n') if raw.get() == "null" => Ok(0),
            _ => Err(wrong("content", "expected a string or an array of parts")),
        }
    }

    fn part(&self, part: &Part, depth: usize) -> Result<u64, RequestError> {
        let kind = part.kind.as_deref().unwrap_or("message");
        if ["image", "file", "audio", "document"].iter().any(|m| kind.contains(m)) {
            return Ok(MEDIA_TOKENS);
        }
        let mut sum = 0;
        if let Some(role) = &part.role {
            sum += self.text(role);
        }
        if let Some(text) = &part.text {
            sum += self.text(text);
        }
        if let Some(name) = &part.name {
            sum += self.text(name) + TOKENS_PER_CALL;
        }
        if let Some(arguments) = &part.arguments {
            sum += self.text(arguments);
        }
        if let Some(input) = part.input {
            sum += self.text(input.get());
        }
        for nested in [part.content, part.output].into_iter().flatten() {
            sum += self.content(nested, depth + 1)?;
        }
        Ok(sum)
    }

    fn tools(&self, object: &StrictObject, key: &str) -> Result<u64, RequestError> {
        let tools: Vec<ToolDefinition> = Self::member(object, key)?.unwrap_or_default();
        if tools.is_empty() {
            return Ok(0);
        }
        let mut sum = TOOLS_OVERHEAD;
        for tool in &tools {
            let d = tool.function.as_deref().unwrap_or(tool);
            sum += TOKENS_PER_TOOL;
            sum += d.name.as_deref().map_or(0, |t| self.text(t));
            sum += d.description.as_deref().map_or(0, |t| self.text(t));
            sum += d.parameters.or(d.input_schema).map_or(0, |s| self.text(s.get()));
        }
        Ok(sum)
    }
}
