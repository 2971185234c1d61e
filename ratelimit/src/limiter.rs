//! One `ShouldRateLimit` call decided: draws and settles read from the descriptors, counted
//! in the store, answered per descriptor.

use crate::store::{Drawn, Reservation, Settle, Store, StoreError, Take};
use std::time::{SystemTime, UNIX_EPOCH};
use warden_rls::rls::{
    self, DescriptorStatus, ProtoDuration, RateLimit, RateLimitDescriptor, RateLimitRequest, RateLimitResponse,
};
use warden_rls::Span;

/// Counters outlive their window by this much, so a late settle still finds them.
const TTL_MARGIN_SECS: u64 = 120;

pub struct Limiter {
    pub store: Store,
    /// Prefix of every counter key (Redis may be shared with other users).
    pub prefix: String,
}

/// Names and values with the key's separators escaped, so two descriptors never share a key.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('|', "%7C").replace('=', "%3D").replace('{', "%7B").replace('}', "%7D")
}

/// A counter's identity: domain and every entry, as a Redis hash tag (`{…}`). Every key of one
/// counter (the counter in each window, its reservations' records and marks) carries it, so on
/// Redis Cluster they share a hash slot and one script can change them together.
fn tag(domain: &str, entries: &[rls::Entry]) -> String {
    let mut out = format!("{{{}", escape(domain));
    for e in entries {
        out.push('|');
        out.push_str(&escape(&e.key));
        out.push('=');
        out.push_str(&escape(&e.value));
    }
    out.push('}');
    out
}

/// A counter's key in one window: prefix, its tag, the window start.
fn key(prefix: &str, domain: &str, entries: &[rls::Entry], window_start: u64) -> String {
    format!("{prefix}{}|{window_start}", tag(domain, entries))
}

enum Part {
    NoLimit,
    Take { take: Take, limit: u64, unit: i32, span: Span },
    Settle(Settle),
}

/// Where a reservation's draw on one counter and its settle's mark are kept, by its id, under
/// the counter's tag.
fn reservation(prefix: &str, domain: &str, scope: &[rls::Entry], id: &str) -> Reservation {
    let tag = tag(domain, scope);
    Reservation {
        record: format!("{prefix}{tag}|reservation|{}", escape(id)),
        mark: format!("{prefix}{tag}|settled|{}", escape(id)),
    }
}

impl Limiter {
    fn part(&self, domain: &str, d: &RateLimitDescriptor, request_hits: u64, now: u64) -> Part {
        let Some(limit) = &d.limit else { return Part::NoLimit };
        let Some(window) = rls::window_of(limit.unit) else { return Part::NoLimit };
        let mut entries: &[rls::Entry] = &d.entries;
        // A settle: `..., warden_reservation=<id>, warden_settle=<used>@<window start>`.
        if let Some((last, rest)) = entries.split_last().filter(|(last, _)| last.key == rls::SETTLE_ENTRY) {
            let (Some((used, window_start)), Some((id, scope))) =
                (rls::parse_settle(&last.value), rest.split_last().filter(|(id, _)| id.key == rls::RESERVATION_ENTRY))
            else {
                return Part::NoLimit;
            };
            let span = window.span(window_start);
            let ttl = span.end.saturating_sub(now) + TTL_MARGIN_SECS;
            return Part::Settle(Settle {
                key: key(&self.prefix, domain, scope, span.start),
                reservation: reservation(&self.prefix, domain, scope, &id.value),
                used,
                ttl,
            });
        }
        // A draw, remembered by its reservation id when it has one (not part of the key).
        let mut held = None;
        if let Some((id, scope)) = entries.split_last().filter(|(id, _)| id.key == rls::RESERVATION_ENTRY) {
            held = Some(reservation(&self.prefix, domain, scope, &id.value));
            entries = scope;
        }
        let span = window.span(now);
        let hits = d.hits_addend.unwrap_or(request_hits);
        let take = Take {
            key: key(&self.prefix, domain, entries, span.start),
            hits,
            limit: u64::from(limit.requests_per_unit),
            ttl: span.end - now + TTL_MARGIN_SECS,
            reservation: held,
        };
        Part::Take { take, limit: u64::from(limit.requests_per_unit), unit: limit.unit, span }
    }

    pub async fn should_rate_limit(&self, request: &RateLimitRequest) -> Result<RateLimitResponse, StoreError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        // An absent or zero request-level addend means one hit, as in the API.
        let request_hits = if request.hits_addend == 0 { 1 } else { u64::from(request.hits_addend) };
        let parts: Vec<Part> =
            request.descriptors.iter().map(|d| self.part(&request.domain, d, request_hits, now)).collect();
        let settles: Vec<Settle> =
            parts.iter().filter_map(|p| if let Part::Settle(s) = p { Some(s.clone()) } else { None }).collect();
        if !settles.is_empty() {
            self.store.settle(&settles).await?;
        }
        let takes: Vec<Take> = parts
            .iter()
            .filter_map(|p| if let Part::Take { take, .. } = p { Some(take.clone()) } else { None })
            .collect();
        let drawn = if takes.is_empty() { Drawn::Within(Vec::new()) } else { self.store.draw(&takes).await? };
        let (over, values) = match drawn {
            Drawn::Within(v) => (false, v),
            Drawn::Over(v) => (true, v),
        };
        let mut values = values.into_iter();
        let statuses = parts
            .iter()
            .map(|p| match p {
                Part::NoLimit | Part::Settle(_) => DescriptorStatus {
                    code: rls::CODE_OK,
                    current_limit: None,
                    limit_remaining: 0,
                    duration_until_reset: None,
                },
                Part::Take { take, limit, unit, span } => {
                    let value = values.next().unwrap_or(0);
                    let this_over = over && value + take.hits > *limit;
                    DescriptorStatus {
                        code: if this_over { rls::CODE_OVER_LIMIT } else { rls::CODE_OK },
                        current_limit: Some(RateLimit {
                            requests_per_unit: u32::try_from(*limit).unwrap_or(u32::MAX),
                            unit: *unit,
                            name: String::new(),
                        }),
                        limit_remaining: u32::try_from(limit.saturating_sub(value)).unwrap_or(u32::MAX),
                        duration_until_reset: Some(ProtoDuration {
                            seconds: i64::try_from(span.end - now).unwrap_or(i64::MAX),
                            nanos: 0,
                        }),
                    }
                }
            })
            .collect();
        Ok(RateLimitResponse { overall_code: if over { rls::CODE_OVER_LIMIT } else { rls::CODE_OK }, statuses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use warden_rls::rls::{Entry, RateLimitOverride};

    fn descriptor(tenant: &str, hits: u64, limit: u32, extra: &[(&str, &str)]) -> RateLimitDescriptor {
        let mut entries = vec![
            Entry { key: rls::BUDGET_ENTRY.into(), value: "tenant-day".into() },
            Entry { key: "tenant".into(), value: tenant.into() },
        ];
        entries.extend(extra.iter().map(|(k, v)| Entry { key: (*k).into(), value: (*v).into() }));
        RateLimitDescriptor {
            entries,
            limit: Some(RateLimitOverride { requests_per_unit: limit, unit: rls::UNIT_DAY }),
            hits_addend: Some(hits),
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest { domain: "warden".into(), descriptors, hits_addend: 0 }
    }

    #[tokio::test]
    async fn reservations_are_refused_without_being_counted_and_settles_give_back() {
        let limiter = Limiter { store: Store::Memory(MemoryStore::default()), prefix: "t:".into() };
        let draw = |hits, id: &'static str| descriptor("acme", hits, 1000, &[(rls::RESERVATION_ENTRY, id)]);
        let first = limiter.should_rate_limit(&request(vec![draw(700, "r1")])).await.unwrap();
        assert_eq!(first.overall_code, rls::CODE_OK);
        assert_eq!(first.statuses[0].limit_remaining, 300);
        let refused = limiter.should_rate_limit(&request(vec![draw(400, "r2")])).await.unwrap();
        assert_eq!(refused.overall_code, rls::CODE_OVER_LIMIT);
        assert_eq!(refused.statuses[0].limit_remaining, 300, "a refused draw adds nothing");
        // The first request used 250 of its 700: the settle gives 450 back.
        let start = warden_rls::Window::Day.span(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs());
        let used = format!("250@{}", start.start);
        let settle = descriptor("acme", 0, 1000, &[(rls::RESERVATION_ENTRY, "r1"), (rls::SETTLE_ENTRY, &used)]);
        limiter.should_rate_limit(&request(vec![settle.clone()])).await.unwrap();
        let again = limiter.should_rate_limit(&request(vec![draw(400, "r3")])).await.unwrap();
        assert_eq!(again.overall_code, rls::CODE_OK);
        assert_eq!(again.statuses[0].limit_remaining, 350);
        // The same settle again, or one for a reservation never drawn, gives nothing back.
        limiter.should_rate_limit(&request(vec![settle])).await.unwrap();
        let forged = format!("0@{}", start.start);
        let forged = descriptor("acme", 0, 1000, &[(rls::RESERVATION_ENTRY, "nothing"), (rls::SETTLE_ENTRY, &forged)]);
        limiter.should_rate_limit(&request(vec![forged])).await.unwrap();
        let check = limiter.should_rate_limit(&request(vec![descriptor("acme", 0, 1000, &[])])).await.unwrap();
        assert_eq!(check.statuses[0].limit_remaining, 350);
        // Another tenant has its own counter; a descriptor without a limit is never limited.
        let other = limiter.should_rate_limit(&request(vec![descriptor("globex", 1000, 1000, &[])])).await.unwrap();
        assert_eq!(other.overall_code, rls::CODE_OK);
        let mut unlimited = descriptor("acme", 5000, 1000, &[]);
        unlimited.limit = None;
        assert_eq!(limiter.should_rate_limit(&request(vec![unlimited])).await.unwrap().overall_code, rls::CODE_OK);
    }

    #[test]
    fn keys_cannot_collide_through_separators() {
        let e = |k: &str, v: &str| Entry { key: k.into(), value: v.into() };
        let a = key("p:", "d", &[e("tenant", "a|user=b")], 0);
        let b = key("p:", "d", &[e("tenant", "a"), e("user", "b")], 0);
        assert_ne!(a, b);
        // A value cannot close the hash tag early and so move another counter's slot.
        let c = key("p:", "d", &[e("tenant", "a}x")], 0);
        assert_eq!(c, "p:{d|tenant=a%7Dx}|0");
    }

    #[test]
    fn every_key_of_a_counter_shares_its_hash_tag() {
        let e = |k: &str, v: &str| Entry { key: k.into(), value: v.into() };
        let scope = [e(rls::BUDGET_ENTRY, "tenant-day"), e("tenant", "acme")];
        let counter = key("w:", "warden", &scope, 86400);
        let r = reservation("w:", "warden", &scope, "abc.1");
        let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_string();
        assert_eq!(tag(&counter), "{warden|warden_budget=tenant-day|tenant=acme}");
        assert_eq!(tag(&r.record), tag(&counter));
        assert_eq!(tag(&r.mark), tag(&counter));
    }
}
