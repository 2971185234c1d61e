//! Function tools on model routes: OpenAI Chat Completions and Responses, Anthropic Messages.
//!
//! Requests: each declared tool is checked as a call with unknown arguments (the test
//! `tools/list` filtering uses); a tool the agent may never call is removed, or the request
//! refused. Answers: each tool call the model returns is checked with its arguments, in JSON
//! (see `llm_answer`) or reassembled from the stream (see `llm_stream`); a disallowed call
//! never reaches the agent.

use crate::decision::{Decision, Mode, Verdict};
use crate::principal::Caller;
use crate::strict_json::StrictObject;
use crate::tool_acl::arguments::Arguments;
use crate::tool_acl::compile::CompiledToolAcl;
use crate::tool_acl::config::DeclaredTools;
use crate::tool_acl::evaluate::{evaluate, Call, Outcome};
use crate::tool_acl::mcp::Record;
use crate::tool_acl::risk::Risk;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub use crate::tool_acl::llm_answer::{check_response, Checked};
pub use crate::tool_acl::llm_stream::StreamGuard;

pub use crate::model_api::Api;
use crate::model_api::Route;

pub fn may_rewrite_request(acl: &CompiledToolAcl) -> bool {
    acl.llm.as_ref().is_some_and(|l| l.declared_tools == DeclaredTools::Remove)
}

pub enum RequestAction {
    /// Forward, with the body replaced when tools were removed.
    Forward {
        rewritten: Option<Vec<u8>>,
    },
    Reply {
        status: u32,
        body: String,
    },
}

pub struct RequestDecided {
    pub server: String,
    pub api: Option<Api>,
    pub records: Vec<Record>,
    pub removed: usize,
    pub action: RequestAction,
}

/// A declared tool's name: `function.name` (Chat), `name` (Responses, Anthropic), or a
/// built-in tool's `type` (`web_search`, …), so built-ins are governed by name too.
#[derive(Deserialize)]
struct DeclaredTool<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<NameOnly<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct NameOnly<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

impl DeclaredTool<'_> {
    fn name(&self) -> Option<&str> {
        if let Some(function) = &self.function {
            return Some(&function.name);
        }
        match (&self.name, &self.kind) {
            (Some(name), _) => Some(name),
            (None, Some(kind)) if kind != "function" => Some(kind),
            _ => None,
        }
    }
}

/// `tool_choice` naming one tool, in any of the three APIs' shapes.
#[derive(Deserialize)]
struct ToolChoice<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    function: Option<NameOnly<'a>>,
}

/// The class of a function tool: what the policy's `llm.tools` says, or `write`.
pub fn risk_of(acl: &CompiledToolAcl, tool: &str) -> Risk {
    acl.llm
        .as_ref()
        .and_then(|l| l.tools.iter().find(|(glob, _)| glob.matches(tool)).map(|(_, risk)| *risk))
        .unwrap_or(Risk::Write)
}

/// The server name rules use for function tools.
pub fn server_name(acl: &CompiledToolAcl) -> &str {
    acl.llm.as_ref().map_or("llm", |l| l.server.as_str())
}

/// A tool call (or declared tool) decided: `Allow` passes, anything else is blocked (model
/// routes have no approval path, so a call that needs one is not made).
pub(crate) fn decide_call(acl: &CompiledToolAcl, caller: &Caller, tool: &str, arguments: Option<&str>) -> Record {
    let risk = risk_of(acl, tool);
    let server = server_name(acl);
    let shadow = acl.mode == Mode::Shadow;
    let (outcome, args_sha256) = match arguments.map(|a| Arguments::read(Some(a))) {
        None => (evaluate(acl, caller, &Call { server, tool, risk, arguments: None }), None),
        Some(Ok(args)) => {
            let outcome = evaluate(acl, caller, &Call { server, tool, risk, arguments: Some(&args.value) });
            (outcome, Some(args.sha256))
        }
        Some(Err(_)) => {
            let outcome = Outcome::Deny {
                rule: crate::tool_acl::mcp::PROTOCOL_RULE.into(),
                reason: "call_arguments_invalid",
                hint: crate::tool_acl::evaluate::Hint::Nothing,
            };
            (outcome, None)
        }
    };
    let (verdict, reason) = match &outcome {
        Outcome::Allow { .. } => (Verdict::Allow, "allowed"),
        Outcome::NeedsApproval { .. } => (Verdict::Deny, "approval_required"),
        Outcome::Deny { reason, .. } => (Verdict::Deny, *reason),
    };
    // A declared tool is kept when the agent could call it at all (after a step-up, say).
    let verdict = if arguments.is_none() && outcome.visible() { Verdict::Allow } else { verdict };
    Record {
        method: if arguments.is_none() { "tools".into() } else { "tool_call".into() },
        tool: Some(tool.to_string()),
        risk: Some(risk),
        args_sha256,
        pin_changed: false,
        decision: Decision {
            verdict,
            rule: outcome.rule().to_string(),
            reason: if verdict == Verdict::Allow { "allowed" } else { reason },
            shadowed: shadow && verdict == Verdict::Deny,
        },
    }
}

/// Decides one complete tool call from a model answer and records it. `None`: it may reach the
/// agent (allowed, or shadow mode); `Some(message)`: it is blocked, and the message says why.
/// Empty arguments are read as `{}`.
pub(crate) fn settle(
    acl: &CompiledToolAcl,
    caller: &Caller,
    tool: &str,
    arguments: &str,
    request_id: &str,
    records: &mut Vec<Record>,
) -> Option<String> {
    let arguments = if arguments.trim().is_empty() { "{}" } else { arguments };
    let record = decide_call(acl, caller, tool, Some(arguments));
    let blocked = record.decision.verdict != Verdict::Allow && !record.decision.shadowed;
    let message = blocked.then(|| blocked_message(&record, request_id));
    records.push(record);
    message
}

/// The message that takes a blocked call's place.
pub(crate) fn blocked_message(record: &Record, request_id: &str) -> String {
    format!(
        "Warden blocked a call to tool {:?}: rule {:?}, reason {}. Request id {request_id}.",
        record.tool.as_deref().unwrap_or(""),
        record.decision.rule,
        record.decision.reason
    )
}

fn bad_request(message: &str, request_id: &str) -> RequestAction {
    let body = crate::error_body::openai(message, "invalid_request_error", "invalid_request", None, request_id);
    RequestAction::Reply { status: 400, body }
}

pub fn decide_request(
    acl: &CompiledToolAcl,
    caller: &Caller,
    path: &str,
    body: &[u8],
    request_id: &str,
) -> RequestDecided {
    let server = server_name(acl).to_string();
    let api = match acl.llm_route(path) {
        Route::Api(api) => Some(api),
        Route::Other | Route::Unreadable | Route::Free => None,
    };
    let mut decided =
        RequestDecided { server, api, records: vec![], removed: 0, action: RequestAction::Forward { rewritten: None } };
    let object = match StrictObject::parse(body) {
        Ok(object) => object,
        Err(_) => {
            decided.action = bad_request("the request body is not a JSON object with unique keys", request_id);
            return decided;
        }
    };
    let mut removed_names = Vec::new();
    let mut kept_lists: Vec<(&str, Vec<&RawValue>)> = Vec::new();
    for key in ["tools", "functions"] {
        let Some(raw) = object.raw(key) else { continue };
        let Ok(tools) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            decided.action = bad_request(&format!("{key} is not an array"), request_id);
            return decided;
        };
        let mut kept = Vec::with_capacity(tools.len());
        for tool in tools {
            let name = serde_json::from_str::<DeclaredTool>(tool.get()).ok().and_then(|d| d.name().map(String::from));
            let Some(name) = name else {
                decided.action = bad_request(&format!("a tool in {key} has no name"), request_id);
                return decided;
            };
            let record = decide_call(acl, caller, &name, None);
            if record.decision.verdict == Verdict::Allow {
                kept.push(tool);
            } else {
                removed_names.push(name);
                decided.records.push(record);
            }
        }
        kept_lists.push((key, kept));
    }
    decided.removed = removed_names.len();
    if removed_names.is_empty() {
        let declared = kept_lists.iter().map(|(_, k)| k.len()).sum::<usize>();
        if declared > 0 {
            decided.records.push(Record {
                method: "tools".into(),
                tool: None,
                risk: None,
                args_sha256: None,
                pin_changed: false,
                decision: Decision {
                    verdict: Verdict::Allow,
                    rule: "declared-tools".into(),
                    reason: "allowed",
                    shadowed: false,
                },
            });
        }
        return decided;
    }
    if acl.mode == Mode::Shadow {
        return decided;
    }
    let declared_tools = acl.llm.as_ref().map_or(DeclaredTools::Remove, |l| l.declared_tools);
    if declared_tools == DeclaredTools::Refuse {
        let first = &decided.records[0];
        let message = format!(
            "Warden refused the request: the tool {:?} may not be offered to the model (rule {:?}, reason {}).",
            removed_names[0], first.decision.rule, first.decision.reason
        );
        let code = first.decision.reason;
        decided.action = RequestAction::Reply {
            status: 403,
            body: crate::error_body::openai(&message, "permission_error", code, None, request_id),
        };
        return decided;
    }
    decided.action = RequestAction::Forward { rewritten: Some(rebuild(&object, &kept_lists, &removed_names)) };
    decided
}

/// The request body with removed tools gone; `tool_choice` naming a removed tool, and every
/// tool setting when no tool is left, go too (providers refuse them without tools).
fn rebuild(object: &StrictObject, kept: &[(&str, Vec<&RawValue>)], removed: &[String]) -> Vec<u8> {
    let none_left = kept.iter().all(|(_, k)| k.is_empty());
    // `tool_choice`, or the legacy `function_call` (`{"name": ...}`), naming a removed tool.
    let names_removed = |key: &str| {
        object.raw(key).is_some_and(|raw| {
            serde_json::from_str::<ToolChoice>(raw.get())
                .ok()
                .and_then(|c| c.function.map(|f| f.name.into_owned()).or(c.name.map(Cow::into_owned)))
                .is_some_and(|name| removed.contains(&name))
        })
    };
    let choice_removed = names_removed("tool_choice") || names_removed("function_call");
    object
        .rewritten(|key, value| {
            let replacement = kept.iter().find(|(k, _)| *k == key).map(|(_, tools)| tools);
            let drop = match key {
                "tools" | "functions" => replacement.is_some_and(|t| t.is_empty()),
                "tool_choice" | "function_call" => none_left || choice_removed,
                "parallel_tool_calls" => none_left,
                _ => false,
            };
            if drop {
                return None;
            }
            Some(match replacement {
                Some(tools) => Cow::Owned(format!("[{}]", tools.iter().map(|t| t.get()).collect::<Vec<_>>().join(","))),
                None => Cow::Borrowed(value.get()),
            })
        })
        .into_bytes()
}
