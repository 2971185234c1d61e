//! One request's flow through tool-acl, callback by callback: find what the request
//! addresses, hold its body (and, with `requestHeaders: hold`, its headers) when the policy
//! needs it, decide, and filter the answers that must be checked. Each callback returns what
//! the proxy does next; the filter's glue only passes the callbacks in.

use super::answer::AnswerFilter;
use super::compile::CompiledToolAcl;
use super::config::Unmatched;
use super::mcp::{self, Action as McpAction, Context as McpContext};
use super::routing_headers::RoutingHeaders;
use super::{inflight, llm, metrics, record};
use crate::attributes;
use crate::audit::Record;
use crate::decision::{Decision, Verdict, FAILURE_MODE_RULE};
use crate::encoding;
use crate::host::{Action, Host, HostError};
use crate::principal::Caller;
use log::{error, warn};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

const JSON: (&str, &str) = ("content-type", "application/json");
const MCP_SESSION_HEADER: &str = "mcp-session-id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Not governed here (or already answered).
    Pass,
    Mcp(usize),
    Llm,
}

pub struct ToolAclFlow {
    host: Rc<dyn Host>,
    acl: Option<Rc<CompiledToolAcl>>,
    target: Target,
    request_id: String,
    path: String,
    caller: Caller,
    response: Option<AnswerFilter>,
    /// Bytes of the request and response bodies buffered so far: a message that ends in
    /// trailers is decided on them when its trailers arrive.
    request_size: usize,
    response_size: usize,
    /// The request's `Mcp-Session-Id`.
    mcp_session: Option<String>,
    routing: RoutingHeaders,
    /// Request headers are held until the body is decided (`requestHeaders: hold`).
    hold: bool,
    /// The request came with a `content-length`, which a rewritten body must keep right.
    has_length: bool,
    /// What this filter decided and learned, for the access log.
    record: Record,
}

impl ToolAclFlow {
    pub fn new(host: Rc<dyn Host>, acl: Option<Rc<CompiledToolAcl>>, hold: bool) -> Self {
        Self {
            host,
            acl,
            target: Target::Pass,
            request_id: String::new(),
            path: String::new(),
            caller: Caller::default(),
            response: None,
            request_size: 0,
            response_size: 0,
            mcp_session: None,
            routing: RoutingHeaders::default(),
            hold,
            has_length: false,
            record: Record::new(),
        }
    }

    /// Records a decision taken before any message was judged.
    fn decide(&mut self, decision: Decision) -> Result<(), HostError> {
        let format = self.acl.as_ref().map_or_else(Default::default, |acl| acl.audit_format);
        record::decision(&*self.host, format, &mut self.record, decision)
    }

    fn reply(&mut self, status: u32, body: &str) -> Action {
        self.target = Target::Pass;
        self.response = None;
        if let Err(e) = self.host.send_local_reply(status, &[JSON], body.as_bytes()) {
            error!("warden tool-acl: cannot send the reply: {e}");
        }
        Action::Pause
    }

    /// A body over the limit: 413 in the caller's protocol, before any of it is forwarded.
    fn too_large(&mut self, acl: &CompiledToolAcl) -> Action {
        let _ = self.host.increment(metrics::BODY_TOO_LARGE, 1);
        let body = match self.target {
            Target::Llm => crate::error_body::openai(
                &format!("the request body is over {} bytes", acl.max_body_bytes),
                "permission_error",
                "body_too_large",
                Some(mcp::PROTOCOL_RULE),
                &self.request_id,
            ),
            _ => match mcp::too_large(acl.max_body_bytes).action {
                McpAction::Reply { body, .. } => body,
                McpAction::Forward { .. } => String::new(),
            },
        };
        let _ = self.decide(Decision::deny(mcp::PROTOCOL_RULE, "body_too_large"));
        self.reply(413, &body)
    }

    /// A GET on a governed MCP server opens its server-to-client stream. Streamable HTTP ties
    /// it to a session (`Mcp-Session-Id`); without one it is the legacy HTTP+SSE transport's
    /// GET, which is refused with 405 (what Streamable HTTP clients expect of a server without
    /// such a stream). The stream itself is read: the server's requests and notifications pass,
    /// and a response passes only when it answers a request Warden forwarded in this session
    /// and the stream resumes a POST's (`Last-Event-ID`); a `tools/list` answer is filtered.
    fn server_stream(&mut self, server: usize, resumed: bool) -> Result<Action, HostError> {
        let Some(session) = self.mcp_session.clone() else {
            let message = "this MCP server is governed by Warden over Streamable HTTP: a server-to-client stream \
                           needs an Mcp-Session-Id, and the legacy HTTP+SSE transport is not accepted";
            let body = crate::error_body::jsonrpc(None, -32600, message, None);
            self.decide(Decision::deny(mcp::PROTOCOL_RULE, "legacy_sse_transport"))?;
            self.host.increment(metrics::PROTOCOL_ERRORS, 1)?;
            self.target = Target::Pass;
            let headers = [JSON, ("allow", "POST, DELETE")];
            if let Err(e) = self.host.send_local_reply(405, &headers, body.as_bytes()) {
                error!("warden tool-acl: cannot send the reply: {e}");
            }
            return Ok(Action::Pause);
        };
        self.host.set_request_header(encoding::ACCEPT_ENCODING, Some(encoding::IDENTITY))?;
        // A replayed listing is filtered for whoever opened the stream.
        self.caller = Caller::read(&*self.host)?;
        let (lists, others) = if resumed {
            let agent = self.caller.agent.clone().unwrap_or_default();
            inflight::recall(&*self.host, &agent, &session)?
        } else {
            (Vec::new(), Vec::new())
        };
        self.response = Some(AnswerFilter::listing(server, lists, others, &self.request_id));
        Ok(Action::Continue)
    }

    /// An encoded body cannot be checked as the server will read it: 415 in the caller's
    /// protocol, before any of it is forwarded.
    fn encoded(&mut self, encoding: &str) -> Action {
        let message = encoding::refusal_message(encoding);
        let body = match self.target {
            Target::Llm => crate::error_body::openai(
                &message,
                "invalid_request_error",
                "unsupported_encoding",
                Some(mcp::PROTOCOL_RULE),
                &self.request_id,
            ),
            _ => crate::error_body::jsonrpc(None, -32600, &message, None),
        };
        let _ = self.decide(Decision::deny(mcp::PROTOCOL_RULE, "unsupported_encoding"));
        let _ = self.host.increment(metrics::PROTOCOL_ERRORS, 1);
        self.reply(415, &body)
    }

    /// A POST without a body (headers that end the stream, or trailers with no data before).
    fn no_body(&mut self) -> Action {
        let body = match self.target {
            Target::Llm => crate::error_body::openai(
                "the request has no body",
                "permission_error",
                "invalid_request",
                Some(mcp::PROTOCOL_RULE),
                &self.request_id,
            ),
            _ => crate::error_body::jsonrpc(None, -32600, "the request has no body", None),
        };
        self.reply(400, &body)
    }

    /// A host call failed mid-decision: the failure mode decides, and it is counted.
    fn fault(&mut self, acl: &CompiledToolAcl, e: &HostError) -> Action {
        error!("warden tool-acl: host call failed: {e}");
        let decision = acl.failure_mode.apply(&*self.host, metrics::FAILURE_MODE, "host_error");
        let verdict = decision.verdict;
        let _ = self.decide(decision);
        if verdict == Verdict::Allow {
            return Action::Continue;
        }
        let body = crate::error_body::openai(
            "tool policy could not be checked",
            "permission_error",
            "host_error",
            Some(FAILURE_MODE_RULE),
            &self.request_id,
        );
        self.reply(503, &body)
    }

    fn on_headers(&mut self, acl: &CompiledToolAcl, end_of_stream: bool) -> Result<Action, HostError> {
        // One host call for every header this filter reads.
        let headers = self.host.request_headers()?;
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        self.request_id = header(attributes::REQUEST_ID_HEADER).unwrap_or("-").to_string();
        let path = header(":path").unwrap_or_default().to_string();
        self.path.clone_from(&path);
        let authority = header(":authority").unwrap_or_default().to_string();
        let method = header(":method").unwrap_or_default().to_string();
        self.target = match acl.server_index(&authority, &path) {
            Some(index) => Target::Mcp(index),
            None if acl.is_llm_path(&path) => Target::Llm,
            None if acl.unmatched == Unmatched::Allow => Target::Pass,
            None => {
                self.decide(Decision::deny("routes", "unmatched_route"))?;
                self.host.increment(&metrics::denied_by("unmatched_route"), 1)?;
                let body = crate::error_body::openai(
                    "no tool policy covers this route",
                    "permission_error",
                    "unmatched_route",
                    Some("routes"),
                    &self.request_id,
                );
                return Ok(self.reply(403, &body));
            }
        };
        if self.target == Target::Pass {
            return Ok(Action::Continue);
        }
        self.mcp_session = header(MCP_SESSION_HEADER).map(String::from);
        self.routing = RoutingHeaders::read(&headers);
        // Only POSTs carry JSON-RPC messages or model requests. A GET opens the server's event
        // stream, which is read (see `server_stream`); a DELETE ends a session.
        if method != "POST" {
            let mut action = Action::Continue;
            if let Target::Mcp(i) = self.target {
                self.record.set("server", acl.servers[i].name.as_str());
                self.record.write(&*self.host, acl.audit_format, crate::audit::Section::ToolAcl)?;
                if method == "GET" {
                    action = self.server_stream(i, header("last-event-id").is_some())?;
                }
            }
            self.target = Target::Pass;
            return Ok(action);
        }
        let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|n| n > acl.max_body_bytes) {
            return Ok(self.too_large(acl));
        }
        self.has_length = length.is_some();
        if let Some(encoding) = encoding::of_request(&headers) {
            return Ok(self.encoded(&encoding));
        }
        if end_of_stream {
            return Ok(self.no_body());
        }
        // Answers that must be checked are asked for as sent.
        self.host.set_request_header(encoding::ACCEPT_ENCODING, Some(encoding::IDENTITY))?;
        // The body is held (`StopIterationAndBuffer`) until it is decided; no byte of it goes
        // upstream before, and with `requestHeaders: hold` no header either, so a refused request
        // never opens an upstream stream.
        if self.hold {
            return Ok(Action::Pause);
        }
        let may_shrink = match self.target {
            Target::Llm => llm::may_rewrite_request(acl),
            // An approval (Warden's key, configured or not) is taken out before forwarding.
            Target::Mcp(_) => true,
            Target::Pass => false,
        };
        if may_shrink {
            // The headers are gone by the time the body may shrink: the length is dropped and
            // Envoy frames the body itself.
            self.host.set_request_header("content-length", None)?;
        }
        Ok(Action::Continue)
    }

    fn on_body(&mut self, acl: &Rc<CompiledToolAcl>, size: usize, end_of_stream: bool) -> Result<Action, HostError> {
        if size > acl.max_body_bytes {
            return Ok(self.too_large(acl));
        }
        if !end_of_stream {
            return Ok(Action::Pause);
        }
        if size == 0 {
            return Ok(self.no_body());
        }
        let body = self.host.request_body(size)?;
        self.caller = Caller::read(&*self.host)?;
        let host = Rc::clone(&self.host);
        match self.target {
            Target::Mcp(index) => {
                let server = &acl.servers[index];
                let cx = McpContext {
                    host: &*host,
                    acl,
                    server,
                    caller: &self.caller,
                    request_id: &self.request_id,
                    now: host.now(),
                    routing: &self.routing,
                };
                let decided = mcp::decide(&cx, &body)?;
                record::write(
                    &*host,
                    acl.audit_format,
                    &mut self.record,
                    "calls",
                    &server.name,
                    &decided.records,
                    &self.request_id,
                )?;
                match decided.action {
                    McpAction::Forward { rewritten } => {
                        if let Some(new_body) = rewritten {
                            self.host.set_request_body(size, new_body.as_bytes())?;
                            if self.hold && self.has_length {
                                self.host.set_request_header("content-length", Some(&new_body.len().to_string()))?;
                            }
                        }
                        if acl.record_calls {
                            decided.calls.write(&*host)?;
                        }
                        if let Some(session) = &self.mcp_session {
                            // Remembered for a resumed stream that replays these answers.
                            let now = host.now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                            let agent = self.caller.agent.clone().unwrap_or_default();
                            inflight::remember(&*host, &agent, session, &decided.list_ids, &decided.other_ids, now)?;
                        }
                        // Every answer is read: a response on this stream could otherwise
                        // answer a listing pending on another (SDKs keep pending ids per session).
                        if !decided.list_ids.is_empty() || !decided.other_ids.is_empty() {
                            self.response = Some(AnswerFilter::listing(
                                index,
                                decided.list_ids,
                                decided.other_ids,
                                &self.request_id,
                            ));
                        }
                        Ok(Action::Continue)
                    }
                    McpAction::Reply { status, body } => {
                        if status != 200 {
                            self.host.increment(metrics::PROTOCOL_ERRORS, 1)?;
                        }
                        Ok(self.reply(status, &body))
                    }
                }
            }
            Target::Llm => {
                let decided = llm::decide_request(acl, &self.caller, &self.path, &body, &self.request_id);
                record::write(
                    &*host,
                    acl.audit_format,
                    &mut self.record,
                    "calls",
                    &decided.server,
                    &decided.records,
                    &self.request_id,
                )?;
                if decided.removed > 0 {
                    self.host.increment(metrics::LLM_TOOLS_REMOVED, decided.removed as i64)?;
                }
                match decided.action {
                    llm::RequestAction::Forward { rewritten } => {
                        if let Some(new_body) = rewritten {
                            self.host.set_request_body(size, &new_body)?;
                            if self.hold && self.has_length {
                                self.host.set_request_header("content-length", Some(&new_body.len().to_string()))?;
                            }
                        }
                        // An API this filter cannot read (embeddings, say) has no tool calls.
                        let record = &self.record;
                        self.response =
                            decided.api.map(|api| AnswerFilter::model(api, &self.request_id, record.clone()));
                        Ok(Action::Continue)
                    }
                    llm::RequestAction::Reply { status, body } => {
                        if decided.records.is_empty() {
                            // Refused before any tool was judged (a body it cannot read): still one
                            // decision in the audit record.
                            // Recorded at best: a host fault here must not turn the refusal into
                            // the failure mode's pass.
                            let _ = self.decide(Decision::deny(mcp::PROTOCOL_RULE, "invalid_request"));
                            let _ = self.host.increment(metrics::PROTOCOL_ERRORS, 1);
                        }
                        Ok(self.reply(status, &body))
                    }
                }
            }
            Target::Pass => Ok(Action::Continue),
        }
    }
}

/// The callbacks, as the glue passes them in.
impl ToolAclFlow {
    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(acl) = self.acl.clone() else {
            warn!("warden tool-acl: no policy loaded; refusing the request");
            return self.reply(
                503,
                &crate::error_body::openai(
                    "no tool policy is loaded",
                    "permission_error",
                    "no_policy",
                    Some(FAILURE_MODE_RULE),
                    "-",
                ),
            );
        };
        match self.on_headers(&acl, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.fault(&acl, &e),
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(acl) = self.acl.clone() else { return Action::Pause };
        if self.target == Target::Pass {
            return Action::Continue;
        }
        self.request_size = body_size;
        match self.on_body(&acl, body_size, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.fault(&acl, &e),
        }
    }

    /// Trailers end the request: it is decided on the body held so far, exactly as if its last
    /// DATA frame had ended it (the SDK's default would let the held body go unread).
    pub fn on_request_trailers(&mut self) -> Action {
        let Some(acl) = self.acl.clone() else { return Action::Pause };
        if self.target == Target::Pass {
            return Action::Continue;
        }
        match self.on_body(&acl, self.request_size, true) {
            Ok(action) => action,
            Err(e) => self.fault(&acl, &e),
        }
    }

    pub fn on_response_headers(&mut self) -> Action {
        let host = Rc::clone(&self.host);
        if let (Some(acl), Some(response)) = (self.acl.clone(), self.response.as_mut()) {
            if let Err(e) = response.on_headers(&*host, &acl) {
                error!("warden tool-acl: cannot read the response headers: {e}");
            }
        }
        Action::Continue
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let host = Rc::clone(&self.host);
        let (Some(acl), Some(response)) = (self.acl.clone(), self.response.as_mut()) else { return Action::Continue };
        self.response_size = body_size;
        response.on_body(&*host, &acl, &self.caller, body_size, end_of_stream)
    }

    /// Trailers end the answer: a held answer is filtered now, a stream's last held event is
    /// dropped (it can no longer be added to the body).
    pub fn on_response_trailers(&mut self) -> Action {
        let host = Rc::clone(&self.host);
        let (Some(acl), Some(response)) = (self.acl.clone(), self.response.as_mut()) else { return Action::Continue };
        response.on_trailers(&*host, &acl, &self.caller, self.response_size)
    }
}
