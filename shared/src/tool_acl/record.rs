//! What was decided, written into the filter's audit record for the access log, and counted.

use super::mcp::Record as Judged;
use super::metrics;
use crate::audit::{AuditFormat, Record, Section};
use crate::decision::{Decision, Verdict};
use crate::host::{Host, HostError};
use log::info;
use serde_json::{Map, Value};

/// The calls one record lists per group; more are counted in `<group>_dropped`.
pub const MAX_ENTRIES: usize = 64;

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
    // A model's answer may stream any number of tool calls, and each chunk rewrites the record:
    // it lists the first ones and counts the rest, so neither grows without bound.
    if entries.len() > MAX_ENTRIES {
        let dropped_key = format!("{group}_dropped");
        let earlier = record.get(&dropped_key).and_then(Value::as_u64).unwrap_or(0);
        record.set(&dropped_key, earlier + (entries.len() - MAX_ENTRIES) as u64);
        entries.truncate(MAX_ENTRIES);
    }
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
        // Tool calls by risk class: MCP `tools/call`s and a model's function tool calls (a
        // listing or a declared tool carries no class).
        if let (Some(risk), Some(_)) = (one.risk, one.tool.as_deref()) {
            host.increment(&metrics::tool_calls(risk, decision), 1)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn a_stream_of_tool_calls_lists_the_first_and_counts_the_rest() {
        let host = MemoryHost::default();
        let mut record = Record::new();
        let call = Judged {
            method: "tool_call".into(),
            tool: Some("t".into()),
            risk: None,
            args_sha256: None,
            pin_changed: false,
            decision: Decision::allow("r", "allowed"),
        };
        for _ in 0..3 {
            let chunk = vec![call.clone(); 30];
            write(&host, AuditFormat::Json, &mut record, "answer_calls", "llm", &chunk, "-").unwrap();
        }
        let written = crate::audit::read(&host).unwrap().unwrap();
        assert_eq!(written["tool_acl"]["answer_calls"].as_array().unwrap().len(), MAX_ENTRIES);
        assert_eq!(written["tool_acl"]["answer_calls_dropped"], 90 - MAX_ENTRIES as u64);
    }
}
