//! Session ids bound to the agent that opened them, in Envoy shared data.
//!
//! Session ids are chosen by clients, so nothing they send may fill a bound that others need:
//! - Each agent holds at most `maxPerAgent` live sessions, counted in a store partitioned by
//!   agent (agents are verified principals, so that store grows with them, not with what
//!   clients send). Over the cap only that agent's new sessions are refused.
//! - Bindings (session → agent) are never evicted while live: a binding that could be pushed
//!   out could be taken over by whoever knows the session id, and the counters other filters
//!   keep per session would start again. Idle bindings expire after `idleTimeout`. A slot full
//!   of live bindings refuses a new session (counted) rather than evict one.
//!
//! Both stores use the fixed key spaces `shared_slot` describes, and hold only hashes, never
//! session ids or agent names.

use super::compile::SessionPolicy;
use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ENTRIES_PER_SLOT: usize = 16;
/// Refresh a binding's last-seen time at most this often, to keep writes off the hot path.
const TOUCH_EVERY_SECS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// First use: the session now belongs to this agent.
    Opened,
    /// The session already belongs to this agent.
    Continued,
    /// The session belongs to another agent: refuse.
    OwnedByAnotherAgent,
    /// The agent already holds its cap of live sessions: refuse this new one.
    TooManySessions,
    /// The bindings' slot is full of live sessions: refuse this new one.
    StoreFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    session: String,
    agent: String,
    last_seen: u64,
}

fn parse(lines: &[&str]) -> Vec<Entry> {
    lines
        .iter()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            Some(Entry {
                session: fields.next()?.to_string(),
                agent: fields.next()?.to_string(),
                last_seen: fields.next()?.parse().ok()?,
            })
        })
        .collect()
}

fn serialize(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| format!("{} {} {}", e.session, e.agent, e.last_seen)).collect()
}

/// Binds `session` (within `tenant`) to `agent`, or says why it cannot be.
pub fn bind(
    host: &dyn Host,
    policy: &SessionPolicy,
    tenant: &str,
    session: &str,
    agent: &str,
    now: SystemTime,
) -> Result<Binding, HostError> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let session_hash = digest(&[tenant, session]);
    let agent_hash = digest(&[tenant, agent]);
    let idle = policy.idle_timeout.as_secs();
    let key = format!("warden.identity.session.{}", slot_of(&session_hash, policy.slots as usize));
    // Who owns it, without changing anything yet.
    let owned = shared_slot::read(host, &key)?;
    let lines: Vec<&str> = owned.iter().map(String::as_str).collect();
    let existing =
        parse(&lines).into_iter().find(|e| e.session == session_hash && now.saturating_sub(e.last_seen) < idle);
    match existing {
        Some(entry) if entry.agent != agent_hash => return Ok(Binding::OwnedByAnotherAgent),
        Some(entry) if now.saturating_sub(entry.last_seen) < TOUCH_EVERY_SECS => return Ok(Binding::Continued),
        _ => {}
    }
    // The agent's own count of live sessions: a new one must fit under its cap.
    if !hold(host, policy, &agent_hash, &session_hash, now)? {
        return Ok(Binding::TooManySessions);
    }
    let outcome = shared_slot::update(host, &key, |lines| {
        let mut entries = parse(&lines);
        entries.retain(|e| now.saturating_sub(e.last_seen) < idle);
        let live = entries.len();
        let outcome = match entries.iter_mut().find(|e| e.session == session_hash) {
            Some(entry) if entry.agent != agent_hash => return Change::Keep(Binding::OwnedByAnotherAgent),
            Some(entry) => {
                entry.last_seen = now;
                Binding::Continued
            }
            None if live >= ENTRIES_PER_SLOT => return Change::Keep(Binding::StoreFull),
            None => {
                entries.push(Entry { session: session_hash.clone(), agent: agent_hash.clone(), last_seen: now });
                Binding::Opened
            }
        };
        Change::Write(serialize(&entries), outcome)
    })?;
    if matches!(outcome, Binding::OwnedByAnotherAgent | Binding::StoreFull) {
        // Not bound after all: it does not count against the agent.
        release(host, policy, &agent_hash, &session_hash)?;
    }
    Ok(outcome)
}

/// The agent's line in its partition: `<agent> <session>:<last seen>,...`.
fn agent_key(policy: &SessionPolicy, agent_hash: &str) -> String {
    format!("warden.identity.agent_sessions.{}", slot_of(agent_hash, policy.slots as usize))
}

fn agent_sessions(line: &str) -> Vec<(String, u64)> {
    line.split(' ')
        .nth(1)
        .unwrap_or("")
        .split(',')
        .filter_map(|item| item.split_once(':').and_then(|(s, t)| Some((s.to_string(), t.parse().ok()?))))
        .collect()
}

/// Records `session` as live for the agent; `false` when it is new and the agent is at its cap.
fn hold(
    host: &dyn Host,
    policy: &SessionPolicy,
    agent_hash: &str,
    session_hash: &str,
    now: u64,
) -> Result<bool, HostError> {
    let idle = policy.idle_timeout.as_secs();
    shared_slot::update(host, &agent_key(policy, agent_hash), |lines| {
        let mut out = Vec::with_capacity(lines.len() + 1);
        let mut sessions = Vec::new();
        for line in &lines {
            if line.split(' ').next() == Some(agent_hash) {
                sessions = agent_sessions(line);
            } else {
                out.push(line.to_string());
            }
        }
        sessions.retain(|(_, t)| now.saturating_sub(*t) < idle);
        let live = sessions.len();
        match sessions.iter_mut().find(|(s, _)| s == session_hash) {
            Some(entry) => entry.1 = now,
            None if live >= policy.max_per_agent => return Change::Keep(false),
            None => sessions.push((session_hash.to_string(), now)),
        }
        let items: Vec<String> = sessions.iter().map(|(s, t)| format!("{s}:{t}")).collect();
        out.push(format!("{agent_hash} {}", items.join(",")));
        Change::Write(out, true)
    })
}

/// Takes `session` off the agent's live list (it was not bound after all).
fn release(host: &dyn Host, policy: &SessionPolicy, agent_hash: &str, session_hash: &str) -> Result<(), HostError> {
    shared_slot::update(host, &agent_key(policy, agent_hash), |lines| {
        let out = lines
            .iter()
            .map(|line| {
                if line.split(' ').next() != Some(agent_hash) {
                    return line.to_string();
                }
                let kept: Vec<String> = agent_sessions(line)
                    .into_iter()
                    .filter(|(s, _)| s != session_hash)
                    .map(|(s, t)| format!("{s}:{t}"))
                    .collect();
                format!("{agent_hash} {}", kept.join(","))
            })
            .collect();
        Change::Write(out, ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;
    use std::time::Duration;

    fn policy(slots: u32, max_per_agent: usize) -> SessionPolicy {
        SessionPolicy {
            header: "x-session".into(),
            idle_timeout: Duration::from_secs(600),
            slots,
            max_per_agent,
            required: false,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn first_agent_owns_the_session() {
        let host = MemoryHost::default();
        let p = policy(16, 8);
        assert_eq!(bind(&host, &p, "t", "s1", "agent-a", at(0)), Ok(Binding::Opened));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-a", at(1)), Ok(Binding::Continued));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(2)), Ok(Binding::OwnedByAnotherAgent));
    }

    #[test]
    fn same_session_id_in_another_tenant_is_another_session() {
        let host = MemoryHost::default();
        let p = policy(16, 8);
        bind(&host, &p, "t1", "s1", "agent-a", at(0)).unwrap();
        assert_eq!(bind(&host, &p, "t2", "s1", "agent-b", at(1)), Ok(Binding::Opened));
    }

    #[test]
    fn idle_sessions_expire() {
        let host = MemoryHost::default();
        let p = policy(16, 8);
        bind(&host, &p, "t", "s1", "agent-a", at(0)).unwrap();
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(601)), Ok(Binding::Opened));
    }

    /// One agent opening sessions without end: over its cap only its own new sessions are
    /// refused; another agent's sessions, old and new, are untouched, and no live binding is
    /// ever pushed out (so nobody can take one over by learning its id).
    #[test]
    fn a_churn_of_sessions_is_capped_per_agent_and_evicts_nobody() {
        let host = MemoryHost::default();
        let p = policy(64, 32);
        assert_eq!(bind(&host, &p, "globex", "victim", "agent-v", at(0)), Ok(Binding::Opened));
        let mut refused = 0;
        for i in 0..2000 {
            match bind(&host, &p, "acme", &format!("s{i}"), "agent-a", at(1)).unwrap() {
                Binding::Opened => {}
                Binding::TooManySessions => refused += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 2000 - 32);
        assert_eq!(bind(&host, &p, "globex", "victim", "agent-v", at(20)), Ok(Binding::Continued));
        assert_eq!(bind(&host, &p, "globex", "victim", "agent-a", at(21)), Ok(Binding::OwnedByAnotherAgent));
        assert_eq!(bind(&host, &p, "globex", "new", "agent-v", at(22)), Ok(Binding::Opened));
        // Once the churner's sessions idle out, it may open new ones again.
        assert_eq!(bind(&host, &p, "acme", "later", "agent-a", at(700)), Ok(Binding::Opened));
        for key in host.shared_keys() {
            assert!(shared_slot::read(&host, &key).unwrap().len() <= ENTRIES_PER_SLOT.max(2));
        }
    }

    #[test]
    fn a_slot_full_of_live_sessions_refuses_rather_than_evicts() {
        let host = MemoryHost::default();
        let p = policy(1, 64);
        for i in 0..ENTRIES_PER_SLOT {
            assert_eq!(bind(&host, &p, "t", &format!("s{i}"), &format!("agent-{i}"), at(0)), Ok(Binding::Opened));
        }
        assert_eq!(bind(&host, &p, "t", "one-more", "agent-x", at(1)), Ok(Binding::StoreFull));
        for i in 0..ENTRIES_PER_SLOT {
            assert_eq!(bind(&host, &p, "t", &format!("s{i}"), "agent-x", at(2)), Ok(Binding::OwnedByAnotherAgent));
        }
        // agent-x's refused session does not count against it.
        assert_eq!(bind(&host, &p, "t", "s0", &format!("agent-{}", 0), at(30)), Ok(Binding::Continued));
    }

    #[test]
    fn stores_only_hashes() {
        let host = MemoryHost::default();
        bind(&host, &policy(1, 8), "tenant-x", "secret-session", "agent-a", at(0)).unwrap();
        for key in host.shared_keys() {
            let (value, _) = host.shared_data(&key).unwrap();
            let text = String::from_utf8(value.unwrap()).unwrap();
            assert!(!text.contains("secret-session") && !text.contains("agent-a"), "{text}");
        }
    }

    #[test]
    fn lost_cas_race_is_retried() {
        let host = MemoryHost::default();
        let p = policy(1, 8);
        bind(&host, &p, "t", "s1", "agent-a", at(0)).unwrap();
        host.fail_next_cas_writes(3);
        assert_eq!(bind(&host, &p, "t", "s2", "agent-b", at(1)), Ok(Binding::Opened));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(2)), Ok(Binding::OwnedByAnotherAgent));
    }
}
