//! The route a request takes, kept in the request's filter state ([`attributes::ROUTE`]): the
//! router writes the targets it chose, and each attempt (the upstream filter, run once per
//! attempt) takes the next target and appends what happened to it. Filter state, not a header:
//! the client cannot write it, and the provider never sees it.

use crate::attributes;
use crate::host::{Host, HostError};
use serde::{Deserialize, Serialize};

/// One target, as the router chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTarget {
    pub provider: String,
    pub model: String,
}

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Sent; nothing has come back yet.
    Sent,
    /// The provider answered, and the answer went to the client.
    Answered,
    /// 429: the next target is tried, and the provider's `Retry-After` kept.
    RateLimited,
    /// 5xx: the next target is tried.
    ServerError,
    /// No answer: a reset, a refused connection or a time-out before the answer's headers.
    NoAnswer,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Answered => "answered",
            Outcome::RateLimited => "rate_limited",
            Outcome::ServerError => "server_error",
            Outcome::NoAnswer => "no_answer",
        }
    }

    /// The outcome of an answer with `status`.
    pub fn of_status(status: u16) -> Outcome {
        match status {
            429 => Outcome::RateLimited,
            500..=599 => Outcome::ServerError,
            _ => Outcome::Answered,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: String,
    pub model: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When it was sent, milliseconds since the epoch.
    pub sent_ms: u64,
    /// Time to the answer's headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    /// A 429's `Retry-After`, in milliseconds (capped by the policy): the router keeps the
    /// provider last for that long. (The router keeps it, not the attempt filter: each runs in
    /// its own VM, and shared data is per VM id.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePlan {
    /// The endpoint's name (`chat/completions`, …).
    pub endpoint: String,
    pub alias: String,
    /// The model the request's body names as it leaves the router: the first target's, when
    /// the router could write it there (its headers are still held), so that the first attempt
    /// need not hold the body again; else the alias.
    #[serde(default)]
    pub body_model: String,
    pub targets: Vec<PlannedTarget>,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

impl RoutePlan {
    pub fn read(host: &dyn Host) -> Result<Option<RoutePlan>, HostError> {
        let Some(bytes) = host.property(&[attributes::ROUTE])? else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| HostError::Failed { call: "get_property(warden.route)", status: "not a route plan".into() })
    }

    pub fn write(&self, host: &dyn Host) -> Result<(), HostError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        host.set_property(&[attributes::ROUTE], &bytes)
    }

    /// An attempt still marked sent when a later one starts, or when the request ends, never
    /// had an answer: Envoy reset it, or could not connect, or its time ran out.
    pub fn close_unanswered(&mut self) {
        for attempt in &mut self.attempts {
            if attempt.outcome == Outcome::Sent {
                attempt.outcome = Outcome::NoAnswer;
            }
        }
    }

    /// The attempt whose answer reached the client: the last, if a provider answered it.
    pub fn served(&self) -> Option<&Attempt> {
        self.attempts.last().filter(|a| a.status.is_some() && a.outcome != Outcome::NoAnswer)
    }
}
