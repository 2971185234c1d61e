//! What was decided, written into the filter's audit record for the access log, and counted.

use super::mcp::Record as Judged;
use super::metrics;
use crate::audit::{AuditFormat, Record, Section};
use crate::decision::{Decision, Verdict};
use crate::host::{Host, HostError};
use log::info;
use serde_json::{Map, Value};

/// One judged message or tool call, as the record lists it (the arguments only as a hash).
fn entry(judged: &Judged) -> Value {
    let mut call = Map::new();
    let mut put = |key: &str, value: Value| {
        call.insert(key.to_string(), value);
    };
    if !judged.method.is_empty() {
        put("method", judged.method.as_str().into());
    }
    if let Some(tool) = &judged.tool {
        put("tool", tool.as_str().into());
    }
    if let Some(risk) = judged.risk {
        put("class", risk.as_str().into());
    }
    if let Some(hash) = &judged.args_sha256 {
        put("args_sha256", hash.as_str().into());
    }
    if judged.pin_changed {
        put("pin_changed", true.into());
    }
    put("verdict", judged.decision.verdict_str().into());
    put("rule", judged.decision.rule.as_str().into());
    put("reason", judged.decision.reason.into());
    Value::Object(call)
}

/// Adds one request's judged messages to `record` under `calls` (or a model answer's tool
/// calls under `answer_calls`, chunk after chunk), writes it, and counts them. A request's decision is the first
/// refusal, or else the last message's; an answer's calls keep their own.
pub fn write(
    host: &dyn Host,
    format: AuditFormat,
    record: &mut Record,
    group: &str,
    server: &str,
    judged: &[Judged],
    request_id: &str,
) -> Result<(), HostError> {
    let Some(decisive) = judged.iter().find(|r| r.decision.verdict == Verdict::Deny).or(judged.last()) else {
        return Ok(());
    };
    if group == "calls" {
        record.decision(&decisive.decision);
    }
    let mut entries = match record.get(group) {
        Some(Value::Array(earlier)) => earlier.clone(),
        _ => Vec::new(),
    };
    entries.extend(judged.iter().map(entry));
    record.set("server", server).set(group, entries);
    record.write(host, format, Section::ToolAcl)?;
    for one in judged {
        let decision = &one.decision;
        match (decision.verdict, decision.shadowed) {
            (Verdict::Allow, _) => host.increment(metrics::ALLOWED, 1)?,
            (Verdict::Deny, shadowed) => {
                host.increment(if shadowed { metrics::SHADOW_DENIED } else { metrics::DENIED }, 1)?;
                host.increment(&metrics::denied_by(decision.reason), 1)?;
                info!(
                    "warden tool-acl: {} {} {} on {server} (request {request_id})",
                    decision,
                    one.method,
                    one.tool.as_deref().unwrap_or("")
                );
            }
        }
        if one.pin_changed {
            host.increment(metrics::PIN_CHANGED, 1)?;
        }
    }
    Ok(())
}

/// Records a decision taken before any message was judged (a protocol refusal, a fault).
pub fn decision(
    host: &dyn Host,
    format: AuditFormat,
    record: &mut Record,
    decision: Decision,
) -> Result<(), HostError> {
    record.decision(&decision).write(host, format, Section::ToolAcl)
}
