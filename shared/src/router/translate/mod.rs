//! Translation between the two API families agents speak: an agent calling OpenAI Chat
//! Completions can be served by an Anthropic Messages provider, and the reverse. Requests
//! (`request`), JSON answers and errors (`answer`) and streamed answers, event by event
//! (`stream`): system prompts, tool definitions, tool calls and their results, stop reasons and
//! usage (cached input included) keep their meaning.
//!
//! What cannot be carried is refused, never dropped in silence: a request member with no
//! counterpart on the other side ([`Unsupported`]) makes the router drop that target when it
//! chooses targets, and the request gets a 400 if none is left.

pub mod answer;
pub mod request;
pub mod stream;

/// Why a request cannot be translated: the member (or content type) with no counterpart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} cannot be translated")]
pub struct Unsupported(pub String);

impl Unsupported {
    pub fn member(name: impl Into<String>) -> Unsupported {
        Unsupported(name.into())
    }
}

/// Which way a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The agent speaks OpenAI Chat Completions; the provider Anthropic Messages.
    ChatToMessages,
    /// The agent speaks Anthropic Messages; the provider OpenAI Chat Completions.
    MessagesToChat,
}

/// Anthropic requires an output cap; an OpenAI request that sets none gets this one.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic's `stop_reason` for OpenAI's `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}
