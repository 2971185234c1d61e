//! What the caller is told when a budget refuses, in its API's error shape, with
//! `Retry-After` and OpenAI-style `x-ratelimit-*` headers.

use super::compile::CompiledTokenBudget;
use super::config::{Unit, Window};
use super::plan::Refusal;
use super::tool_call::ToolCalls;
use crate::error_body;
use crate::model_api::Api;
use crate::tool_acl::jsonrpc::POLICY_DENIED;

/// An amount of a budget's unit as people read it: dollars for a cost (counted in micro-USD),
/// else the count.
pub fn amount(unit: Unit, n: u64) -> String {
    match unit {
        Unit::CostUsd => format!("${:.4}", n as f64 / 1e6),
        _ => n.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// An error reply in `api`'s shape. `kind` is OpenAI's `type`, `code` a stable reason code.
pub fn error(
    api: Option<Api>,
    status: u32,
    message: &str,
    kind: &str,
    code: &str,
    rule: &str,
    request_id: &str,
) -> Reply {
    let body = error_body::model_api(api, status, message, kind, code, Some(rule), request_id);
    Reply { status, headers: vec![("content-type".into(), "application/json".into())], body }
}

/// An MCP request's answer when token-budget refuses its tool calls: a JSON-RPC error for every
/// request of the body (HTTP 200, as an MCP server answers a call it refuses), an array for a
/// batch. `data` says why: the reason code, the budget (rule) and the request id.
pub fn jsonrpc_refusal(
    calls: &ToolCalls,
    code: i64,
    message: &str,
    data: &serde_json::Value,
    headers: Vec<(String, String)>,
) -> Reply {
    let ids = calls.calls.iter().map(|c| c.id.as_str()).chain(calls.other_ids.iter().map(String::as_str));
    let errors: Vec<String> = ids.map(|id| error_body::jsonrpc(Some(id), code, message, Some(data))).collect();
    let body = if calls.batch || errors.len() != 1 { format!("[{}]", errors.join(",")) } else { errors.concat() };
    let mut all = vec![("content-type".to_string(), "application/json".to_string())];
    all.extend(headers);
    Reply { status: 200, headers: all, body }
}

/// `1m30s` style, as OpenAI writes its `x-ratelimit-reset-*` headers.
fn reset_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The 429 for a spent budget (for tool calls, each refused in JSON-RPC).
pub fn refused(
    policy: &CompiledTokenBudget,
    api: Option<Api>,
    calls: Option<&ToolCalls>,
    refusal: &Refusal,
    now: u64,
    request_id: &str,
) -> Reply {
    let budget = &policy.budgets[refusal.budget];
    let (what, header_unit) = match budget.unit {
        Unit::Requests => ("requests", "requests"),
        Unit::ToolCalls => ("tool calls", "tool-calls"),
        Unit::CostUsd => ("cost", "cost"),
        _ => ("tokens", "tokens"),
    };
    let shown = |n: u64| amount(budget.unit, n);
    let message = if refusal.reset_at.is_none() && budget.window == Window::Request {
        format!("the request needs more than budget {:?} allows per request ({})", budget.id, shown(budget.limit))
    } else {
        format!(
            "budget {:?} is spent: {} of {} {what} used",
            budget.id,
            shown(refusal.used.min(budget.limit)),
            shown(budget.limit)
        )
    };
    // A budget that frees up within the hour is a rate limit: clients wait `Retry-After` and
    // retry. One that does not (a day, a month, a session, a per-request maximum) is a quota:
    // OpenAI's `insufficient_quota` type, which the SDKs do not retry.
    let kind = match budget.window {
        Window::Minute | Window::Hour => what,
        _ => "insufficient_quota",
    };
    let remaining = budget.limit.saturating_sub(refusal.used);
    let mut headers = vec![
        (format!("x-ratelimit-limit-{header_unit}"), budget.limit.to_string()),
        (format!("x-ratelimit-remaining-{header_unit}"), remaining.to_string()),
    ];
    let wait = refusal.reset_at.map(|reset_at| reset_at.saturating_sub(now).max(1));
    if let Some(wait) = wait {
        headers.push((format!("x-ratelimit-reset-{header_unit}"), reset_text(wait)));
        headers.push(("retry-after".into(), wait.to_string()));
    }
    if let Some(calls) = calls {
        let data = serde_json::json!({
            "reason": "budget_exhausted",
            "rule": budget.id,
            "request_id": request_id,
            "limit": budget.limit,
            "remaining": remaining,
            "retry_after": wait,
        });
        return jsonrpc_refusal(calls, POLICY_DENIED, &message, &data, headers);
    }
    let mut reply = error(api, 429, &message, kind, "budget_exhausted", &budget.id, request_id);
    reply.headers.extend(headers);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_read_like_openai_headers() {
        assert_eq!(reset_text(7), "7s");
        assert_eq!(reset_text(90), "1m30s");
        assert_eq!(reset_text(3 * 3600 + 61), "3h1m1s");
    }

    #[test]
    fn anthropic_routes_get_anthropic_errors() {
        let reply = error(Some(Api::AnthropicMessages), 429, "spent", "tokens", "budget_exhausted", "b", "r1");
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let reply = error(Some(Api::ChatCompletions), 429, "spent", "tokens", "budget_exhausted", "b", "r1");
        let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "budget_exhausted");
        assert_eq!(body["error"]["request_id"], "r1");
    }
}
