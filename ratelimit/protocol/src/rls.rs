//! The Envoy rate-limit API (`envoy.service.ratelimit.v3`) messages, and Warden's own entries:
//! a draw carries a reservation id (`warden_reservation`) and is later settled exactly once (the
//! same descriptor with a last entry `warden_settle` = `<hits used>@<window start>`).

use crate::{Unit, Window};

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
}
