//! Session ids bound to the agent that opened them, in Envoy shared data.
//!
//! Shared data has no delete, so the key space is fixed: a session hashes into one of `slots`
//! keys, and each key holds at most [`ENTRIES_PER_SLOT`] bindings. Idle bindings expire; when a
//! slot is full of live ones the least recently used is evicted (and counted), so memory is
//! bounded at `slots × ENTRIES_PER_SLOT` short lines whatever clients send. Only hashes are
//! stored, never session ids or agent names.
//!
//! Slots are created and changed as `shared_slot` describes.

use super::compile::SessionPolicy;
use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ENTRIES_PER_SLOT: usize = 8;
/// Refresh a binding's last-seen time at most this often, to keep writes off the hot path.
const TOUCH_EVERY_SECS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// First use: the session now belongs to this agent.
    Opened { evicted: bool },
    /// The session already belongs to this agent.
    Continued,
    /// The session belongs to another agent: refuse.
    OwnedByAnotherAgent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    session: String,
    agent: String,
    last_seen: u64,
}

fn slot_key(policy: &SessionPolicy, session_hash: &str) -> String {
    format!("warden.identity.session.{}", slot_of(session_hash, policy.slots as usize))
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

/// Binds `session` (within `tenant`) to `agent`, or reports who owns it.
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
    let agent_hash = digest(&[agent]);
    let key = slot_key(policy, &session_hash);
    let idle = policy.idle_timeout.as_secs();
    shared_slot::update(host, &key, |lines| {
        let mut entries = parse(&lines);
        entries.retain(|e| now.saturating_sub(e.last_seen) < idle);
        let mut evicted = false;
        let outcome = match entries.iter_mut().find(|e| e.session == session_hash) {
            Some(entry) if entry.agent != agent_hash => return Change::Keep(Binding::OwnedByAnotherAgent),
            Some(entry) if now.saturating_sub(entry.last_seen) < TOUCH_EVERY_SECS => {
                return Change::Keep(Binding::Continued)
            }
            Some(entry) => {
                entry.last_seen = now;
                Binding::Continued
            }
            None => {
                if entries.len() >= ENTRIES_PER_SLOT {
                    if let Some(oldest) = entries.iter().enumerate().min_by_key(|(_, e)| e.last_seen).map(|(i, _)| i) {
                        entries.remove(oldest);
                        evicted = true;
                    }
                }
                entries.push(Entry { session: session_hash.clone(), agent: agent_hash.clone(), last_seen: now });
                Binding::Opened { evicted }
            }
        };
        Change::Write(serialize(&entries), outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;
    use std::time::Duration;

    fn policy(slots: u32) -> SessionPolicy {
        SessionPolicy { header: "x-session".into(), idle_timeout: Duration::from_secs(600), slots, required: false }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn first_agent_owns_the_session() {
        let host = MemoryHost::default();
        let p = policy(16);
        assert_eq!(bind(&host, &p, "t", "s1", "agent-a", at(0)), Ok(Binding::Opened { evicted: false }));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-a", at(1)), Ok(Binding::Continued));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(2)), Ok(Binding::OwnedByAnotherAgent));
    }

    #[test]
    fn same_session_id_in_another_tenant_is_another_session() {
        let host = MemoryHost::default();
        let p = policy(16);
        bind(&host, &p, "t1", "s1", "agent-a", at(0)).unwrap();
        assert_eq!(bind(&host, &p, "t2", "s1", "agent-b", at(1)), Ok(Binding::Opened { evicted: false }));
    }

    #[test]
    fn idle_sessions_expire() {
        let host = MemoryHost::default();
        let p = policy(16);
        bind(&host, &p, "t", "s1", "agent-a", at(0)).unwrap();
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(601)), Ok(Binding::Opened { evicted: false }));
    }

    #[test]
    fn key_space_stays_bounded_under_many_sessions() {
        let host = MemoryHost::default();
        let p = policy(4);
        for i in 0..1000 {
            bind(&host, &p, "t", &format!("s{i}"), "agent-a", at(i)).unwrap();
        }
        assert!(host.shared_keys().len() <= 4);
        for key in host.shared_keys() {
            let lines = shared_slot::read(&host, &key).unwrap();
            assert!(lines.len() <= ENTRIES_PER_SLOT);
        }
    }

    #[test]
    fn stores_only_hashes() {
        let host = MemoryHost::default();
        bind(&host, &policy(1), "tenant-x", "secret-session", "agent-a", at(0)).unwrap();
        let (value, _) = host.shared_data("warden.identity.session.0").unwrap();
        let text = String::from_utf8(value.unwrap()).unwrap();
        assert!(!text.contains("secret-session") && !text.contains("agent-a"), "{text}");
    }

    #[test]
    fn lost_cas_race_is_retried() {
        let host = MemoryHost::default();
        let p = policy(1);
        bind(&host, &p, "t", "s1", "agent-a", at(0)).unwrap();
        host.fail_next_cas_writes(3);
        assert_eq!(bind(&host, &p, "t", "s2", "agent-b", at(1)), Ok(Binding::Opened { evicted: false }));
        assert_eq!(bind(&host, &p, "t", "s1", "agent-b", at(2)), Ok(Binding::OwnedByAnotherAgent));
    }
}
