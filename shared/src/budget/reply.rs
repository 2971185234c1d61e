//! What the caller is told when a budget refuses, in its API's error shape, with
//! `Retry-After` and OpenAI-style `x-ratelimit-*` headers.

use super::compile::CompiledTokenBudget;
use super::config::{Unit, Window};
use super::plan::Refusal;
use crate::error_body;
use crate::model_api::Api;

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

/// `1m30s` style, as OpenAI writes its `x-ratelimit-reset-*` headers.
fn reset_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// The 429 for a spent budget.
pub fn refused(policy: &CompiledTokenBudget, api: Option<Api>, refusal: &Refusal, now: u64, request_id: &str) -> Reply {
    let budget = &policy.budgets[refusal.budget];
    let (what, header_unit) = match budget.unit {
        Unit::Requests => ("requests", "requests"),
        Unit::CostUsd => ("cost", "cost"),
        _ => ("tokens", "tokens"),
    };
    let shown = |n: u64| match budget.unit {
        Unit::CostUsd => format!("${:.4}", n as f64 / 1e6),
        _ => n.to_string(),
    };
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
    let mut reply = error(api, 429, &message, kind, "budget_exhausted", &budget.id, request_id);
    let remaining = budget.limit.saturating_sub(refusal.used);
    reply.headers.push((format!("x-ratelimit-limit-{header_unit}"), budget.limit.to_string()));
    reply.headers.push((format!("x-ratelimit-remaining-{header_unit}"), remaining.to_string()));
    if let Some(reset_at) = refusal.reset_at {
        let wait = reset_at.saturating_sub(now).max(1);
        reply.headers.push((format!("x-ratelimit-reset-{header_unit}"), reset_text(wait)));
        reply.headers.push(("retry-after".into(), wait.to_string()));
    }
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
