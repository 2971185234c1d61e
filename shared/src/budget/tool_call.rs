//! MCP tool calls as budgets count them. tool-acl, which reads and decides every JSON-RPC
//! message of an MCP request, writes the `tools/call` requests it lets through (their id, the
//! server, the tool and its risk class) as filter state; token-budget, later in the chain,
//! counts them without reading the body again, and when a budget refuses, answers every
//! request of the body in JSON-RPC by these ids.

use crate::attributes;
use crate::host::{Host, HostError};
use crate::tool_acl::risk::Risk;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The JSON-RPC id as sent (raw JSON: a number or a string), to answer the call by.
    pub id: String,
    /// The tool-acl server's name.
    pub server: String,
    pub tool: String,
    pub risk: Risk,
}

/// One MCP request body's calls, as tool-acl forwards it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCalls {
    /// The body was a JSON-RPC batch (answered with an array).
    pub batch: bool,
    pub calls: Vec<ToolCall>,
    /// The ids of the body's other requests (a refused body answers them too).
    pub other_ids: Vec<String>,
}

impl ToolCalls {
    /// Records this request's calls (tool-acl, for every MCP request it forwards).
    pub fn write(&self, host: &dyn Host) -> Result<(), HostError> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        host.set_property(&[attributes::TOOL_CALLS], &json)
    }

    /// What tool-acl recorded; `Ok(None)` when it recorded nothing (it did not decide this
    /// request as MCP). A record that cannot be read is an error, never "no calls".
    pub fn read(host: &dyn Host) -> Result<Option<ToolCalls>, HostError> {
        let Some(bytes) = host.property(&[attributes::TOOL_CALLS])? else { return Ok(None) };
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HostError::Failed { call: "get_property", status: format!("{}: {e}", attributes::TOOL_CALLS) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn calls_round_trip_through_filter_state() {
        let host = MemoryHost::default();
        assert_eq!(ToolCalls::read(&host).unwrap(), None);
        let call = ToolCall { id: "7".into(), server: "orders".into(), tool: "issue_refund".into(), risk: Risk::Write };
        let calls = ToolCalls { batch: false, calls: vec![call], other_ids: vec![] };
        calls.write(&host).unwrap();
        assert_eq!(ToolCalls::read(&host).unwrap(), Some(calls));
        ToolCalls::default().write(&host).unwrap();
        assert_eq!(ToolCalls::read(&host).unwrap(), Some(ToolCalls::default()));
        host.set_property(&[attributes::TOOL_CALLS], b"{\"calls\": 3}").unwrap();
        assert!(ToolCalls::read(&host).is_err(), "an unreadable record is not 'no calls'");
    }
}
