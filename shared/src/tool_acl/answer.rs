//! Answers that must be checked on their way back: `tools/list` results and model tool calls.
//! JSON answers are held whole (bounded by `maxResponseBytes`); event streams are rewritten
//! event by event.

use super::compile::CompiledToolAcl;
use super::jsonrpc;
use super::listing::{self, Exchange, Filtered, ListContext, ListError};
use super::llm::{self, Api, StreamGuard};
use super::metrics;
use super::record;
use super::stream::EventRewriter;
use crate::audit::Record;
use crate::decision::FailureMode;
use crate::encoding;
use crate::host::{response_header, Action, Host, HostError};
use crate::principal::Caller;
use crate::sse;
use log::{error, warn};

enum Kind {
    Listing { server: usize, list_ids: Vec<String>, other_ids: Vec<String> },
    Model { api: Api, guard: StreamGuard },
}

enum Framing {
    /// Not yet known, or a content type this filter does not read (passed unchanged).
    Unread,
    Json,
    Events(EventRewriter),
    /// The answer could not be checked; what is left of it is dropped.
    Failed,
    /// An encoded answer: withheld whole, `error` sent in its place with the first chunk.
    Encoded {
        error: Option<Vec<u8>>,
    },
}

pub struct AnswerFilter {
    kind: Kind,
    framing: Framing,
    request_id: String,
    /// The request's audit record, which a model answer's tool calls are added to.
    record: Record,
}

impl AnswerFilter {
    pub fn listing(server: usize, list_ids: Vec<String>, other_ids: Vec<String>, request_id: &str) -> Self {
        Self {
            kind: Kind::Listing { server, list_ids, other_ids },
            framing: Framing::Unread,
            request_id: request_id.to_string(),
            record: Record::new(),
        }
    }

    pub fn model(api: Api, request_id: &str, record: Record) -> Self {
        Self {
            kind: Kind::Model { api, guard: StreamGuard::new(Some(api)) },
            framing: Framing::Unread,
            request_id: request_id.to_string(),
            record,
        }
    }

    pub fn on_headers(&mut self, host: &dyn Host, acl: &CompiledToolAcl) -> Result<(), HostError> {
        let encodings = host.response_header_values("content-encoding")?;
        if let Some(encoding) = encoding::non_identity(encodings.iter().map(String::as_str)) {
            // Warden asked for `identity`: an answer it cannot read is not passed on unread.
            warn!("warden tool-acl: an answer that must be checked is encoded ({encoding}); withheld");
            let _ = host.increment(metrics::ANSWERS_WITHHELD, 1);
            host.set_response_header("content-encoding", None)?;
            host.set_response_header("content-length", None)?;
            host.set_response_header("content-type", Some("application/json"))?;
            self.framing = Framing::Encoded { error: Some(self.error_body(false).into_bytes()) };
            return Ok(());
        }
        let content_type = response_header(host, "content-type")?.unwrap_or_default().to_ascii_lowercase();
        let listing = matches!(self.kind, Kind::Listing { .. });
        self.framing = if content_type.starts_with("text/event-stream") {
            Framing::Events(EventRewriter::new(acl.max_response_bytes))
        } else if content_type.starts_with("application/json") || listing {
            // A listing in any other content type is read as JSON all the same: a server must
            // not escape filtering by mislabelling its answer.
            Framing::Json
        } else {
            Framing::Unread
        };
        if !matches!(self.framing, Framing::Unread) {
            // The rewritten body may differ in length.
            host.set_response_header("content-length", None)?;
        }
        Ok(())
    }

    pub fn on_body(
        &mut self,
        host: &dyn Host,
        acl: &CompiledToolAcl,
        caller: &Caller,
        size: usize,
        end: bool,
    ) -> Action {
        match self.body(host, acl, caller, size, end) {
            Ok(action) => action,
            Err(e) => {
                error!("warden tool-acl: cannot filter the answer: {e}");
                let _ = host.increment(metrics::FAILURE_MODE, 1);
                if acl.failure_mode == FailureMode::Allow {
                    self.framing = Framing::Unread;
                } else {
                    let _ = host.set_response_body(size, self.error_body(false).as_bytes());
                    self.framing = Framing::Failed;
                }
                Action::Continue
            }
        }
    }

    /// The answer ended in trailers. One held whole is filtered now, as at its last DATA frame;
    /// a stream's unterminated last event is dropped, since bytes can no longer be added to a
    /// body that already went on: it is withheld, never passed unread.
    pub fn on_trailers(&mut self, host: &dyn Host, acl: &CompiledToolAcl, caller: &Caller, size: usize) -> Action {
        match &mut self.framing {
            Framing::Json => self.on_body(host, acl, caller, size, true),
            Framing::Events(rewriter) => {
                let dropped = rewriter.abandon();
                if dropped > 0 {
                    warn!("warden tool-acl: an answer ended in trailers inside an event; its last {dropped} bytes were withheld");
                    let _ = host.increment(metrics::ANSWERS_WITHHELD, 1);
                }
                Action::Continue
            }
            Framing::Unread | Framing::Failed | Framing::Encoded { .. } => Action::Continue,
        }
    }

    /// What replaces an answer that could not be checked.
    fn error_body(&self, streamed: bool) -> String {
        let message = "Warden could not check this answer, so it was withheld";
        let text = match &self.kind {
            Kind::Listing { list_ids, other_ids, .. } => {
                let id = list_ids.first().or(other_ids.first()).map(String::as_str);
                crate::error_body::jsonrpc(id, jsonrpc::POLICY_DENIED, message, None)
            }
            Kind::Model { .. } => {
                crate::error_body::openai(message, "permission_error", "answer_unchecked", None, &self.request_id)
            }
        };
        if streamed {
            String::from_utf8_lossy(&sse::event(None, &text)).into_owned()
        } else {
            text
        }
    }

    fn body(
        &mut self,
        host: &dyn Host,
        acl: &CompiledToolAcl,
        caller: &Caller,
        size: usize,
        end: bool,
    ) -> Result<Action, HostError> {
        match &mut self.framing {
            Framing::Unread => Ok(Action::Continue),
            Framing::Encoded { error } => {
                host.set_response_body(size, &error.take().unwrap_or_default())?;
                Ok(Action::Continue)
            }
            Framing::Failed => {
                host.set_response_body(size, b"")?;
                Ok(Action::Continue)
            }
            Framing::Json if size > acl.max_response_bytes => {
                warn!("warden tool-acl: answer over maxResponseBytes ({size} bytes) withheld");
                host.set_response_body(size, self.error_body(false).as_bytes())?;
                self.framing = Framing::Failed;
                Ok(Action::Continue)
            }
            Framing::Json if !end => Ok(Action::Pause),
            Framing::Json => {
                let body = host.response_body(size)?;
                let text = String::from_utf8_lossy(&body);
                if let Some(new_body) = self.filter_json(host, acl, caller, &text)? {
                    host.set_response_body(size, new_body.as_bytes())?;
                }
                Ok(Action::Continue)
            }
            Framing::Events(_) => {
                let chunk = host.response_body(size)?;
                let out = self.filter_events(host, acl, caller, &chunk, end)?;
                if out != chunk {
                    host.set_response_body(size, &out)?;
                }
                Ok(Action::Continue)
            }
        }
    }

    fn filter_json(
        &mut self,
        host: &dyn Host,
        acl: &CompiledToolAcl,
        caller: &Caller,
        text: &str,
    ) -> Result<Option<String>, HostError> {
        match &mut self.kind {
            Kind::Listing { server, list_ids, other_ids } => {
                let cx = ListContext { host, acl, server: &acl.servers[*server], caller };
                let exchange = Exchange { lists: list_ids, others: other_ids };
                match listing::filter_message(&cx, text, &exchange) {
                    Ok(Some((new_text, filtered))) => {
                        count(host, &filtered)?;
                        Ok(Some(new_text))
                    }
                    Ok(None) => Ok(None),
                    Err(ListError::Host(e)) => Err(e),
                    Err(e @ (ListError::Malformed(_) | ListError::Unsolicited)) => {
                        warn!("warden tool-acl: {e}");
                        count(
                            host,
                            &Filtered { unsolicited: usize::from(e == ListError::Unsolicited), ..Filtered::default() },
                        )?;
                        Ok(Some(self.error_body(false)))
                    }
                }
            }
            Kind::Model { api, .. } => {
                let checked = llm::check_response(acl, caller, Some(*api), text, &self.request_id);
                record_model(host, acl, &mut self.record, &checked.records)?;
                Ok(checked.replacement)
            }
        }
    }

    fn filter_events(
        &mut self,
        host: &dyn Host,
        acl: &CompiledToolAcl,
        caller: &Caller,
        chunk: &[u8],
        end: bool,
    ) -> Result<Vec<u8>, HostError> {
        let request_id = self.request_id.clone();
        let Framing::Events(rewriter) = &mut self.framing else { return Ok(chunk.to_vec()) };
        let mut fault = None;
        let mut malformed = false;
        let mut records = Vec::new();
        let result = match &mut self.kind {
            Kind::Listing { server, list_ids, other_ids } => {
                let cx = ListContext { host, acl, server: &acl.servers[*server], caller };
                let exchange = Exchange { lists: list_ids, others: other_ids };
                rewriter.chunk(chunk, end, |event| {
                    // The legacy HTTP+SSE transport announces its POST endpoint this way: that
                    // transport is not governed here, so the stream ends.
                    if sse::event_name(event).as_deref() == Some("endpoint") {
                        malformed = true;
                        return Vec::new();
                    }
                    match listing::filter_event(&cx, event, &exchange) {
                        Ok((out, filtered)) => {
                            if let Err(e) = count(host, &filtered) {
                                fault = Some(e);
                            }
                            out
                        }
                        Err(ListError::Host(e)) => {
                            fault = Some(e);
                            Vec::new()
                        }
                        Err(ListError::Malformed(_) | ListError::Unsolicited) => {
                            malformed = true;
                            Vec::new()
                        }
                    }
                })
            }
            Kind::Model { guard, .. } => rewriter.chunk(chunk, end, |event| {
                let (out, new_records) = guard.event(acl, caller, event, &request_id);
                records.extend(new_records);
                out
            }),
        };
        if let Some(e) = fault {
            return Err(e);
        }
        record_model(host, acl, &mut self.record, &records)?;
        match result {
            Ok(out) if !malformed => Ok(out),
            _ => {
                self.framing = Framing::Failed;
                Ok(self.error_body(true).into_bytes())
            }
        }
    }
}

fn count(host: &dyn Host, filtered: &Filtered) -> Result<(), HostError> {
    if filtered.unsolicited > 0 {
        warn!("warden tool-acl: withheld {} response(s) that answer no request of this stream", filtered.unsolicited);
        host.increment(metrics::ANSWERS_WITHHELD, filtered.unsolicited as i64)?;
    }
    if filtered.hidden > 0 {
        host.increment(metrics::TOOLS_HIDDEN, filtered.hidden as i64)?;
    }
    for tool in &filtered.changed {
        warn!("warden tool-acl: the definition of tool {tool:?} changed since it was pinned");
        host.increment(metrics::PIN_CHANGED, 1)?;
    }
    Ok(())
}

fn record_model(
    host: &dyn Host,
    acl: &CompiledToolAcl,
    record: &mut Record,
    records: &[super::mcp::Record],
) -> Result<(), HostError> {
    if records.is_empty() {
        return Ok(());
    }
    let blocked = records.iter().filter(|r| r.decision.verdict == crate::decision::Verdict::Deny).count();
    if blocked > 0 {
        host.increment(metrics::LLM_CALLS_BLOCKED, blocked as i64)?;
    }
    record::write(host, acl.audit_format, record, "answer_calls", llm::server_name(acl), records, "-")
}
