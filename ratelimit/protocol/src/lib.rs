//! The wire contract between Warden's token-budget filter and its rate-limit service: the
//! Envoy rate-limit API messages (`envoy.service.ratelimit.v3`, written out with prost derive,
//! so no protobuf compiler is needed), the entries Warden adds for reservations and settles,
//! the units budgets count in, and the UTC-calendar windows they reset on.
//!
//! It is its own small crate so that the service depends on this contract and nothing else of
//! the policy crate (no tokenizers, no JWT library).

pub mod rls;
pub mod window;

pub use window::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Unit {
    InputTokens,
    OutputTokens,
    TotalTokens,
    CostUsd,
    Requests,
    /// MCP `tools/call` requests, each counted once.
    ToolCalls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Window {
    /// One request: a per-request maximum, nothing is stored.
    Request,
    Minute,
    Hour,
    Day,
    /// Calendar month in UTC.
    Month,
    /// The lifetime of the session (until it has been idle for `sessionIdle`).
    Session,
}
