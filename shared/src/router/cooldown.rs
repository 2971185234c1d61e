//! Providers that answered 429 with `Retry-After` are tried last until that time has passed,
//! on every worker: the deadlines are kept in shared data, under one key. The attempt that
//! saw the 429 records its `Retry-After` on the plan; the router writes it here when the answer
//! comes back, and reads it when it orders a request's targets.

use crate::host::Host;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One shared-data key for every provider's cooldown: the router reads it once per request.
const KEY: &str = "warden.router.cooldowns";

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How long a `Retry-After` value asks for (delay-seconds or an HTTP date), at most `cap`;
/// `None` for a value that is neither, or a date already past.
pub fn retry_after(value: &str, now: SystemTime, cap: Duration) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value).ok()?.duration_since(now).ok()?,
    };
    (!wait.is_zero()).then(|| wait.min(cap))
}

/// Each provider's deadline, in milliseconds since the epoch, and the CAS token.
fn read(host: &dyn Host) -> (BTreeMap<String, u64>, Option<u32>) {
    match host.shared_data(KEY) {
        Ok((value, cas)) => (value.and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default(), cas),
        Err(_) => (BTreeMap::new(), None),
    }
}

/// Keeps `provider` last until `now + wait`; a later deadline already set is kept, and
/// deadlines already past are dropped.
pub fn start(host: &dyn Host, provider: &str, now: SystemTime, wait: Duration) {
    let until = millis(now + wait);
    for _ in 0..3 {
        let (mut deadlines, cas) = read(host);
        if deadlines.get(provider).is_some_and(|&d| d >= until) {
            return;
        }
        deadlines.retain(|_, d| *d > millis(now));
        deadlines.insert(provider.to_string(), until);
        let bytes = serde_json::to_vec(&deadlines).unwrap_or_default();
        match host.set_shared_data(KEY, &bytes, cas) {
            Err(crate::host::HostError::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// The providers that asked to be left alone until after `now`, in one read. A fault reading
/// shared data counts as none: the order is a preference, and the attempt still fails over.
pub fn cooling(host: &dyn Host, now: SystemTime) -> Vec<String> {
    let now = millis(now);
    read(host).0.into_iter().filter(|(_, until)| *until > now).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cap = Duration::from_secs(300);
        assert_eq!(retry_after("7", now, cap), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("86400", now, cap), Some(cap));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&date, now, cap), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&httpdate::fmt_http_date(now - Duration::from_secs(5)), now, cap), None);
        assert_eq!(retry_after("soon", now, cap), None);
        assert_eq!(retry_after("0", now, cap), None);
    }
}
