//! `tools/list` answers rewritten so an agent never sees a tool it may not call, and every
//! listed tool pinned (see `pins`).

use crate::host::{Host, HostError};
use crate::principal::Caller;
use crate::sse;
use crate::strict_json::StrictObject;
use crate::tool_acl::compile::{CompiledToolAcl, Server};
use crate::tool_acl::config::Pinning;
use crate::tool_acl::evaluate::{evaluate, Call};
use crate::tool_acl::jsonrpc;
use crate::tool_acl::pins::{self, PinState};
use crate::tool_acl::request_id::IdKey;
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
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    /// Present in the server's own requests and notifications, which pass.
    #[serde(default, borrow)]
    method: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
}

/// The requests one POST forwarded, by raw id: what its answer may answer.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// `tools/list` requests: their answers are filtered.
    pub lists: &'a [String],
    pub others: &'a [String],
}

/// What a response on this exchange answers.
enum Answers {
    Listing,
    Other,
    /// No request of this exchange, or an id no SDK accepts: a client could take it as the
    /// answer to a request on another stream (pending ids are global to a session), so it is
    /// withheld.
    Nothing,
}

impl Exchange<'_> {
    fn answers(&self, id: &RawValue) -> Answers {
        let Some(key) = IdKey::of(id) else { return Answers::Nothing };
        let aliased = |ids: &[String]| {
            ids.iter().any(|raw| {
                RawValue::from_string(raw.clone()).ok().and_then(|r| IdKey::of(&r)).is_some_and(|k| key.aliases(&k))
            })
        };
        if aliased(self.lists) {
            Answers::Listing
        } else if aliased(self.others) {
            Answers::Other
        } else {
            Answers::Nothing
        }
    }
}

/// What filtering one answer found, for metrics and the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    pub kept: usize,
    pub hidden: usize,
    /// Tools whose definition no longer matches its pin.
    pub changed: Vec<String>,
    /// Responses withheld because they answered no request of this exchange.
    pub unsolicited: usize,
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
    /// A response that answers no request of this exchange: withheld (alone, in a stream).
    #[error("a response answers no request sent on this stream")]
    Unsolicited,
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Rewrites one JSON-RPC message from the server when it answers a `tools/list` request of
/// `exchange` (ids compared as the SDKs compare them, see `request_id`). Returns `None` when it
/// passes unchanged: the server's own requests and notifications, and answers to the other
/// requests. A response that answers none of them is [`ListError::Unsolicited`].
pub fn filter_message(
    cx: &ListContext,
    message: &str,
    exchange: &Exchange,
) -> Result<Option<(String, Filtered)>, ListError> {
    // A JSON body may open with a BOM, which the TypeScript SDK's `Response.json()` drops.
    let message = message.strip_prefix('\u{feff}').unwrap_or(message);
    let trimmed = message.trim_start();
    if trimmed.starts_with('[') {
        // A batch answer: filter each member that answers a listing, drop the unsolicited.
        let items: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|_| ListError::Malformed("batch"))?;
        let mut total = Filtered::default();
        let mut out = Vec::with_capacity(items.len());
        let mut touched = false;
        for item in items {
            match filter_message(cx, item.get(), exchange) {
                Ok(Some((text, filtered))) => {
                    touched = true;
                    total.kept += filtered.kept;
                    total.hidden += filtered.hidden;
                    total.changed.extend(filtered.changed);
                    out.push(text);
                }
                Ok(None) => out.push(item.get().to_string()),
                Err(ListError::Unsolicited) => touched = true,
                Err(e) => return Err(e),
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
    // The server's own request or notification: a string method and nothing of a response. A
    // method beside a result, or one that is not a string, is no request to an SDK that reads
    // the message as a response (Python's): withheld.
    if let Some(method) = head.method {
        let is_string = method.get().starts_with('"');
        if is_string && head.result.is_none() && head.error.is_none() {
            return Ok(None);
        }
        return Err(ListError::Malformed("a server message is both a request and a response"));
    }
    let Some(id) = head.id else {
        return if head.result.is_some() || head.error.is_some() { Err(ListError::Unsolicited) } else { Ok(None) };
    };
    match exchange.answers(id) {
        Answers::Nothing if head.result.is_some() || head.error.is_some() => Err(ListError::Unsolicited),
        Answers::Nothing | Answers::Other => Ok(None),
        Answers::Listing => {
            let Some(result) = head.result else { return Ok(None) };
            let (result, filtered) = filter_result(cx, result.get())?;
            Ok(Some((jsonrpc::result_response(id, &result), filtered)))
        }
    }
}

/// One server-sent event of a streamed answer, filtered the same way; an unsolicited
/// response's event is dropped (returned empty).
pub fn filter_event(cx: &ListContext, event: &[u8], exchange: &Exchange) -> Result<(Vec<u8>, Filtered), ListError> {
    let Some(data) = sse::data(event) else { return Ok((event.to_vec(), Filtered::default())) };
    match filter_message(cx, &data, exchange) {
        Ok(Some((text, filtered))) => Ok((sse::with_data(event, &text), filtered)),
        Ok(None) => Ok((event.to_vec(), Filtered::default())),
        Err(ListError::Unsolicited) => Ok((Vec::new(), Filtered { unsolicited: 1, ..Filtered::default() })),
        Err(e) => Err(e),
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
    let tools = format!("[{}]", kept.join(","));
    let out = object.rewritten(|key, value| {
        Some(Cow::Borrowed(match key {
            "tools" => tools.as_str(),
            // MCP 2026-07-28: this listing is this caller's, never one a shared cache may serve.
            "cacheScope" => "\"private\"",
            _ => value.get(),
        }))
    });
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
