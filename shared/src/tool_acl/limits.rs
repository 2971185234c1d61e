//! Per-session tool-call limits and loop protection, in shared data.
//!
//! Each session (or agent, without a session) is one line in one of `sessionSlots` slots;
//! a slot keeps at most [`SESSIONS_PER_SLOT`] sessions and evicts the least recently used, so
//! memory stays bounded whatever agents send. A line holds only hashes and counts: calls,
//! write calls, and the recent calls (hash of tool + arguments, time) loop protection needs.

use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};
use crate::tool_acl::compile::Limits;
use std::time::{SystemTime, UNIX_EPOCH};

pub const SESSIONS_PER_SLOT: usize = 4;
/// Recent calls remembered per session: loop protection's `maxRepeats` is at most this.
pub const RECENT_CALLS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Within,
    TooManyCalls,
    TooManyWrites,
    Loop,
}

impl LimitVerdict {
    pub fn reason(self) -> &'static str {
        match self {
            LimitVerdict::Within => "within_limits",
            LimitVerdict::TooManyCalls => "session_call_limit",
            LimitVerdict::TooManyWrites => "session_write_limit",
            LimitVerdict::Loop => "loop_detected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    session: String,
    last_seen_ms: u64,
    calls: u32,
    writes: u32,
    /// (call digest, time in ms), oldest first.
    recent: Vec<(String, u64)>,
}

fn parse(line: &str) -> Option<Line> {
    let mut fields = line.split(' ');
    let session = fields.next()?.to_string();
    let last_seen_ms = fields.next()?.parse().ok()?;
    let calls = fields.next()?.parse().ok()?;
    let writes = fields.next()?.parse().ok()?;
    let recent = fields
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|item| item.split_once('@').and_then(|(h, t)| Some((h.to_string(), t.parse().ok()?))))
        .collect();
    Some(Line { session, last_seen_ms, calls, writes, recent })
}

fn format_line(line: &Line) -> String {
    let recent: Vec<String> = line.recent.iter().map(|(h, t)| format!("{h}@{t}")).collect();
    format!("{} {} {} {} {}", line.session, line.last_seen_ms, line.calls, line.writes, recent.join(","))
}

/// Counts this call against its session, unless a limit refuses it (a refused call is not
/// counted). `call_key` identifies the call for loop protection (tool and argument hash).
pub fn count_call(
    host: &dyn Host,
    limits: &Limits,
    session_key: &str,
    call_key: &str,
    mutating: bool,
    now: SystemTime,
) -> Result<LimitVerdict, HostError> {
    let now_ms = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let session = digest(&["session", session_key]);
    let call = digest(&["call", call_key]);
    let key = format!("warden.tool_acl.session.{}", slot_of(&session, limits.session_slots));
    let window_ms = limits.loop_window.as_millis() as u64;
    shared_slot::update(host, &key, |lines| {
        let mut entries: Vec<Line> = lines.iter().filter_map(|l| parse(l)).collect();
        let index = match entries.iter().position(|e| e.session == session) {
            Some(i) => i,
            None => {
                if entries.len() >= SESSIONS_PER_SLOT {
                    if let Some(oldest) = entries.iter().enumerate().min_by_key(|(_, e)| e.last_seen_ms).map(|(i, _)| i)
                    {
                        entries.remove(oldest);
                    }
                }
                entries.push(Line {
                    session: session.clone(),
                    last_seen_ms: now_ms,
                    calls: 0,
                    writes: 0,
                    recent: vec![],
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[index];
        entry.recent.retain(|(_, t)| now_ms.saturating_sub(*t) < window_ms);
        let verdict = if limits.max_calls > 0 && entry.calls >= limits.max_calls {
            LimitVerdict::TooManyCalls
        } else if mutating && limits.max_write_calls > 0 && entry.writes >= limits.max_write_calls {
            LimitVerdict::TooManyWrites
        } else if limits.loop_max_repeats > 0
            && entry.recent.iter().filter(|(h, _)| *h == call).count() >= limits.loop_max_repeats as usize
        {
            LimitVerdict::Loop
        } else {
            LimitVerdict::Within
        };
        if verdict != LimitVerdict::Within {
            return Change::Keep(verdict);
        }
        entry.calls += 1;
        entry.writes += u32::from(mutating);
        entry.last_seen_ms = now_ms;
        if limits.loop_max_repeats > 0 {
            entry.recent.push((call.clone(), now_ms));
            if entry.recent.len() > RECENT_CALLS {
                entry.recent.remove(0);
            }
        }
        Change::Write(entries.iter().map(format_line).collect(), LimitVerdict::Within)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;
    use std::time::Duration;

    fn limits(calls: u32, writes: u32, repeats: u32) -> Limits {
        Limits {
            max_calls: calls,
            max_write_calls: writes,
            loop_max_repeats: repeats,
            loop_window: Duration::from_secs(60),
            session_slots: 8,
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn call_and_write_limits() {
        let host = MemoryHost::default();
        let l = limits(3, 1, 0);
        assert_eq!(count_call(&host, &l, "s", "a", true, at(0)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "b", true, at(1)).unwrap(), LimitVerdict::TooManyWrites);
        assert_eq!(count_call(&host, &l, "s", "c", false, at(2)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "d", false, at(3)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "e", false, at(4)).unwrap(), LimitVerdict::TooManyCalls);
        assert_eq!(count_call(&host, &l, "other", "e", false, at(5)).unwrap(), LimitVerdict::Within);
    }

    #[test]
    fn loops_are_refused_within_the_window_only() {
        let host = MemoryHost::default();
        let l = limits(0, 0, 2);
        assert_eq!(count_call(&host, &l, "s", "same", false, at(0)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "same", false, at(10)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "same", false, at(20)).unwrap(), LimitVerdict::Loop);
        assert_eq!(count_call(&host, &l, "s", "different", false, at(30)).unwrap(), LimitVerdict::Within);
        assert_eq!(count_call(&host, &l, "s", "same", false, at(60_001)).unwrap(), LimitVerdict::Within);
    }

    #[test]
    fn key_space_stays_bounded() {
        let host = MemoryHost::default();
        let l = limits(5, 0, 3);
        for i in 0..500 {
            count_call(&host, &l, &format!("s{i}"), "x", false, at(i)).unwrap();
        }
        assert!(host.shared_keys().len() <= 8);
        for key in host.shared_keys() {
            assert!(shared_slot::read(&host, &key).unwrap().len() <= SESSIONS_PER_SLOT);
        }
    }
}
