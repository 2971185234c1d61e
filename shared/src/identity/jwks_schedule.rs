//! When to fetch an issuer's remote key set: at start, on a timer, sooner after a failure,
//! and (rate-limited) when a request needs keys the proxy does not hold yet.
//!
//! Fetches are only ever sent by the root context on its timer: a callout sent from a request's
//! context belongs to that request, and Envoy cancels it when the request ends.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct JwksSchedule {
    refresh_interval: Duration,
    retry_interval: Duration,
    on_demand_interval: Duration,
    next_fetch: Option<SystemTime>,
    last_on_demand: Option<SystemTime>,
    wanted: bool,
    in_flight: bool,
}

impl JwksSchedule {
    pub fn new(refresh_interval: Duration, retry_interval: Duration, on_demand_interval: Duration) -> Self {
        Self {
            refresh_interval,
            retry_interval,
            on_demand_interval,
            next_fetch: None, // due at once
            last_on_demand: None,
            wanted: false,
            in_flight: false,
        }
    }

    /// True when a fetch should start now: first fetch, refresh or retry time, or asked for.
    pub fn due(&self, now: SystemTime) -> bool {
        !self.in_flight && (self.wanted || self.next_fetch.is_none_or(|at| now >= at))
    }

    /// A request needs fresh keys (unknown `kid`, keys not loaded). Returns true when a fetch is
    /// under way or will start on the next timer tick; on-demand fetches are rate-limited so a
    /// stream of bogus `kid`s cannot turn into a stream of fetches.
    pub fn want(&mut self, now: SystemTime) -> bool {
        if self.in_flight || self.wanted || self.next_fetch.is_none() {
            return true;
        }
        let allowed = self
            .last_on_demand
            .is_none_or(|last| now.duration_since(last).unwrap_or_default() >= self.on_demand_interval);
        if allowed {
            self.last_on_demand = Some(now);
            self.wanted = true;
        }
        allowed
    }

    pub fn started(&mut self) {
        self.in_flight = true;
        self.wanted = false;
    }

    pub fn succeeded(&mut self, now: SystemTime) {
        self.in_flight = false;
        self.next_fetch = Some(now + self.refresh_interval);
    }

    /// A failed fetch is retried sooner than a refresh; the last good key set stays in use.
    pub fn failed(&mut self, now: SystemTime) {
        self.in_flight = false;
        self.next_fetch = Some(now + self.retry_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> JwksSchedule {
        JwksSchedule::new(Duration::from_secs(300), Duration::from_secs(5), Duration::from_secs(30))
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + secs)
    }

    #[test]
    fn fetches_at_start_then_on_refresh() {
        let mut s = schedule();
        assert!(s.due(at(0)));
        s.started();
        assert!(!s.due(at(0)), "no second fetch while one is in flight");
        s.succeeded(at(0));
        assert!(!s.due(at(299)));
        assert!(s.due(at(300)));
    }

    #[test]
    fn retries_sooner_after_failure() {
        let mut s = schedule();
        s.started();
        s.failed(at(0));
        assert!(!s.due(at(4)));
        assert!(s.due(at(5)));
    }

    #[test]
    fn on_demand_fetches_are_rate_limited() {
        let mut s = schedule();
        s.started();
        s.succeeded(at(0));
        assert!(s.want(at(1)));
        assert!(s.due(at(1)));
        s.started();
        s.succeeded(at(1));
        assert!(!s.want(at(10)), "a second unknown kid within the interval waits for nothing");
        assert!(!s.due(at(10)));
        assert!(s.want(at(31)));
    }

    #[test]
    fn a_request_before_the_first_fetch_waits_for_it() {
        let mut s = schedule();
        assert!(s.want(at(0)), "the first fetch is due anyway");
        s.started();
        assert!(s.want(at(0)), "and then in flight");
    }
}
