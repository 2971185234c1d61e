//! Loop protection, in shared data: the recent calls of each session (or agent, without a
//! session), so the same call repeated too often within a window is refused. The call limits
//! (`maxCallsPerSession`, `maxWriteCallsPerSession`) are not counted here: they are budgets of
//! the budget engine (see `Limits::budgets`), one counter store for every call.
//!
//! Each session is one line. Lines live in slots chosen by the agent, so one agent's sessions
//! never crowd out another's: an agent holds at most [`SESSIONS_PER_AGENT`] live lines, and over
//! that only its own new sessions are refused. A live line is never evicted (its memory would
//! start again, and a churn of new sessions would reset everyone's); lines idle for [`IDLE_MS`]
//! are dropped. A line holds only hashes and times.

use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};
use crate::tool_acl::compile::Limits;
use std::time::{SystemTime, UNIX_EPOCH};

/// Live sessions with loop memory one agent may hold (the identity filter's own cap is usually
/// lower; this one holds when tool-acl runs alone).
pub const SESSIONS_PER_AGENT: usize = 64;
/// A session's memory is forgotten after this long unused.
pub const IDLE_MS: u64 = 3_600_000;
/// Recent calls remembered per session: loop protection's `maxRepeats` is at most this.
pub const RECENT_CALLS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Within,
    TooManyCalls,
    TooManyWrites,
    Loop,
    /// The agent already holds its cap of sessions with counters.
    TooManySessions,
}

impl LimitVerdict {
    pub fn reason(self) -> &'static str {
        match self {
            LimitVerdict::Within => "within_limits",
            LimitVerdict::TooManyCalls => "session_call_limit",
            LimitVerdict::TooManyWrites => "session_write_limit",
            LimitVerdict::Loop => "loop_detected",
            LimitVerdict::TooManySessions => "too_many_sessions",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    session: String,
    agent: String,
    last_seen_ms: u64,
    /// (call digest, time in ms), oldest first.
    recent: Vec<(String, u64)>,
}

fn parse(line: &str) -> Option<Line> {
    let mut fields = line.split(' ');
    let session = fields.next()?.to_string();
    let agent = fields.next()?.to_string();
    let last_seen_ms = fields.next()?.parse().ok()?;
    let recent = fields
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|item| item.split_once('@').and_then(|(h, t)| Some((h.to_string(), t.parse().ok()?))))
        .collect();
    // A line of another shape (an older layout) is not this one's.
    fields.next().is_none().then_some(Line { session, agent, last_seen_ms, recent })
}

fn format_line(line: &Line) -> String {
    let recent: Vec<String> = line.recent.iter().map(|(h, t)| format!("{h}@{t}")).collect();
    format!("{} {} {} {}", line.session, line.agent, line.last_seen_ms, recent.join(","))
}

/// Remembers this call in its session, unless it repeats a recent one too often (a refused
/// call is not remembered). `agent` owns the session; `session_key` names it (see
/// `Caller::limit_key`); `call_key` identifies the call (tool and argument hash).
pub fn check_loop(
    host: &dyn Host,
    limits: &Limits,
    agent: &str,
    session_key: &str,
    call_key: &str,
    now: SystemTime,
) -> Result<LimitVerdict, HostError> {
    let now_ms = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let session = digest(&["session", session_key]);
    let owner = digest(&["agent", agent]);
    let call = digest(&["call", call_key]);
    let key = format!("warden.tool_acl.loops.{}", slot_of(&owner, limits.session_slots));
    let window_ms = limits.loop_window.as_millis() as u64;
    shared_slot::update(host, &key, |lines| {
        let mut entries: Vec<Line> =
            lines.iter().filter_map(|l| parse(l)).filter(|e| now_ms.saturating_sub(e.last_seen_ms) < IDLE_MS).collect();
        let index = match entries.iter().position(|e| e.session == session) {
            Some(i) => i,
            None => {
                if entries.iter().filter(|e| e.agent == owner).count() >= SESSIONS_PER_AGENT {
                    return Change::Keep(LimitVerdict::TooManySessions);
                }
                entries.push(Line {
                    session: session.clone(),
                    agent: owner.clone(),
                    last_seen_ms: now_ms,
                    recent: vec![],
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[index];
        entry.recent.retain(|(_, t)| now_ms.saturating_sub(*t) < window_ms);
        if entry.recent.iter().filter(|(h, _)| *h == call).count() >= limits.loop_max_repeats as usize {
            return Change::Keep(LimitVerdict::Loop);
        }
        entry.last_seen_ms = now_ms;
        entry.recent.push((call.clone(), now_ms));
        if entry.recent.len() > RECENT_CALLS {
            entry.recent.remove(0);
        }
        Change::Write(entries.iter().map(format_line).collect(), LimitVerdict::Within)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;
    use std::time::Duration;

    fn limits(repeats: u32) -> Limits {
        Limits {
            max_calls: 0,
            max_write_calls: 0,
            loop_max_repeats: repeats,
            loop_window: Duration::from_secs(60),
            session_slots: 8,
            budgets: None,
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms)
    }

    #[test]
    fn loops_are_refused_within_the_window_only() {
        let host = MemoryHost::default();
        let l = limits(2);
        assert_eq!(check_loop(&host, &l, "agent", "s", "same", at(0)).unwrap(), LimitVerdict::Within);
        assert_eq!(check_loop(&host, &l, "agent", "s", "same", at(10)).unwrap(), LimitVerdict::Within);
        assert_eq!(check_loop(&host, &l, "agent", "s", "same", at(20)).unwrap(), LimitVerdict::Loop);
        assert_eq!(check_loop(&host, &l, "agent", "s", "different", at(30)).unwrap(), LimitVerdict::Within);
        assert_eq!(check_loop(&host, &l, "agent", "other", "same", at(40)).unwrap(), LimitVerdict::Within);
        assert_eq!(check_loop(&host, &l, "agent", "s", "same", at(60_001)).unwrap(), LimitVerdict::Within);
    }

    /// A churn of new sessions by one agent never resets another's memory, nor its own live
    /// ones; past its cap only its own new sessions are refused.
    #[test]
    fn a_churn_of_sessions_resets_no_memory() {
        let host = MemoryHost::default();
        let l = limits(1);
        assert_eq!(check_loop(&host, &l, "victim", "v", "x", at(0)).unwrap(), LimitVerdict::Within);
        let mut refused = 0;
        for i in 0..500 {
            match check_loop(&host, &l, "churner", &format!("s{i}"), "x", at(2 + i)).unwrap() {
                LimitVerdict::Within => {}
                LimitVerdict::TooManySessions => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 500 - SESSIONS_PER_AGENT as u64);
        assert_eq!(check_loop(&host, &l, "victim", "v", "x", at(600)).unwrap(), LimitVerdict::Loop);
        assert!(host.shared_keys().len() <= 8);
    }
}
