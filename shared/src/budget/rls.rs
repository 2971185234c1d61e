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
use super::config::Window;
pub use warden_rls::rls::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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
