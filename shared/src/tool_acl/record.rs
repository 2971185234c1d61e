//! What was decided, written for the filters after this one and the access log, and counted.

use super::mcp::Record;
use super::metrics;
use crate::attributes;
use crate::decision::Verdict;
use crate::host::{Host, HostError};
use log::info;

fn joined(records: &[Record], part: impl Fn(&Record) -> Option<String>) -> Option<String> {
    let parts: Vec<String> = records.iter().filter_map(part).collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Writes the attributes of one request's decisions and counts them. For a batch the
/// decision written is the first refusal, or else the last message's.
pub fn write(host: &dyn Host, server: &str, records: &[Record], request_id: &str) -> Result<(), HostError> {
    let Some(decisive) = records.iter().find(|r| r.decision.verdict == Verdict::Deny).or(records.last()) else {
        return Ok(());
    };
    host.set_property(&[attributes::DECISION_TOOL_ACL], decisive.decision.to_string().as_bytes())?;
    host.set_property(&[attributes::TOOL_SERVER], server.as_bytes())?;
    let parts: [(&str, Option<String>); 5] = [
        (attributes::MCP_METHOD, joined(records, |r| (!r.method.is_empty()).then(|| r.method.clone()))),
        (attributes::TOOL_NAME, joined(records, |r| r.tool.clone())),
        (attributes::TOOL_CLASS, joined(records, |r| r.risk.map(|k| k.as_str().to_string()))),
        (attributes::TOOL_ARGS_SHA256, joined(records, |r| r.args_sha256.clone())),
        (attributes::TOOL_PIN, records.iter().any(|r| r.pin_changed).then(|| "changed".to_string())),
    ];
    for (key, value) in parts {
        if let Some(value) = value {
            host.set_property(&[key], value.as_bytes())?;
        }
    }
    for record in records {
        let decision = &record.decision;
        match (decision.verdict, decision.shadowed) {
            (Verdict::Allow, _) => host.increment(metrics::ALLOWED, 1)?,
            (Verdict::Deny, shadowed) => {
                host.increment(if shadowed { metrics::SHADOW_DENIED } else { metrics::DENIED }, 1)?;
                host.increment(&metrics::denied_by(decision.reason), 1)?;
                info!(
                    "warden tool-acl: {} {} {} on {server} (request {request_id})",
                    decision,
                    record.method,
                    record.tool.as_deref().unwrap_or("")
                );
            }
        }
        if record.pin_changed {
            host.increment(metrics::PIN_CHANGED, 1)?;
        }
    }
    Ok(())
}
