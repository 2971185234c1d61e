//! `wardenctl explain`: what each filter of the chain decides for one request, by the same
//! functions the filters call, given a principal instead of credentials. State the filters keep
//! (counters, sessions, approvals, cooldowns, pins) is not consulted.

use crate::{compile, Failure, Format};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;
use warden_policy::budget::config::Unit;
use warden_policy::budget::plan::PlanError;
use warden_policy::budget::reply;
use warden_policy::budget::tool_call::ToolCall;
use warden_policy::budget::vm::BudgetVm;
use warden_policy::compiled_policy::CompiledPolicy;
use warden_policy::identity::authenticate::{match_route, RequestFacts};
use warden_policy::model_api::Route as ModelRoute;
use warden_policy::principal::Caller;
use warden_policy::redaction::config::{Action, McpScan};
use warden_policy::router::select::{select, Refusal};
use warden_policy::tool_acl::config::Unmatched;
use warden_policy::tool_acl::evaluate::{evaluate, reachable, Call, Outcome};
use warden_policy::tool_acl::llm;
use warden_policy::tool_acl::risk::Risk;

#[derive(Args)]
pub struct Request {
    /// The policy document (YAML or JSON).
    policy: PathBuf,
    /// The request path, e.g. /v1/chat/completions or /mcp/files.
    #[arg(long)]
    route: String,
    /// The request's host (`:authority`), for routes and MCP servers matched by host.
    #[arg(long, default_value = "")]
    host: String,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    session: Option<String>,
    /// A scope the principal holds (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The principal's authentication context class (`acr`), for step-up rules.
    #[arg(long)]
    acr: Option<String>,
    /// A tool: an MCP `tools/call` on an MCP route, a function tool on a model route.
    #[arg(long)]
    tool: Option<String>,
    /// The model (an alias when the policy routes).
    #[arg(long)]
    model: Option<String>,
    /// A data class recorded for the request (repeatable), as redaction would record it.
    #[arg(long = "data-class")]
    data_classes: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// One filter's answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Explained {
    pub filter: &'static str,
    /// `allow`, `deny`, `approval` (allowed once approved) or `skip` (the filter does not act).
    pub decision: &'static str,
    pub rule: String,
    pub reason: String,
    pub detail: String,
}

fn explained(filter: &'static str, decision: &'static str, rule: &str, reason: &str, detail: String) -> Explained {
    Explained { filter, decision, rule: rule.to_string(), reason: reason.to_string(), detail }
}

pub fn run(request: &Request) -> Result<String, Failure> {
    let policy = compile(&request.policy)?;
    let caller = Caller {
        agent: request.agent.clone(),
        user: request.user.clone(),
        tenant: request.tenant.clone(),
        session: request.session.clone(),
        scopes: request.scopes.clone(),
        acr: request.acr.clone(),
    };
    let answers = explain(&policy, request, &caller);
    Ok(match request.output {
        Format::Json => serde_json::to_string_pretty(&answers).unwrap_or_default(),
        Format::Table => table(&answers),
    })
}

fn table(answers: &[Explained]) -> String {
    let mut out = format!("{:<13} {:<9} {:<28} {:<24} {}\n", "FILTER", "DECISION", "RULE", "REASON", "DETAIL");
    for a in answers {
        out.push_str(&format!("{:<13} {:<9} {:<28} {:<24} {}\n", a.filter, a.decision, a.rule, a.reason, a.detail));
    }
    out.pop();
    out
}

/// One filter's part: `None` when the policy has no section for it.
type Step = fn(&CompiledPolicy, &Request, &Caller) -> Option<Explained>;

/// Each filter in chain order; after the first refusal the later filters never see the request.
pub fn explain(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Vec<Explained> {
    let steps: [Step; 5] = [identity, tool_acl, redaction, token_budget, router];
    let mut answers = Vec::new();
    for step in steps {
        let Some(answer) = step(policy, request, caller) else { continue };
        let refused = answer.decision == "deny";
        answers.push(answer);
        if refused {
            break;
        }
    }
    answers
}

fn identity(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Option<Explained> {
    let identity = policy.identity.as_ref()?;
    let facts = RequestFacts {
        headers: &[],
        authority: &request.host,
        path: &request.route,
        route_name: None,
        peer_uri_san: None,
    };
    let Some(route) = match_route(identity, &facts) else {
        return Some(explained(
            "identity",
            "deny",
            "default",
            "no_route",
            "no identity route matches this request".into(),
        ));
    };
    let accepts: Vec<String> = route.accept.iter().map(|k| format!("{k:?}")).collect();
    let mut detail = format!("accepts {}", accepts.join(" or "));
    if route.require_user {
        detail.push_str("; needs a user");
        if caller.user.is_none() {
            return Some(explained("identity", "deny", &route.name, "user_required", detail));
        }
    }
    if !caller.has_scopes(&route.scopes) {
        detail.push_str(&format!("; needs the scopes {}", route.scopes.join(" ")));
        return Some(explained("identity", "deny", &route.name, "insufficient_scope", detail));
    }
    detail.push_str("; the principal is taken as authenticated");
    Some(explained("identity", "allow", &route.name, "authenticated", detail))
}

fn tool_acl(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Option<Explained> {
    let acl = policy.tool_acl.as_ref()?;
    let (server, risk) = if let Some(index) = acl.server_index(&request.host, &request.route) {
        let server = &acl.servers[index];
        let Some(tool) = request.tool.as_deref() else {
            return Some(match reachable(acl, caller, &server.name) {
                Ok(()) => {
                    explained("tool-acl", "allow", "methods", "server_reachable", format!("server {}", server.name))
                }
                Err(rule) => {
                    explained("tool-acl", "deny", &rule, "server_not_allowed", format!("server {}", server.name))
                }
            });
        };
        let risk = server.configured_risk(tool);
        let note =
            if risk.is_none() && server.trust_annotations { " (the server's annotations may lower it)" } else { "" };
        (server.name.clone(), (risk.unwrap_or(Risk::Write), note))
    } else if acl.is_llm_path(&request.route) {
        let Some(tool) = request.tool.as_deref() else {
            return Some(explained(
                "tool-acl",
                "skip",
                "-",
                "no_tool",
                "a model route: give --tool for a function tool".into(),
            ));
        };
        (llm::server_name(acl).to_string(), (llm::risk_of(acl, tool), ""))
    } else {
        return Some(match acl.unmatched {
            Unmatched::Allow => {
                explained("tool-acl", "skip", "unmatched", "not_governed", "not an MCP or model path".into())
            }
            Unmatched::Deny => {
                explained("tool-acl", "deny", "unmatched", "unknown_server", "not an MCP or model path".into())
            }
        });
    };
    let tool = request.tool.as_deref().unwrap_or_default();
    let (risk, note) = risk;
    let call = Call { server: &server, tool, risk, arguments: None };
    let mut detail =
        format!("server {server}, tool {tool}, risk {}{note}; argument constraints not judged", risk.as_str());
    let limits = &acl.limits;
    if limits.any() {
        detail.push_str(&format!(
            "; per session: {} calls, {} writes, {} repeats",
            or_unlimited(limits.max_calls),
            or_unlimited(limits.max_write_calls),
            or_unlimited(limits.loop_max_repeats)
        ));
    }
    Some(match evaluate(acl, caller, &call) {
        Outcome::Allow { rule } => explained("tool-acl", "allow", &rule, "allowed", detail),
        Outcome::NeedsApproval { rule } => explained("tool-acl", "approval", &rule, "approval_required", detail),
        Outcome::Deny { rule, reason, .. } => explained("tool-acl", "deny", &rule, reason, detail),
    })
}

fn or_unlimited(n: u32) -> String {
    if n == 0 {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn redaction(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Option<Explained> {
    let redaction = policy.redaction.as_ref()?;
    let mcp = redaction.mcp_server(&request.route);
    if redaction.paths.classify(&request.route) == ModelRoute::Other && mcp.is_none() {
        return Some(explained(
            "redaction",
            "skip",
            "-",
            "not_scanned",
            "not a model path or an opted-in MCP server".into(),
        ));
    }
    let actions = redaction.actions_for(caller, &request.route);
    let mut by_action: Vec<(Action, Vec<&str>)> = Vec::new();
    for (class, action) in redaction.classes.iter().zip(&actions.per_detector) {
        match by_action.iter_mut().find(|(a, _)| a == action) {
            Some((_, classes)) => classes.push(&class.class),
            None => by_action.push((*action, vec![&class.class])),
        }
    }
    let detail = by_action
        .iter()
        .map(|(action, classes)| format!("{}: {}", action.as_str(), classes.join(" ")))
        .collect::<Vec<_>>()
        .join("; ");
    let rule = actions.rule.as_deref().unwrap_or("default");
    // An MCP server opted in with `record` (the default) is scanned, its findings recorded, and
    // nothing changed or refused.
    let (reason, detail) = match mcp.map(|m| m.scan) {
        Some(McpScan::Record) => (
            "scanned_record_only",
            format!("MCP server {}: findings recorded, nothing changed", mcp.map_or("", |m| m.name.as_str())),
        ),
        _ => ("scanned", detail),
    };
    Some(explained("redaction", "allow", rule, reason, detail))
}

fn token_budget(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Option<Explained> {
    let vm = policy.token_budget.as_ref()?;
    let budgets = &vm.policy;
    if let Some(explained) = tool_call_budgets(vm, request, caller) {
        return Some(explained);
    }
    if budgets.paths.classify(&request.route) == ModelRoute::Other {
        return Some(explained("token-budget", "skip", "-", "not_a_model_path", String::new()));
    }
    let Some(model) = request.model.as_deref() else {
        return Some(explained("token-budget", "skip", "-", "no_model", "give --model".into()));
    };
    let applying: Vec<_> = budgets.budgets.iter().filter(|b| b.applies(caller, model)).collect();
    let mut detail = Vec::new();
    for budget in &applying {
        if let Err(part) = budget.scope_values(caller, model, None) {
            let why = PlanError::NoScope { budget: budget.id.clone(), part };
            return Some(explained("token-budget", "deny", &budget.id, "no_scope", why.to_string()));
        }
        detail.push(format!(
            "{} ({} per {:?}, {:?}{})",
            budget.id,
            limit_text(budget.unit, budget.limit),
            budget.window,
            budget.store,
            budget.fallback_model.as_deref().map(|m| format!(", then {m}")).unwrap_or_default()
        ));
    }
    let unpriced = budgets.model(model).price.is_none() && !budgets.routes.iter().any(|(alias, _)| alias == model);
    if let Some(budget) = applying.iter().find(|b| b.unit == Unit::CostUsd && unpriced) {
        let why = PlanError::NotPriced { model: model.to_string(), budget: budget.id.clone() };
        return Some(explained("token-budget", "deny", &budget.id, "model_not_priced", why.to_string()));
    }
    if applying.is_empty() {
        return Some(explained("token-budget", "allow", "-", "no_budget_applies", String::new()));
    }
    let rule = applying.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(",");
    detail.push("counters not consulted".into());
    Some(explained("token-budget", "allow", &rule, "budgets_apply", detail.join("; ")))
}

/// A budget's limit: dollars for a cost, else the count and its unit.
fn limit_text(unit: Unit, limit: u64) -> String {
    match unit {
        Unit::CostUsd => reply::amount(unit, limit),
        other => format!("{limit} {other:?}"),
    }
}

/// An MCP `tools/call` on a VM whose budgets count tool calls: the budgets it would draw on.
fn tool_call_budgets(vm: &BudgetVm, request: &Request, caller: &Caller) -> Option<Explained> {
    let acl = vm.mcp.as_ref()?;
    let server = &acl.servers[acl.server_index(&request.host, &request.route)?];
    let Some(tool) = request.tool.as_deref() else {
        return Some(explained("token-budget", "skip", "-", "no_tool_call", "give --tool".into()));
    };
    let risk = server.configured_risk(tool).unwrap_or(Risk::Write);
    let call = ToolCall { id: "1".into(), server: server.name.clone(), tool: tool.to_string(), risk };
    let priced = vm.policy.tool_price(&call);
    let applying: Vec<_> = vm
        .policy
        .budgets
        .iter()
        .filter(|b| b.applies_to_call(caller, &call) && (b.unit == Unit::ToolCalls || priced > 0))
        .collect();
    let mut detail = Vec::new();
    for budget in &applying {
        if let Err(part) = budget.scope_values(caller, "", Some(&call)) {
            let why = PlanError::NoScope { budget: budget.id.clone(), part };
            return Some(explained("token-budget", "deny", &budget.id, "no_scope", why.to_string()));
        }
        let takes = match budget.unit {
            Unit::CostUsd => {
                format!("{} of {}", reply::amount(budget.unit, priced), reply::amount(budget.unit, budget.limit))
            }
            _ => format!("1 of {} calls", budget.limit),
        };
        detail.push(format!("{} ({takes} per {:?}, {:?})", budget.id, budget.window, budget.store));
    }
    if applying.is_empty() {
        return Some(explained("token-budget", "allow", "-", "no_budget_applies", format!("tool {tool}, {risk:?}")));
    }
    let rule = applying.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(",");
    detail.push("counters not consulted".into());
    Some(explained("token-budget", "allow", &rule, "budgets_apply", detail.join("; ")))
}

fn router(policy: &CompiledPolicy, request: &Request, caller: &Caller) -> Option<Explained> {
    let vm = policy.router.as_ref()?;
    let router = &vm.router;
    if router.paths.classify(&request.route) == ModelRoute::Other {
        return Some(explained("router", "skip", "-", "not_a_model_path", String::new()));
    }
    let Some(model) = request.model.as_deref() else {
        return Some(explained("router", "skip", "-", "no_model", "give --model".into()));
    };
    Some(match select(router, model, caller, &request.data_classes, 0) {
        Ok(targets) => {
            let order = targets
                .iter()
                .map(|t| {
                    let provider = &router.providers[t.provider];
                    let private = if provider.private { ", private" } else { "" };
                    format!("{}/{} (priority {}, weight {}{private})", provider.name, t.model, t.priority, t.weight)
                })
                .collect::<Vec<_>>()
                .join(" -> ");
            explained("router", "allow", "router", "routed", format!("targets in order (one draw): {order}"))
        }
        Err(Refusal::UnknownModel) => {
            explained("router", "deny", "router", "model_not_found", format!("no model alias {model:?}"))
        }
        Err(Refusal::NotPermitted { rule }) => {
            explained("router", "deny", &rule, "provider_not_permitted", "no permitted target".into())
        }
    })
}
