//! `tools/list` answers rewritten so an agent never sees a tool it may not call, and every
//! listed tool pinned (see `pins`).

use crate::host::{Host, HostError};
use crate::sse;
use crate::strict_json::StrictObject;
use crate::tool_acl::caller::Caller;
use crate::tool_acl::compile::{CompiledToolAcl, Server};
use crate::tool_acl::config::Pinning;
use crate::tool_acl::evaluate::{evaluate, Call};
use crate::tool_acl::jsonrpc;
use crate::tool_acl::pins::{self, PinState};
use crate::tool_acl::risk::Risk;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

#[derive(Deserialize)]
struct ToolHead<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default)]
    annotations: Option<Annotations>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Annotations {
    #[serde(default)]
    read_only_hint: Option<bool>,
    #[serde(default)]
    destructive_hint: Option<bool>,
}

#[derive(Deserialize)]
struct ResponseHead<'a> {
    /// Absent in the server's notifications and requests, which pass.
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
}

/// What filtering one answer found, for metrics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub kept: usize,
    pub hidden: usize,
    /// Tools whose definition no longer matches its pin.
    pub changed: Vec<String>,
}

pub struct ListContext<'a> {
    pub host: &'a dyn Host,
    pub acl: &'a CompiledToolAcl,
    pub server: &'a Server,
    pub caller: &'a Caller,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("the tools/list answer is not valid JSON-RPC: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Rewrites one JSON-RPC message from the server when it answers one of `list_ids`.
/// Returns `None` when the message is not such an answer (it passes unchanged).
pub fn filter_message(
    cx: &ListContext,
    message: &str,
    list_ids: &[String],
) -> Result<Option<(String, Filtered)>, ListError> {
    let trimmed = message.trim_start();
    if trimmed.starts_with('[') {
        // A batch answer: filter each member that answers a listing.
        let items: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|_| ListError::Malformed("batch"))?;
        let mut total = Filtered::default();
        let mut out = Vec::with_capacity(items.len());
        let mut touched = false;
        for item in items {
            match filter_message(cx, item.get(), list_ids)? {
                Some((text, filtered)) => {
                    touched = true;
                    total.kept += filtered.kept;
                    total.hidden += filtered.hidden;
                    total.changed.extend(filtered.changed);
                    out.push(text);
                }
                None => out.push(item.get().to_string()),
            }
        }
        return Ok(touched.then(|| (format!("[{}]", out.join(",")), total)));
    }
    if trimmed.is_empty() {
        return Ok(None); // an event without data (SSE priming, keep-alive)
    }
    // A message that cannot be read strictly is withheld, not passed: a client that reads
    // duplicate members last-wins would otherwise see a listing nobody filtered.
    let head: ResponseHead = serde_json::from_str(message).map_err(|_| ListError::Malformed("unreadable message"))?;
    let Some(id) = head.id.filter(|id| list_ids.iter().any(|l| l == id.get())) else { return Ok(None) };
    let Some(result) = head.result else { return Ok(None) };
    let (result, filtered) = filter_result(cx, result.get())?;
    Ok(Some((jsonrpc::result_response(id, &result), filtered)))
}

/// One server-sent event of a streamed answer, filtered the same way.
pub fn filter_event(cx: &ListContext, event: &[u8], list_ids: &[String]) -> Result<(Vec<u8>, Filtered), ListError> {
    let Some(data) = sse::data(event) else { return Ok((event.to_vec(), Filtered::default())) };
    match filter_message(cx, &data, list_ids)? {
        Some((text, filtered)) => Ok((sse::with_data(event, &text), filtered)),
        None => Ok((event.to_vec(), Filtered::default())),
    }
}

fn filter_result(cx: &ListContext, result: &str) -> Result<(String, Filtered), ListError> {
    let object = StrictObject::parse(result.as_bytes()).map_err(|_| ListError::Malformed("result is not an object"))?;
    let tools_raw = object.raw("tools").ok_or(ListError::Malformed("result has no tools"))?;
    let tools: Vec<&RawValue> =
        serde_json::from_str(tools_raw.get()).map_err(|_| ListError::Malformed("tools is not an array"))?;
    let mut filtered = Filtered::default();
    let mut kept = Vec::with_capacity(tools.len());
    for tool in tools {
        let head: ToolHead =
            serde_json::from_str(tool.get()).map_err(|_| ListError::Malformed("a tool has no name"))?;
        if keep_tool(cx, tool.get(), &head, &mut filtered)? {
            kept.push(tool.get());
            filtered.kept += 1;
        } else {
            filtered.hidden += 1;
        }
    }
    let mut out = String::with_capacity(result.len());
    out.push('{');
    for (i, (key, value)) in object.members().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String(key.to_string()).to_string());
        out.push(':');
        if key == "tools" {
            out.push('[');
            out.push_str(&kept.join(","));
            out.push(']');
        } else {
            out.push_str(value.get());
        }
    }
    out.push('}');
    Ok((out, filtered))
}

fn keep_tool(cx: &ListContext, raw: &str, head: &ToolHead, filtered: &mut Filtered) -> Result<bool, ListError> {
    let server = cx.server;
    let annotated =
        head.annotations.as_ref().and_then(|a| Risk::from_annotations(a.read_only_hint, a.destructive_hint));
    let annotated = if server.trust_annotations { annotated } else { None };
    let (mut changed, mut highest) = (false, annotated);
    if server.pinning != Pinning::Off {
        let (state, risk) = pins::observe(cx.host, &server.name, &head.name, &definition_hash(raw)?, annotated)?;
        (changed, highest) = (state == PinState::Changed, risk);
        if changed {
            filtered.changed.push(head.name.to_string());
        }
    }
    if changed && server.pinning == Pinning::Refuse {
        return Ok(false);
    }
    let risk = server.configured_risk(&head.name).or(highest).unwrap_or(Risk::Write);
    let call = Call { server: &server.name, tool: &head.name, risk, arguments: None };
    Ok(evaluate(cx.acl, cx.caller, &call).visible())
}

/// Definition hashes already computed in this VM, by the SHA-256 of the tool's exact text:
/// servers send the same bytes on every listing, and hashing them is far cheaper than putting
/// them in canonical form. Cleared when full, so it stays bounded.
const DEFINITION_CACHE: usize = 4096;

thread_local! {
    static DEFINITIONS: std::cell::RefCell<std::collections::HashMap<[u8; 32], String>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// SHA-256 of the tool's definition without `_meta` (which servers may vary per answer), in
/// canonical form, so a server that reorders members does not look like a rug pull.
fn definition_hash(raw: &str) -> Result<String, ListError> {
    let exact: [u8; 32] = Sha256::digest(raw.as_bytes()).into();
    if let Some(known) = DEFINITIONS.with(|d| d.borrow().get(&exact).cloned()) {
        return Ok(known);
    }
    let mut canonical = Vec::with_capacity(raw.len());
    crate::canonical::write(raw, &["_meta"], &mut canonical)
        .map_err(|_| ListError::Malformed("a tool is not canonical JSON"))?;
    let hash = hex::encode(Sha256::digest(&canonical));
    DEFINITIONS.with(|d| {
        let mut d = d.borrow_mut();
        if d.len() >= DEFINITION_CACHE {
            d.clear();
        }
        d.insert(exact, hash.clone());
    });
    Ok(hash)
}
