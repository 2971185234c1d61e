//! Global budgets over the standard Envoy rate-limit API (`envoy.service.ratelimit.v3`).
//!
//! The messages are written out here (prost derive, the field numbers of Envoy's protos) so
//! no protobuf compiler is needed. A reservation is one `ShouldRateLimit` call carrying one
//! descriptor per global budget, each with its limit (`RateLimitOverride`, so the policy stays
//! the one source of limits) and its own `hits_addend`.
//!
//! Giving back the unused part of a reservation is not in the standard API. With Warden's own
//! service (`release: true`) every draw carries a reservation id (a last entry
//! `warden_reservation`, which the service keeps out of the counter's key), and every draw is
//! later settled exactly once: the same descriptor with `warden_reservation` and a last entry
//! `warden_settle` = `<hits used>@<window start>`. The service remembers what each reservation
//! drew, so a settle can give back at most that (a peer cannot empty a counter), and a settle
//! that arrives before its draw (whose answer timed out) leaves a mark that makes the late draw
//! count nothing: a timed-out draw is reconciled, not leaked. Against envoyproxy/ratelimit or
//! Limitador (`release: false`) no ids or settles are sent, and reservations stay counted in full.

use super::compile::Budget;
use super::config::{Unit, Window};

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// The entry naming the budget in every descriptor.
pub const BUDGET_ENTRY: &str = "warden_budget";
/// The entry carrying a draw's reservation id (last in a draw, before the settle entry in a
/// settle).
pub const RESERVATION_ENTRY: &str = "warden_reservation";
/// The last entry of a settle descriptor: `<hits used>@<window start>`.
pub const SETTLE_ENTRY: &str = "warden_settle";
/// Cost is counted in the rate-limit service in units of 1/10,000 USD (100 micro-USD), so a
/// `u32` limit reaches $429,496 per window.
pub const MICRO_USD_PER_HIT: u64 = 100;

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const CODE_OK: i32 = 1;
pub const CODE_OVER_LIMIT: i32 = 2;

/// `RateLimitUnit` values.
pub const UNIT_MINUTE: i32 = 2;
pub const UNIT_HOUR: i32 = 3;
pub const UNIT_DAY: i32 = 4;
pub const UNIT_MONTH: i32 = 5;

pub fn unit_of(window: Window) -> i32 {
    match window {
        Window::Minute => UNIT_MINUTE,
        Window::Hour => UNIT_HOUR,
        Window::Day => UNIT_DAY,
        // Validation keeps request and session windows local.
        Window::Month | Window::Request | Window::Session => UNIT_MONTH,
    }
}

/// The window a `RateLimitUnit` stands for; `None` for units Warden does not count in.
pub fn window_of(unit: i32) -> Option<Window> {
    match unit {
        UNIT_MINUTE => Some(Window::Minute),
        UNIT_HOUR => Some(Window::Hour),
        UNIT_DAY => Some(Window::Day),
        UNIT_MONTH => Some(Window::Month),
        _ => None,
    }
}

/// An amount in the budget's unit as rate-limit hits (cost rounded up to 1/10,000 USD).
pub fn hits(unit: Unit, amount: u64) -> u64 {
    match unit {
        Unit::CostUsd => amount.div_ceil(MICRO_USD_PER_HIT),
        _ => amount,
    }
}

/// Rate-limit hits back in the budget's unit (the service's remaining counts, say).
pub fn amount(unit: Unit, hits: u64) -> u64 {
    match unit {
        Unit::CostUsd => hits.saturating_mul(MICRO_USD_PER_HIT),
        _ => hits,
    }
}

/// One global budget's part of a call: which budget, for which scope, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub budget: usize,
    pub scope: Vec<(String, String)>,
    /// In hits.
    pub hits: u64,
    pub limit: u64,
    pub window: Window,
    /// The id the service remembers this draw by (Warden's own service only).
    pub reservation: Option<String>,
}

impl Draw {
    pub fn new(
        index: usize,
        budget: &Budget,
        scope: &[(&str, &str)],
        amount: u64,
        reservation: Option<String>,
    ) -> Draw {
        Draw {
            budget: index,
            scope: std::iter::once((BUDGET_ENTRY.to_string(), budget.id.clone()))
                .chain(scope.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())))
                .collect(),
            hits: hits(budget.unit, amount),
            limit: hits(budget.unit, budget.limit),
            window: budget.window,
            reservation,
        }
    }

    fn descriptor(&self, hits: u64, settle: Option<String>) -> RateLimitDescriptor {
        let mut entries: Vec<Entry> =
            self.scope.iter().map(|(k, v)| Entry { key: k.clone(), value: v.clone() }).collect();
        if let Some(id) = &self.reservation {
            entries.push(Entry { key: RESERVATION_ENTRY.to_string(), value: id.clone() });
        }
        if let Some(value) = settle {
            entries.push(Entry { key: SETTLE_ENTRY.to_string(), value });
        }
        RateLimitDescriptor {
            entries,
            limit: Some(RateLimitOverride {
                requests_per_unit: u32::try_from(self.limit).unwrap_or(u32::MAX),
                unit: unit_of(self.window),
            }),
            hits_addend: Some(hits),
        }
    }
}

/// The reservation call for `draws`, encoded.
pub fn reserve_request(domain: &str, draws: &[Draw]) -> Vec<u8> {
    let request = RateLimitRequest {
        domain: domain.to_string(),
        descriptors: draws.iter().map(|d| d.descriptor(d.hits, None)).collect(),
        hits_addend: 0,
    };
    prost::Message::encode_to_vec(&request)
}

/// The settle call: what each draw (made with a reservation id) really used, in hits, for the
/// window it was reserved in. `None` when there is nothing to settle.
pub fn settle_request(domain: &str, settled: &[(Draw, u64, u64)]) -> Option<Vec<u8>> {
    let descriptors: Vec<RateLimitDescriptor> = settled
        .iter()
        .filter(|(draw, _, _)| draw.reservation.is_some())
        .map(|(draw, used_hits, window_start)| draw.descriptor(0, Some(format!("{used_hits}@{window_start}"))))
        .collect();
    if descriptors.is_empty() {
        return None;
    }
    Some(prost::Message::encode_to_vec(&RateLimitRequest { domain: domain.to_string(), descriptors, hits_addend: 0 }))
}

/// What the service answered, per draw in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub over_limit: bool,
    /// Per descriptor: over limit, hits remaining, seconds until the window resets.
    pub statuses: Vec<(bool, u64, Option<u64>)>,
}

pub fn read_answer(bytes: &[u8]) -> Result<Answer, String> {
    let response: RateLimitResponse =
        prost::Message::decode(bytes).map_err(|e| format!("unreadable rate-limit answer: {e}"))?;
    match response.overall_code {
        CODE_OK | CODE_OVER_LIMIT => {}
        other => return Err(format!("rate-limit answer has code {other}")),
    }
    Ok(Answer {
        over_limit: response.overall_code == CODE_OVER_LIMIT,
        statuses: response
            .statuses
            .iter()
            .map(|s| {
                (
                    s.code == CODE_OVER_LIMIT,
                    u64::from(s.limit_remaining),
                    s.duration_until_reset.map(|d| d.seconds.max(0) as u64),
                )
            })
            .collect(),
    })
}

/// Parses a settle entry's value, `<hits used>@<window start>`.
pub fn parse_settle(value: &str) -> Option<(u64, u64)> {
    let (used, start) = value.split_once('@')?;
    Some((used.parse().ok()?, start.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_up_to_whole_hits() {
        assert_eq!(hits(Unit::CostUsd, 1), 1);
        assert_eq!(hits(Unit::CostUsd, 100), 1);
        assert_eq!(hits(Unit::CostUsd, 101), 2);
        assert_eq!(hits(Unit::TotalTokens, 101), 101);
    }

    #[test]
    fn settle_values_round_trip() {
        assert_eq!(parse_settle("120@1795614300"), Some((120, 1_795_614_300)));
        assert_eq!(parse_settle("7@0"), Some((7, 0)));
        assert_eq!(parse_settle("-1@0"), None, "a settle says what was used, never a negative");
        assert_eq!(parse_settle("x@1"), None);
        assert_eq!(parse_settle("5"), None);
    }

    #[test]
    fn over_limit_answers_are_read_per_descriptor() {
        let answer = RateLimitResponse {
            overall_code: CODE_OVER_LIMIT,
            statuses: vec![
                DescriptorStatus {
                    code: CODE_OK,
                    current_limit: None,
                    limit_remaining: 10,
                    duration_until_reset: None,
                },
                DescriptorStatus {
                    code: CODE_OVER_LIMIT,
                    current_limit: None,
                    limit_remaining: 0,
                    duration_until_reset: Some(ProtoDuration { seconds: 42, nanos: 0 }),
                },
            ],
        };
        let read = read_answer(&prost::Message::encode_to_vec(&answer)).unwrap();
        assert!(read.over_limit);
        assert_eq!(read.statuses, vec![(false, 10, None), (true, 0, Some(42))]);
        assert!(read_answer(b"\x08\x00").is_err(), "code UNKNOWN is not an answer");
    }
}
