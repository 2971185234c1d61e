//! When to fetch an issuer's remote key set: at start, on a timer, sooner after a failure,
//! and (rate-limited) when a token names a key the proxy does not know yet.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
pub struct JwksSchedule {
    refresh_interval: Duration,
    retry_interval: Duration,
    unknown_kid_interval: Duration,
    next_fetch: Option<SystemTime>,
    last_unknown_kid_fetch: Option<SystemTime>,
    in_flight: bool,
}

impl JwksSchedule {
    pub fn new(
        refresh_interval: Duration,
        retry_interval: Duration,
        unknown_kid_interval: Duration,
    ) -> Self {
        Self {
            refresh_interval,
            retry_interval,
            unknown_kid_interval,
            next_fetch: None, // due at once
            last_unknown_kid_fetch: None,
            in_flight: false,
        }
    }

    /// True when a timed fetch should start now.
    pub fn due(&self, now: SystemTime) -> bool {
        !self.in_flight && self.next_fetch.is_none_or(|at| now >= at)
    }

    /// True (and the fetch is counted as started) when an unknown `kid` may trigger a fetch.
    pub fn allow_unknown_kid_fetch(&mut self, now: SystemTime) -> bool {
        if self.in_flight {
            return false;
        }
        let allowed = self.last_unknown_kid_fetch.is_none_or(|last| {
            now.duration_since(last).unwrap_or_default() >= self.unknown_kid_interval
        });
        if allowed {
            self.last_unknown_kid_fetch = Some(now);
        }
        allowed
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    pub fn started(&mut self) {
        self.in_flight = true;
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
        JwksSchedule::new(
            Duration::from_secs(300),
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
    }

    #[test]
    fn fetches_at_start_then_on_refresh() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = schedule();
        assert!(s.due(t0));
        s.started();
        assert!(!s.due(t0), "no second fetch while one is in flight");
        s.succeeded(t0);
        assert!(!s.due(t0 + Duration::from_secs(299)));
        assert!(s.due(t0 + Duration::from_secs(300)));
    }

    #[test]
    fn retries_sooner_after_failure() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = schedule();
        s.started();
        s.failed(t0);
        assert!(!s.due(t0 + Duration::from_secs(4)));
        assert!(s.due(t0 + Duration::from_secs(5)));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut s = schedule();
        assert!(s.allow_unknown_kid_fetch(t0));
        assert!(!s.allow_unknown_kid_fetch(t0 + Duration::from_secs(10)));
        assert!(s.allow_unknown_kid_fetch(t0 + Duration::from_secs(30)));
    }
}
