//! `wardenctl audit`: reports from Envoy's access log lines carrying Warden's record
//! (`docs/audit.md`): spend and tokens by tenant, agent, model and day; denials by filter and
//! reason; top tools; failovers; and with `--session`, that session's story line by line.

use crate::{Failure, Format};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

/// The spend table's model column for what MCP requests' tool calls cost.
const TOOL_CALLS: &str = "(tool calls)";

/// The filters' sections, in chain order.
const SECTIONS: [&str; 5] = ["identity", "tool_acl", "redaction", "token_budget", "router"];

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub records: u64,
    /// Lines that are not an access-log record with Warden's field (Envoy's own output, blank).
    pub skipped_lines: u64,
    pub spend: Vec<Spend>,
    pub denials: Vec<Denial>,
    pub tools: Vec<ToolCount>,
    pub failovers: Vec<Failover>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Vec<Step>>,
}

#[derive(Debug, Default, Serialize, Clone, PartialEq)]
pub struct Spend {
    pub day: String,
    pub tenant: String,
    pub agent: String,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Denial {
    pub filter: String,
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ToolCount {
    pub tool: String,
    pub calls: u64,
    pub denied: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Failover {
    pub reason: String,
    /// The providers tried, in order (`openai>backup`).
    pub path: String,
    pub count: u64,
}

/// One request of a session, as the story prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Step {
    pub time: String,
    pub request_id: String,
    /// The HTTP method (`GET` opens an MCP server's event stream).
    pub method: String,
    pub path: String,
    pub status: Value,
    pub decisions: Vec<String>,
    pub notes: Vec<String>,
}

pub fn run(logs: &[PathBuf], session: Option<&str>, output: Format) -> Result<String, Failure> {
    let mut lines = Vec::new();
    let stdin = logs.is_empty() || logs.iter().any(|p| p.as_os_str() == "-");
    if stdin {
        read_lines(std::io::stdin(), &mut lines).map_err(|e| Failure::usage(format!("standard input: {e}")))?;
    }
    for path in logs.iter().filter(|p| p.as_os_str() != "-") {
        let file = std::fs::File::open(path).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        read_lines(file, &mut lines).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    }
    let report = report(&lines, session);
    Ok(match output {
        Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default(),
        Format::Table => table(&report),
    })
}

fn read_lines(from: impl Read, into: &mut Vec<String>) -> std::io::Result<()> {
    for line in BufReader::new(from).lines() {
        into.push(line?);
    }
    Ok(())
}

/// The chain's record of an access-log line: JSON text (`auditFormat: json`, printed with
/// `PLAIN`), or a `Struct` printed with `TYPED` (`{"@type": …, "value": {…}}`).
pub fn record_of(line: &Value) -> Option<Value> {
    match line.get("warden")? {
        Value::String(text) => serde_json::from_str(text).ok(),
        Value::Object(typed) if typed.contains_key("value") => typed.get("value").cloned(),
        object @ Value::Object(_) => Some(object.clone()),
        _ => None,
    }
}

fn text(v: &Value, path: &[&str]) -> String {
    path.iter().try_fold(v, |v, key| v.get(key)).and_then(Value::as_str).unwrap_or("-").to_string()
}

fn number<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, key| v.get(key))
}

fn count(v: &Value, path: &[&str]) -> u64 {
    number(v, path).and_then(Value::as_u64).unwrap_or(0)
}

pub fn report(lines: &[String], session: Option<&str>) -> Report {
    let mut report = Report::default();
    let mut spend: BTreeMap<(String, String, String, String), Spend> = BTreeMap::new();
    let mut denials: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut tools: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut failovers: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut story = Vec::new();
    for raw in lines {
        let Some((line, record)) = serde_json::from_str::<Value>(raw).ok().and_then(|l| {
            let record = record_of(&l)?;
            Some((l, record))
        }) else {
            report.skipped_lines += 1;
            continue;
        };
        if session.is_some_and(|s| text(&record, &["principal", "session"]) != s) {
            continue;
        }
        report.records += 1;
        let tenant = text(&record, &["principal", "tenant"]);
        let agent = text(&record, &["principal", "agent"]);
        let budget = record.get("token_budget");
        if let Some(budget) = budget.filter(|b| b.get("tokens").is_some() || b.get("cost_usd").is_some()) {
            let day = text(&line, &["time"]).chars().take(10).collect::<String>();
            // A record without a model is an MCP request: what it spent, its tool calls did.
            let model = budget.get("model_served").map_or(TOOL_CALLS.to_string(), |_| text(budget, &["model_served"]));
            let entry = spend.entry((day.clone(), tenant.clone(), agent.clone(), model.clone())).or_insert(Spend {
                day,
                tenant: tenant.clone(),
                agent: agent.clone(),
                model,
                ..Spend::default()
            });
            entry.requests += 1;
            entry.input_tokens += count(budget, &["tokens", "input"]);
            entry.output_tokens += count(budget, &["tokens", "output"]);
            entry.cost_usd += number(budget, &["cost_usd"]).and_then(Value::as_f64).unwrap_or(0.0);
        }
        let mut decisions = Vec::new();
        for section in SECTIONS {
            // A section without a verdict decided nothing (tool-acl reading a GET's event stream).
            let Some(s) = record.get(section).filter(|s| s.get("verdict").is_some()) else { continue };
            let verdict = text(s, &["verdict"]);
            if verdict == "deny" || verdict == "shadow_deny" {
                *denials.entry((section.to_string(), text(s, &["reason"]))).or_default() += 1;
            }
            decisions.push(format!("{section}: {verdict} {} ({})", text(s, &["rule"]), text(s, &["reason"])));
        }
        let calls = record.get("tool_acl").and_then(|t| t.get("calls")).and_then(Value::as_array);
        // A call tool-acl allowed that a budget then refused was not made either.
        let budget_refused = budget.is_some_and(|b| text(b, &["verdict"]) == "deny");
        let mut notes = Vec::new();
        for call in calls.into_iter().flatten() {
            let verdict = text(call, &["verdict"]);
            let (method, reason) = (text(call, &["method"]), text(call, &["reason"]));
            if call.get("tool").is_none() {
                notes.push(format!("{method}: {verdict} ({reason})"));
                continue;
            }
            let tool = text(call, &["tool"]);
            let entry = tools.entry(tool.clone()).or_default();
            entry.0 += 1;
            if verdict == "deny" || budget_refused {
                entry.1 += 1;
            }
            notes.push(format!("{method} {tool} [{}]: {verdict} ({reason})", text(call, &["class"])));
        }
        if let Some(router) = record.get("router") {
            if count(router, &["failovers"]) > 0 || text(router, &["outcome"]) == "no_answer" {
                let attempts = router.get("attempts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                let path = attempts.iter().map(|a| text(a, &["provider"])).collect::<Vec<_>>().join(">");
                *failovers.entry((text(router, &["failover_reason"]), path.clone())).or_default() += 1;
                notes.push(format!("failover {path} ({})", text(router, &["failover_reason"])));
            }
            if router.get("provider").is_some() {
                notes.push(format!("served by {}/{}", text(router, &["provider"]), text(router, &["model"])));
            }
        }
        if let Some(budget) = budget {
            // Only a fallback moves a request (with the router, the model served may be another
            // name for the same alias without any budget involved).
            if budget.get("fallback_budget").is_some() {
                let (requested, served) = (text(budget, &["model_requested"]), text(budget, &["model_served"]));
                let spent = text(budget, &["fallback_budget"]);
                notes.push(format!("moved from {requested} to {served}: budget {spent} had no room"));
            }
            if let Some(cost) = number(budget, &["cost_usd"]).and_then(Value::as_f64) {
                if budget.get("model_served").is_none() {
                    notes.push(format!("${cost:.6} for its tool calls"));
                } else {
                    notes.push(format!(
                        "{} in + {} out tokens, ${cost:.6} ({})",
                        count(budget, &["tokens", "input"]),
                        count(budget, &["tokens", "output"]),
                        text(budget, &["model_served"])
                    ));
                }
            }
        }
        if let Some(findings) = record.get("redaction").and_then(|r| r.get("findings")).and_then(Value::as_object) {
            for (class, actions) in findings {
                for (action, n) in actions.as_object().into_iter().flatten() {
                    notes.push(format!("redaction: {class} {action} x{n}"));
                }
            }
        }
        if session.is_some() {
            story.push(Step {
                time: text(&line, &["time"]),
                request_id: text(&line, &["request_id"]),
                method: text(&line, &["method"]),
                path: text(&line, &["path"]),
                status: line.get("status").cloned().unwrap_or(Value::Null),
                decisions,
                notes,
            });
        }
    }
    report.spend = spend.into_values().collect();
    report.denials = denials.into_iter().map(|((filter, reason), count)| Denial { filter, reason, count }).collect();
    report.denials.sort_by(|a, b| b.count.cmp(&a.count).then(a.filter.cmp(&b.filter)));
    report.tools = tools.into_iter().map(|(tool, (calls, denied))| ToolCount { tool, calls, denied }).collect();
    report.tools.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.tool.cmp(&b.tool)));
    report.failovers = failovers.into_iter().map(|((reason, path), count)| Failover { reason, path, count }).collect();
    if session.is_some() {
        story.sort_by(|a, b| a.time.cmp(&b.time));
        report.session = Some(story);
    }
    report
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    if let Some(story) = &report.session {
        out.push_str("SESSION STORY\n");
        for step in story {
            let request = format!("{} {} {} {}", step.time, step.request_id, step.method, step.path);
            out.push_str(&format!("{request} -> {}\n", step.status));
            for line in step.decisions.iter().chain(&step.notes) {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "SPEND\n{:<10} {:<10} {:<16} {:<20} {:>8} {:>10} {:>10} {:>12}\n",
        "DAY", "TENANT", "AGENT", "MODEL", "REQUESTS", "IN_TOKENS", "OUT_TOKENS", "COST_USD"
    ));
    for s in &report.spend {
        out.push_str(&format!(
            "{:<10} {:<10} {:<16} {:<20} {:>8} {:>10} {:>10} {:>12.6}\n",
            s.day, s.tenant, s.agent, s.model, s.requests, s.input_tokens, s.output_tokens, s.cost_usd
        ));
    }
    out.push_str(&format!("\nDENIALS\n{:<13} {:<28} {:>6}\n", "FILTER", "REASON", "COUNT"));
    for d in &report.denials {
        out.push_str(&format!("{:<13} {:<28} {:>6}\n", d.filter, d.reason, d.count));
    }
    out.push_str(&format!("\nTOOLS\n{:<28} {:>6} {:>7}\n", "TOOL", "CALLS", "DENIED"));
    for t in &report.tools {
        out.push_str(&format!("{:<28} {:>6} {:>7}\n", t.tool, t.calls, t.denied));
    }
    out.push_str(&format!("\nFAILOVERS\n{:<14} {:<32} {:>6}\n", "REASON", "PROVIDERS TRIED", "COUNT"));
    for f in &report.failovers {
        out.push_str(&format!("{:<14} {:<32} {:>6}\n", f.reason, f.path, f.count));
    }
    out.push_str(&format!("\n{} records, {} other lines skipped", report.records, report.skipped_lines));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn line(time: &str, record: Value) -> String {
        serde_json::json!({"time": time, "request_id": "r", "path": "/v1/chat/completions", "status": 200,
            "warden": record.to_string()})
        .to_string()
    }

    fn chat(tenant: &str, session: &str, model: &str, input: u64, cost: f64) -> Value {
        serde_json::json!({"v": 1, "principal": {"agent": "planner", "tenant": tenant, "session": session},
            "identity": {"verdict": "allow", "rule": "openai", "reason": "authenticated"},
            "token_budget": {"verdict": "allow", "rule": "b", "reason": "within_budget", "model_served": model,
                "tokens": {"input": input, "output": 10}, "cost_usd": cost}})
    }

    #[test]
    fn spend_is_summed_by_day_tenant_agent_and_model() {
        let lines = vec![
            line("2026-11-30T01:00:00Z", chat("acme", "s1", "gpt-4o", 100, 0.5)),
            line("2026-11-30T02:00:00Z", chat("acme", "s2", "gpt-4o", 50, 0.25)),
            line("2026-12-01T02:00:00Z", chat("acme", "s1", "gpt-4o", 1, 0.125)),
            line("2026-11-30T02:00:00Z", chat("globex", "s3", "gpt-4o-mini", 7, 0.0)),
            "not json".into(),
        ];
        let r = report(&lines, None);
        assert_eq!((r.records, r.skipped_lines), (4, 1));
        assert_eq!(r.spend.len(), 3);
        let acme = &r.spend[0];
        assert_eq!(
            (acme.day.as_str(), acme.tenant.as_str(), acme.requests, acme.input_tokens),
            ("2026-11-30", "acme", 2, 150)
        );
        assert!((acme.cost_usd - 0.75).abs() < 1e-9);
    }

    #[test]
    fn denials_tools_failovers_and_a_sessions_story() {
        let denied = serde_json::json!({"v": 1, "principal": {"agent": "a", "session": "s1"},
            "tool_acl": {"verdict": "deny", "rule": "r", "reason": "denied_by_rule",
                "calls": [{"method": "tools/call", "tool": "delete", "class": "destructive", "verdict": "deny", "reason": "denied_by_rule"}]}});
        let failover = serde_json::json!({"v": 1, "principal": {"agent": "a", "session": "s1"},
            "router": {"verdict": "allow", "failovers": 1, "failover_reason": "server_error", "provider": "backup", "model": "m",
                "attempts": [{"provider": "openai"}, {"provider": "backup"}]}});
        let typed =
            serde_json::json!({"time": "2026-11-30T03:00:00Z", "warden": {"@type": "x", "value": denied}}).to_string();
        let lines = vec![
            line("2026-11-30T04:00:00Z", failover),
            typed,
            line("2026-11-30T05:00:00Z", chat("t", "other", "m", 1, 0.0)),
        ];
        let r = report(&lines, Some("s1"));
        assert_eq!(r.records, 2);
        assert_eq!(r.denials, vec![Denial { filter: "tool_acl".into(), reason: "denied_by_rule".into(), count: 1 }]);
        assert_eq!(r.tools, vec![ToolCount { tool: "delete".into(), calls: 1, denied: 1 }]);
        assert_eq!(
            r.failovers,
            vec![Failover { reason: "server_error".into(), path: "openai>backup".into(), count: 1 }]
        );
        let story = r.session.unwrap();
        assert_eq!(story.len(), 2);
        assert!(story[0].time < story[1].time, "in time order");
        assert!(story[1].notes.iter().any(|n| n == "failover openai>backup (server_error)"), "{story:?}");
    }

    #[test]
    fn a_fallback_names_the_budget_that_moved_it() {
        let mut moved = chat("acme", "s1", "gpt-4o-mini", 10, 0.001);
        moved["token_budget"]["model_requested"] = "gpt-4o".into();
        moved["token_budget"]["fallback_budget"] = "ticket-gpt-4o".into();
        // An alias the router serves under the target's own model name moved nothing.
        let mut aliased = chat("acme", "s1", "gpt-4o-2024-08-06", 10, 0.001);
        aliased["token_budget"]["model_requested"] = "gpt-4o".into();
        let lines = [line("2026-11-30T01:00:00Z", moved), line("2026-11-30T01:00:01Z", aliased)];
        let story = report(&lines, Some("s1")).session.unwrap();
        let moved_line = "moved from gpt-4o to gpt-4o-mini: budget ticket-gpt-4o had no room".to_string();
        assert!(story[0].notes.contains(&moved_line), "{story:?}");
        assert!(!story[1].notes.iter().any(|n| n.starts_with("moved")), "{story:?}");
    }

    #[test]
    fn an_mcp_sessions_story_names_methods_streams_and_what_tool_calls_cost() {
        let principal = serde_json::json!({"agent": "a", "tenant": "t", "session": "s1"});
        let listed = serde_json::json!({"v": 1, "principal": principal,
            "tool_acl": {"verdict": "allow", "rule": "methods", "reason": "method_allowed",
                "calls": [{"method": "tools/list", "verdict": "allow", "reason": "method_allowed"}]}});
        // tool-acl reads a GET's event stream: its section names the server and decides nothing.
        let stream = serde_json::json!({"v": 1, "principal": principal, "tool_acl": {"server": "orders"}});
        let refund = serde_json::json!({"v": 1, "principal": principal,
            "tool_acl": {"verdict": "allow", "rule": "r", "reason": "approved",
                "calls": [{"method": "tools/call", "tool": "issue_refund", "class": "write", "verdict": "allow", "reason": "approved"}]},
            "token_budget": {"verdict": "allow", "rule": "refunds", "reason": "within_budget", "cost_usd": 0.5}});
        let mut over_budget = refund.clone();
        over_budget["token_budget"] =
            serde_json::json!({"verdict": "deny", "rule": "refunds", "reason": "budget_exhausted"});
        let get = serde_json::json!({"time": "2026-11-30T01:00:01Z", "method": "GET", "warden": stream.to_string()});
        let lines = vec![
            line("2026-11-30T01:00:00Z", listed),
            get.to_string(),
            line("2026-11-30T01:00:02Z", refund),
            line("2026-11-30T01:00:03Z", over_budget),
        ];
        let r = report(&lines, Some("s1"));
        let story = r.session.unwrap();
        assert_eq!(story[0].notes, vec!["tools/list: allow (method_allowed)"]);
        assert_eq!((story[1].method.as_str(), story[1].decisions.len()), ("GET", 0), "{story:?}");
        assert!(story[2].notes.contains(&"$0.500000 for its tool calls".to_string()), "{story:?}");
        assert_eq!((r.spend[0].model.as_str(), r.spend[0].cost_usd), (TOOL_CALLS, 0.5));
        // The call a budget refused after tool-acl allowed it was not made: denied.
        assert_eq!(r.tools, vec![ToolCount { tool: "issue_refund".into(), calls: 2, denied: 1 }]);
    }
}
