//! Tool definitions pinned at first sight, per server.
//!
//! The first `tools/list` answer that shows a tool fixes the SHA-256 of its definition
//! (everything but `_meta`, in canonical JSON) and, for servers whose annotations are
//! trusted, its risk class. A later answer with another definition is a "rug pull": the
//! tool was approved as one thing and now says another. It is flagged, and refused when the
//! server's `pinning` is `refuse`; the pin itself never moves, so an operator re-pins by
//! restarting Envoy (shared data is per instance).

use crate::host::{Host, HostError};
use crate::shared_slot::{self, digest, slot_of, Change};
use crate::tool_acl::risk::Risk;

/// Slots per server, and pinned tools per slot: 64 × 64 tools per server at most; tools
/// beyond that are not pinned (and counted), never crash or grow memory.
const SLOTS_PER_SERVER: usize = 64;
const TOOLS_PER_SLOT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinState {
    /// Seen for the first time now, and pinned.
    New,
    Unchanged,
    /// The definition differs from the pinned one.
    Changed,
    /// The store for this server is full; the tool is not pinned.
    Unpinned,
}

/// What is known of a tool from its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub changed: bool,
    /// The class its (trusted) annotations gave, the highest ever seen.
    pub annotated_risk: Option<Risk>,
}

fn key(server: &str, tool_hash: &str) -> String {
    format!("warden.tool_acl.pin.{server}.{}", slot_of(tool_hash, SLOTS_PER_SERVER))
}

fn risk_code(risk: Option<Risk>) -> &'static str {
    risk.map_or("-", Risk::as_str)
}

/// Line format: `<tool hash> <definition hash> <risk or -> <changed 0|1>`.
fn parse(line: &str) -> Option<(&str, &str, Option<Risk>, bool)> {
    let mut f = line.split(' ');
    Some((f.next()?, f.next()?, Risk::parse(f.next()?), f.next()? == "1"))
}

/// Records a sighting of `tool` with `definition_hash` in a `tools/list` answer. Returns the
/// state and the highest risk its trusted annotations have ever claimed.
pub fn observe(
    host: &dyn Host,
    server: &str,
    tool: &str,
    definition_hash: &str,
    annotated_risk: Option<Risk>,
) -> Result<(PinState, Option<Risk>), HostError> {
    let tool_hash = digest(&[tool]);
    shared_slot::update(host, &key(server, &tool_hash), |lines| {
        let found = lines.iter().position(|l| parse(l).is_some_and(|p| p.0 == tool_hash));
        let Some((index, (_, pinned, risk, changed))) = found.and_then(|i| Some((i, parse(lines[i])?))) else {
            if lines.len() >= TOOLS_PER_SLOT {
                return Change::Keep((PinState::Unpinned, annotated_risk));
            }
            let mut lines: Vec<String> = lines.into_iter().map(String::from).collect();
            lines.push(format!("{tool_hash} {definition_hash} {} 0", risk_code(annotated_risk)));
            return Change::Write(lines, (PinState::New, annotated_risk));
        };
        let now_changed = changed || pinned != definition_hash;
        let state = if now_changed { PinState::Changed } else { PinState::Unchanged };
        let highest = risk.max(annotated_risk);
        if now_changed == changed && highest == risk {
            return Change::Keep((state, highest));
        }
        let line = format!("{tool_hash} {pinned} {} {}", risk_code(highest), u8::from(now_changed));
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[index] = line;
        Change::Write(out, (state, highest))
    })
}

/// The pin of `tool` on `server`, if it was ever listed.
pub fn lookup(host: &dyn Host, server: &str, tool: &str) -> Result<Option<Pin>, HostError> {
    let tool_hash = digest(&[tool]);
    let lines = shared_slot::read(host, &key(server, &tool_hash))?;
    Ok(lines
        .iter()
        .filter_map(|l| parse(l))
        .find(|p| p.0 == tool_hash)
        .map(|(_, _, risk, changed)| Pin { changed, annotated_risk: risk }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn first_sight_pins_and_a_change_is_flagged_for_good() {
        let host = MemoryHost::default();
        assert_eq!(observe(&host, "files", "read", "h1", Some(Risk::Read)).unwrap().0, PinState::New);
        assert_eq!(observe(&host, "files", "read", "h1", Some(Risk::Read)).unwrap().0, PinState::Unchanged);
        assert_eq!(
            lookup(&host, "files", "read").unwrap(),
            Some(Pin { changed: false, annotated_risk: Some(Risk::Read) })
        );
        assert_eq!(observe(&host, "files", "read", "h2", Some(Risk::Destructive)).unwrap().0, PinState::Changed);
        // Changing back does not clear the flag: the server has shown it will change tools.
        assert_eq!(
            observe(&host, "files", "read", "h1", Some(Risk::Read)).unwrap(),
            (PinState::Changed, Some(Risk::Destructive))
        );
        let pin = lookup(&host, "files", "read").unwrap().unwrap();
        assert!(pin.changed);
        assert_eq!(pin.annotated_risk, Some(Risk::Destructive), "the highest class seen is kept");
        assert_eq!(lookup(&host, "other", "read").unwrap(), None);
    }

    #[test]
    fn a_server_flooding_tools_stays_bounded() {
        let host = MemoryHost::default();
        let mut unpinned = 0;
        for i in 0..(SLOTS_PER_SERVER * TOOLS_PER_SLOT + 500) {
            if observe(&host, "evil", &format!("t{i}"), "h", None).unwrap().0 == PinState::Unpinned {
                unpinned += 1;
            }
        }
        assert!(unpinned >= 500);
        assert!(host.shared_keys().len() <= SLOTS_PER_SERVER);
    }
}
