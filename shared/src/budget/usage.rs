//! Real usage read from model answers: a JSON body's `usage`, or a stream's usage events
//! (OpenAI's final usage chunk, Anthropic `message_start` / `message_delta`, Responses
//! `response.completed`). Streamed output is also counted as it passes, for providers that
//! send no usage and for the mid-stream cap.

use super::config::Encoding;
use super::plan::Usage;
use super::tokenizer::Tokenizers;
use crate::model_api::Api;
use crate::sse::{self, EventTooLarge, Framer};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

#[derive(Deserialize, Default)]
struct UsageFields {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    input_tokens_details: Option<Details>,
}

#[derive(Deserialize, Default)]
struct Details {
    cached_tokens: Option<u64>,
}

/// What one answer (or event) says; fields it does not state stay `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub input: Option<u64>,
    pub cached_input: Option<u64>,
    pub output: Option<u64>,
}

impl Reported {
    fn from(api: Api, u: &UsageFields) -> Reported {
        match api {
            Api::AnthropicMessages => {
                // Anthropic's input_tokens leaves out tokens read from or written to the cache.
                let cache_read = u.cache_read_input_tokens.unwrap_or(0);
                let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
                Reported {
                    input: u.input_tokens.map(|n| n + cache_read + cache_write),
                    cached_input: u.cache_read_input_tokens,
                    output: u.output_tokens,
                }
            }
            _ => Reported {
                input: u.prompt_tokens.or(u.input_tokens),
                cached_input: u
                    .prompt_tokens_details
                    .as_ref()
                    .or(u.input_tokens_details.as_ref())
                    .and_then(|d| d.cached_tokens),
                output: u.completion_tokens.or(u.output_tokens),
            },
        }
    }

    /// Later reports win field by field (Anthropic states input first, output at the end).
    fn merge(&mut self, later: Reported) {
        self.input = later.input.or(self.input);
        self.cached_input = later.cached_input.or(self.cached_input);
        self.output = later.output.or(self.output);
    }
}

/// The final usage of an answer: what the provider reported, completed with the prompt
/// estimate and the counted output where it reported nothing.
pub fn settled(reported: Reported, estimate_input: u64, counted_output: u64) -> Usage {
    Usage {
        input: reported.input.unwrap_or(estimate_input),
        cached_input: reported.cached_input.unwrap_or(0),
        output: reported.output.unwrap_or(counted_output),
    }
}

/// How a forwarded request's answer ended, which decides what it is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Read to its end.
    Complete,
    /// The provider itself answered with an error: providers do not bill those.
    ProviderError,
    /// It never finished: no answer came, Envoy answered in the provider's place (a timeout,
    /// a reset), or the client went away mid-answer. The provider may have generated (and
    /// billed) up to everything that was reserved.
    CutShort,
    /// Envoy never got the request to the provider (no healthy host, a connection that could
    /// not be made, an overflowing pool): nothing was generated.
    NotSent,
}

/// Whether an answer Envoy made itself (its `response.code_details`) means the request never
/// reached the provider.
pub fn never_sent(details: &str) -> bool {
    [
        "no_healthy_upstream",
        "connection_failure",
        "connection_timeout",
        "overflow",
        "cluster_not_found",
        "route_not_found",
        "no_route",
    ]
    .iter()
    .any(|d| details.contains(d))
}

/// What a forwarded request is charged: what was read of its usage, and, when its answer was
/// cut short, at least its whole reservation (prompt and output cap). Charging the
/// reservation, not only the prompt, is the choice that never lets an agent spend more than
/// its budget by hanging up: the provider may well have gone on generating.
pub fn charged(ending: Ending, read: Usage, reservation: Usage) -> Usage {
    match ending {
        Ending::Complete => read,
        Ending::ProviderError | Ending::NotSent => Usage::default(),
        Ending::CutShort => Usage {
            input: read.input.max(reservation.input),
            cached_input: read.cached_input,
            output: read.output.max(reservation.output),
        },
    }
}

#[derive(Deserialize)]
struct Answer {
    usage: Option<UsageFields>,
    model: Option<String>,
}

/// The usage (and served model) of a whole JSON answer; `None` when it has none.
pub fn from_json(api: Api, body: &[u8]) -> (Reported, Option<String>) {
    match serde_json::from_slice::<Answer>(body) {
        Ok(answer) => (answer.usage.map(|u| Reported::from(api, &u)).unwrap_or_default(), answer.model),
        Err(_) => (Reported::default(), None),
    }
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    usage: Option<UsageFields>,
    /// Anthropic `message_start`.
    #[serde(default)]
    message: Option<Wrapped>,
    /// Responses `response.completed`.
    #[serde(default)]
    response: Option<Wrapped>,
    /// Anthropic: an object with `text` or `partial_json`; Responses: the text itself.
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Wrapped {
    #[serde(default)]
    usage: Option<UsageFields>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    delta: Option<ChatDelta<'a>>,
}

#[derive(Deserialize)]
struct ChatDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(borrow, default)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    thinking: Option<Cow<'a, str>>,
}

/// Reads a model event stream as it passes: usage events, streamed output, and the cap.
pub struct StreamMeter {
    api: Api,
    encoding: Encoding,
    framer: Framer,
    pub reported: Reported,
    /// Output tokens counted from the streamed text.
    pub counted_output: u64,
    /// Remove OpenAI's usage-only chunk (Warden asked for it, the client did not).
    strip_usage_chunk: bool,
    allowance: Option<u64>,
    /// The stream was cut: everything after is dropped.
    pub cut: bool,
    /// It was cut because an event was too large to read.
    pub oversized: bool,
}

impl StreamMeter {
    pub fn new(
        api: Api,
        encoding: Encoding,
        strip_usage_chunk: bool,
        allowance: Option<u64>,
        max_event: usize,
    ) -> Self {
        StreamMeter {
            api,
            encoding,
            framer: Framer::new(max_event),
            reported: Reported::default(),
            counted_output: 0,
            strip_usage_chunk,
            allowance,
            cut: false,
            oversized: false,
        }
    }

    /// Takes one chunk of the answer; returns the bytes to pass on, with an error event at the
    /// end when the output crossed the allowance (`cut_message` says why). An event too large
    /// to read cannot be metered: the stream is cut there too (`oversized` says so), never
    /// passed on unread.
    pub fn push(&mut self, chunk: &[u8], tokenizers: &Tokenizers, cut_message: &dyn Fn() -> String) -> Vec<u8> {
        if self.cut {
            return Vec::new();
        }
        let events = match self.framer.push(chunk) {
            Ok(events) => events,
            Err(EventTooLarge(limit)) => {
                self.cut = true;
                self.oversized = true;
                let message = format!("an event of the answer is larger than {limit} bytes and cannot be metered");
                return cut_event(self.api, &message);
            }
        };
        let mut out = Vec::with_capacity(chunk.len());
        for event in events {
            if self.pass(&event, tokenizers, cut_message, &mut out) {
                break;
            }
        }
        out
    }

    /// Reads one complete event into `out`; `true` when it crossed the allowance and the
    /// stream is now cut.
    fn pass(
        &mut self,
        event: &[u8],
        tokenizers: &Tokenizers,
        cut_message: &dyn Fn() -> String,
        out: &mut Vec<u8>,
    ) -> bool {
        if self.read(event, tokenizers) {
            out.extend_from_slice(event);
        }
        if self.allowance.is_some_and(|a| self.counted_output > a) {
            out.extend_from_slice(&cut_event(self.api, &cut_message()));
            self.cut = true;
        }
        self.cut
    }

    /// The end of the stream: an unterminated last event is metered like any other and passed
    /// on as it came (or cut).
    pub fn finish(&mut self, tokenizers: &Tokenizers, cut_message: &dyn Fn() -> String) -> Vec<u8> {
        let rest = self.framer.finish();
        let mut out = Vec::new();
        if !self.cut && !rest.is_empty() {
            self.pass(&rest, tokenizers, cut_message, &mut out);
        }
        out
    }

    /// Reads one event; `false` when it must not reach the client.
    fn read(&mut self, event: &[u8], tokenizers: &Tokenizers) -> bool {
        let Some(data) = sse::data(event) else { return true };
        let Ok(parsed) = serde_json::from_str::<Event>(&data) else { return true };
        let mut text = String::new();
        if let Some(choices) = &parsed.choices {
            for delta in choices.iter().filter_map(|c| c.delta.as_ref()) {
                for t in [&delta.content, &delta.refusal].into_iter().flatten() {
                    text.push_str(t);
                }
                for call in delta.tool_calls.iter().flatten().filter_map(|c| c.function.as_ref()) {
                    for t in [&call.name, &call.arguments].into_iter().flatten() {
                        text.push_str(t);
                    }
                }
            }
        }
        if let Some(delta) = parsed.delta {
            match self.api {
                Api::AnthropicMessages => {
                    if let Ok(d) = serde_json::from_str::<AnthropicDelta>(delta.get()) {
                        for t in [&d.text, &d.partial_json, &d.thinking].into_iter().flatten() {
                            text.push_str(t);
                        }
                    }
                }
                _ => {
                    if let Ok(t) = serde_json::from_str::<Cow<str>>(delta.get()) {
                        text.push_str(&t);
                    }
                }
            }
        }
        if !text.is_empty() {
            // Counted exactly: a cut must not come early, and the count settles a stream whose
            // provider reports no usage (the first stream in a VM builds the tokenizer).
            self.counted_output += tokenizers.count(self.encoding, &text);
        }
        let usage = parsed
            .usage
            .as_ref()
            .or(parsed.message.as_ref().and_then(|m| m.usage.as_ref()))
            .or(parsed.response.as_ref().and_then(|r| r.usage.as_ref()));
        let Some(usage) = usage else { return true };
        let reported = Reported::from(self.api, usage);
        self.reported.merge(reported);
        // OpenAI's usage chunk has no choices; one Warden asked for is not the client's.
        let usage_only = parsed.choices.as_ref().is_some_and(Vec::is_empty) && parsed.kind.is_none();
        !(self.strip_usage_chunk && usage_only)
    }
}

/// The event that ends a cut stream, in the API's own error shape.
pub fn cut_event(api: Api, message: &str) -> Vec<u8> {
    match api {
        Api::ChatCompletions => {
            let error =
                serde_json::json!({"error": {"message": message, "type": "tokens", "code": "budget_exhausted"}});
            let mut out = sse::event(None, &error.to_string());
            out.extend_from_slice(&sse::event(None, "[DONE]"));
            out
        }
        Api::Responses => {
            let error =
                serde_json::json!({"type": "error", "code": "budget_exhausted", "message": message, "param": null});
            sse::event(Some("error"), &error.to_string())
        }
        Api::AnthropicMessages => {
            let error = serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": message}});
            sse::event(Some("error"), &error.to_string())
        }
    }
}
