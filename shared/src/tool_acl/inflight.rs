//! The requests Warden forwarded in each MCP session, so that answers replayed on a resumed
//! stream (a GET with `Last-Event-ID`) can be tied to what was decided: a `tools/list` answer
//! is filtered there too, and a response to nothing Warden forwarded is withheld.
//!
//! One line per (agent, MCP session) in bounded shared-data slots chosen by the agent, holding
//! the last [`IDS_PER_SESSION`] request ids (hex of their JSON text) marked `L` (a listing) or
//! `O`. An agent keeps at most [`SESSIONS_PER_AGENT`] lines: a new session past that drops the
//! agent's own oldest line, never another agent's (session ids are the client's to choose).
//! Lines idle for [`IDLE_SECS`] are dropped. Losing a line only means a later resumption of
//! that session cannot be tied, and its answers are withheld: the store fails closed.

use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};

pub const IDS_PER_SESSION: usize = 32;
pub const SESSIONS_PER_AGENT: usize = 16;
const SLOTS: usize = 512;
const IDLE_SECS: u64 = 3600;
/// Longer ids are not remembered (no SDK sends them); their answers cannot be resumed.
const MAX_ID_BYTES: usize = 128;

fn key(agent_digest: &str) -> String {
    format!("warden.tool_acl.inflight.{}", slot_of(agent_digest, SLOTS))
}

/// One line: `<session digest> <agent digest> <last seen> <ids>`.
fn fields(line: &str) -> Option<(&str, &str, u64, &str)> {
    let mut f = line.split(' ');
    Some((f.next()?, f.next()?, f.next()?.parse().ok()?, f.next().unwrap_or("")))
}

/// Remembers the ids a POST in this session forwarded: `lists` (`tools/list`) and `others`.
pub fn remember(
    host: &dyn Host,
    agent: &str,
    session: &str,
    lists: &[String],
    others: &[String],
    now: u64,
) -> Result<(), HostError> {
    let marked: Vec<String> = lists
        .iter()
        .map(|id| ('L', id))
        .chain(others.iter().map(|id| ('O', id)))
        .filter(|(_, id)| id.len() <= MAX_ID_BYTES)
        .map(|(kind, id)| format!("{kind}{}", hex::encode(id)))
        .collect();
    if marked.is_empty() {
        return Ok(());
    }
    let owner = digest(&["inflight-agent", agent]);
    let line_digest = digest(&["inflight", agent, session]);
    shared_slot::update(host, &key(&owner), |lines| {
        let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
        let mut ids: Vec<String> = Vec::new();
        let mut own: Vec<(usize, u64)> = Vec::new();
        for line in &lines {
            let Some((d, a, t, rest)) = fields(line) else { continue };
            if d == line_digest {
                ids = rest.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            } else if now.saturating_sub(t) < IDLE_SECS {
                if a == owner {
                    own.push((out.len(), t));
                }
                out.push(line.to_string());
            }
        }
        if own.len() >= SESSIONS_PER_AGENT {
            // This agent's oldest session can no longer be resumed through Warden.
            if let Some(&(oldest, _)) = own.iter().min_by_key(|(_, t)| *t) {
                out.remove(oldest);
            }
        }
        ids.extend(marked.iter().cloned());
        let drop = ids.len().saturating_sub(IDS_PER_SESSION);
        ids.drain(..drop);
        out.push(format!("{line_digest} {owner} {now} {}", ids.join(",")));
        Change::Write(out, ())
    })
}

/// The ids forwarded in this session: (`tools/list` ids, other ids), as raw JSON.
pub fn recall(host: &dyn Host, agent: &str, session: &str) -> Result<(Vec<String>, Vec<String>), HostError> {
    let owner = digest(&["inflight-agent", agent]);
    let line_digest = digest(&["inflight", agent, session]);
    let (mut lists, mut others) = (Vec::new(), Vec::new());
    for line in shared_slot::read(host, &key(&owner))? {
        let Some((d, _, _, rest)) = fields(&line) else { continue };
        if d != line_digest {
            continue;
        }
        for marked in rest.split(',') {
            let (kind, hex_id) = marked.split_at(marked.len().min(1));
            let Some(id) = hex::decode(hex_id).ok().and_then(|b| String::from_utf8(b).ok()) else { continue };
            match kind {
                "L" => lists.push(id),
                "O" => others.push(id),
                _ => {}
            }
        }
    }
    Ok((lists, others))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn remembered_ids_are_recalled_per_agent_and_session() {
        let host = MemoryHost::default();
        remember(&host, "a", "s1", &["3".into()], &["4".into(), "\"x\"".into()], 100).unwrap();
        remember(&host, "a", "s1", &[], &["5".into()], 101).unwrap();
        let (lists, others) = recall(&host, "a", "s1").unwrap();
        assert_eq!(lists, ["3"]);
        assert_eq!(others, ["4", "\"x\"", "5"]);
        assert_eq!(recall(&host, "b", "s1").unwrap(), (vec![], vec![]), "another agent's session is not this one");
        for i in 0..100 {
            remember(&host, "a", "s1", &[], &[i.to_string()], 102).unwrap();
        }
        let (lists, others) = recall(&host, "a", "s1").unwrap();
        assert!(lists.is_empty() && others.len() == IDS_PER_SESSION, "bounded: {others:?}");
        // Another agent's churn of session ids never pushes out a's line.
        for i in 0..2000 {
            remember(&host, "churner", &format!("s{i}"), &[], &["1".into()], 200).unwrap();
        }
        assert_eq!(recall(&host, "a", "s1").unwrap().1.len(), IDS_PER_SESSION);
        assert!(host.shared_keys().len() <= 2);
        for key in host.shared_keys() {
            assert!(shared_slot::read(&host, &key).unwrap().len() <= SESSIONS_PER_AGENT + 1);
        }
    }
}
