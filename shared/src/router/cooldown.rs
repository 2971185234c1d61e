//! Providers that answered 429 with `Retry-After` are tried last until that time has passed,
//! on every worker: the time is kept in shared data, one key per provider. The attempt that
//! saw the 429 records its `Retry-After` on the plan; the router writes it here when the answer
//! comes back, and reads it when it orders a request's targets.

use crate::host::Host;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn key(provider: &str) -> String {
    format!("warden.router.cooldown.{provider}")
}

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

/// Keeps `provider` last until `now + wait`. A later deadline already set is kept.
pub fn start(host: &dyn Host, provider: &str, now: SystemTime, wait: Duration) {
    let until = millis(now + wait);
    for _ in 0..3 {
        let Ok((current, cas)) = host.shared_data(&key(provider)) else { return };
        let current = current.and_then(|v| String::from_utf8(v).ok()).and_then(|v| v.parse::<u64>().ok());
        if current.is_some_and(|c| c >= until) {
            return;
        }
        match host.set_shared_data(&key(provider), until.to_string().as_bytes(), cas) {
            Err(crate::host::HostError::CasMismatch) => continue,
            _ => return,
        }
    }
}

/// Whether `provider` asked to be left alone until after `now`. A fault reading shared data
/// counts as no: the order is a preference, and the attempt still fails over.
pub fn cooling(host: &dyn Host, provider: &str, now: SystemTime) -> bool {
    host.shared_data(&key(provider))
        .ok()
        .and_then(|(value, _)| value)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|until| until > millis(now))
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
