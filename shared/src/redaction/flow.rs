//! One request's flow through redaction, callback by callback: hold the body of a model request
//! (or a governed MCP server's message), rewrite its text, refuse it when a class is blocked,
//! record the data classes for the router, then rewrite the answer as it flows (placeholders
//! restored). Each callback returns what the proxy does next.

use super::answer_stream::{AnswerStream, StreamApi};
use super::capture::Capture;
use super::compile::CompiledRedaction;
use super::config::McpScan;
use super::json_text;
use super::metrics;
use super::redactor::{Direction, Redactor, TextKind};
use crate::attributes;
use crate::audit::{Record, Section};
use crate::decision::{Decision, FailureMode, Mode};
use crate::encoding;
use crate::host::{self, Action, Host, HostError};
use crate::model_api::{Api, Route};
use crate::principal::Caller;
use log::error;
use std::rc::Rc;

const JSON: (&str, &str) = ("content-type", "application/json");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Pass,
    /// A model path: its API when Warden knows it (any JSON body is read either way).
    Model(Option<Api>),
    Mcp {
        record_only: bool,
    },
}

/// How the answer is read.
enum Answer {
    Pass,
    /// A JSON document, read whole.
    Json,
    Stream(AnswerStream),
    /// An answer that cannot be read (encoded): replaced by an error.
    Withheld,
}

pub struct RedactionFlow {
    host: Rc<dyn Host>,
    policy: Option<Rc<CompiledRedaction>>,
    hold: bool,
    target: Target,
    path: String,
    request_id: String,
    request_size: usize,
    response_size: usize,
    redactor: Option<Redactor>,
    answer: Answer,
    /// This filter's section as written for the request; the answer's findings are added.
    record: Option<Record>,
    /// The copy of what the agent saw, when the policy captures this request.
    capture: Option<Capture>,
}

impl RedactionFlow {
    pub fn new(host: Rc<dyn Host>, policy: Option<Rc<CompiledRedaction>>, hold: bool) -> Self {
        Self {
            host,
            policy,
            hold,
            target: Target::Pass,
            path: String::new(),
            request_id: String::new(),
            request_size: 0,
            response_size: 0,
            redactor: None,
            answer: Answer::Pass,
            record: None,
            capture: None,
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else { return self.unconfigured() };
        match self.headers(&policy, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.fault(&policy, &e),
        }
    }

    pub fn on_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.request_size = size;
        let Some(policy) = self.policy.clone() else { return Action::Continue };
        if self.target == Target::Pass {
            return Action::Continue;
        }
        if size > policy.max_body_bytes {
            return self.refuse(
                413,
                "body_too_large",
                &format!("the request body is over {} bytes", policy.max_body_bytes),
            );
        }
        if !end_of_stream {
            return Action::Pause;
        }
        match self.body(&policy, size) {
            Ok(action) => action,
            Err(e) => self.fault(&policy, &e),
        }
    }

    /// A request that ends in trailers is decided on the body buffered when they arrive.
    pub fn on_request_trailers(&mut self) -> Action {
        let size = self.request_size;
        if size == 0 || self.target == Target::Pass || self.redactor.is_some() {
            return Action::Continue;
        }
        self.on_request_body(size, true)
    }

    pub fn on_response_headers(&mut self) -> Action {
        let Some(policy) = self.policy.clone() else { return Action::Continue };
        match self.response_headers(&policy) {
            Ok(()) => Action::Continue,
            Err(e) => {
                error!("warden redaction: host call failed on the answer: {e}");
                self.answer = Answer::Withheld;
                Action::Continue
            }
        }
    }

    pub fn on_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let Some(policy) = self.policy.clone() else { return Action::Continue };
        match self.response_body(&policy, size, end_of_stream) {
            Ok(action) => action,
            Err(e) => {
                error!("warden redaction: host call failed on the answer: {e}");
                let _ = self.host.set_response_body(size, b"");
                Action::Continue
            }
        }
    }

    pub fn on_response_trailers(&mut self) -> Action {
        if matches!(self.answer, Answer::Json) && self.response_size > 0 {
            let size = self.response_size;
            return self.on_response_body(size, true);
        }
        Action::Continue
    }

    fn unconfigured(&mut self) -> Action {
        let body =
            crate::error_body::openai("redaction is not configured", "permission_error", "unconfigured", None, "-");
        let _ = self.host.send_local_reply(503, &[JSON], body.as_bytes());
        Action::Pause
    }

    fn headers(&mut self, policy: &Rc<CompiledRedaction>, end_of_stream: bool) -> Result<Action, HostError> {
        let headers = self.host.request_headers()?;
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        self.request_id = header(attributes::REQUEST_ID_HEADER).unwrap_or("-").to_string();
        self.path = header(":path").unwrap_or_default().to_string();
        let method = header(":method").unwrap_or_default();
        self.target = if let Some(server) = policy.mcp_server(&self.path) {
            Target::Mcp { record_only: server.scan == McpScan::Record }
        } else {
            match policy.paths.classify(&self.path) {
                Route::Other => Target::Pass,
                Route::Api(api) => Target::Model(Some(api)),
                Route::Unreadable | Route::Free => Target::Model(None),
            }
        };
        if self.target == Target::Pass {
            return Ok(Action::Continue);
        }
        // Answers are read as sent.
        self.host.set_request_header(encoding::ACCEPT_ENCODING, Some(encoding::IDENTITY))?;
        if method != "POST" && !end_of_stream {
            // A body this filter would not read (PUT, PATCH, a GET with a body) is not passed on.
            return Ok(self.refuse(405, "method_not_read", &format!("a {method} body is not read here: send POST")));
        }
        if end_of_stream {
            // Nothing sent to scan; an MCP server's event stream (GET) is still read.
            if let (Target::Mcp { record_only }, "GET") = (self.target, method) {
                let caller = Caller::read(&*self.host)?;
                self.redactor = Some(Redactor::new(
                    Rc::clone(policy),
                    caller,
                    &self.path,
                    record_only || policy.mode == Mode::Shadow,
                ));
                return Ok(Action::Continue);
            }
            self.target = Target::Pass;
            return Ok(Action::Continue);
        }
        let length = header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        if length.is_some_and(|n| n > policy.max_body_bytes) {
            return Ok(self.refuse(
                413,
                "body_too_large",
                &format!("the request body is over {} bytes", policy.max_body_bytes),
            ));
        }
        if let Some(coding) = encoding::of_request(&headers) {
            return Ok(self.refuse(415, "unsupported_encoding", &encoding::refusal_message(&coding)));
        }
        if self.hold {
            return Ok(Action::Pause);
        }
        // The headers go on before the body is rewritten: Envoy frames the new body itself.
        self.host.set_request_header("content-length", None)?;
        Ok(Action::Continue)
    }

    fn body(&mut self, policy: &Rc<CompiledRedaction>, size: usize) -> Result<Action, HostError> {
        let body = self.host.request_body(size)?;
        let caller = Caller::read(&*self.host)?;
        let mut capture = policy
            .capture
            .as_ref()
            .filter(|c| c.applies(&caller, &self.path, &self.request_id))
            .map(|c| Capture::new(&self.request_id, caller.session.as_deref(), &self.path, c.max_bytes));
        let record_only = matches!(self.target, Target::Mcp { record_only: true }) || policy.mode == Mode::Shadow;
        let mut redactor = Redactor::new(Rc::clone(policy), caller, &self.path, record_only);
        let Ok(text) = std::str::from_utf8(&body) else {
            return Ok(self.unreadable(policy, "the request body is not UTF-8"));
        };
        let rewritten =
            match json_text::rewrite(text, &mut |t| redactor.rewrite(t, Direction::Request, TextKind::Plain)) {
                Ok(rewritten) => rewritten,
                Err(e) => return Ok(self.unreadable(policy, &e.to_string())),
            };
        metrics::count(&*self.host, &redactor, "request")?;
        if redactor.found_any() {
            self.host.set_property(&[attributes::DATA_CLASSES], redactor.data_classes_json().as_bytes())?;
        }
        let blocked = redactor.blocked.clone().filter(|_| !redactor.record_only());
        self.record(policy, &redactor, blocked.as_deref())?;
        if let Some(class) = blocked {
            self.redactor = None;
            let message = format!("the request carries {class} data, which policy does not let leave");
            return Ok(self.refuse(400, "sensitive_data", &message));
        }
        if let Some(capture) = capture.as_mut() {
            // What left, redacted even where the policy only records.
            capture.set_request(rewritten.as_deref().unwrap_or(text));
            capture.write(&*self.host)?;
        }
        self.capture = capture;
        if let Some(new_body) = rewritten.filter(|_| !redactor.record_only()) {
            self.host.set_request_body(size, new_body.as_bytes())?;
            if self.hold {
                self.host.set_request_header("content-length", Some(&new_body.len().to_string()))?;
            }
        }
        self.redactor = Some(redactor);
        Ok(Action::Continue)
    }

    fn record(
        &mut self,
        policy: &CompiledRedaction,
        redactor: &Redactor,
        blocked: Option<&str>,
    ) -> Result<(), HostError> {
        let mut record = Record::new();
        record.set("mode", if redactor.record_only() { "record" } else { "enforce" });
        if let Some(rule) = redactor.rule() {
            record.set("rule", rule);
        }
        record.set("findings", findings(redactor));
        record.set("classes", redactor.classes.iter().cloned().collect::<Vec<_>>());
        let rule = redactor.rule().unwrap_or("actions");
        match blocked {
            Some(class) => {
                record.decision(&Decision::deny(rule, "sensitive_data"));
                record.set("blocked_class", class);
            }
            None => {
                // Where the policy only records (MCP servers by default), nothing was changed.
                let reason = match (redactor.found_any(), redactor.record_only()) {
                    (false, _) => "clean",
                    (true, true) => "found",
                    (true, false) => "redacted",
                };
                record.decision(&Decision::allow(rule, reason));
            }
        }
        record.write(&*self.host, policy.audit_format, Section::Redaction)?;
        self.record = Some(record);
        Ok(())
    }

    /// The answer's findings join the request's section once the answer has been read.
    fn record_answer(&mut self, policy: &CompiledRedaction) -> Result<(), HostError> {
        let (Some(redactor), Some(record)) = (self.redactor.as_ref(), self.record.as_mut()) else { return Ok(()) };
        metrics::count(&*self.host, redactor, "answer")?;
        if redactor.counts.is_empty() {
            return Ok(());
        }
        record.set("answer_findings", findings(redactor));
        record.write(&*self.host, policy.audit_format, Section::Redaction)
    }

    fn response_headers(&mut self, policy: &CompiledRedaction) -> Result<(), HostError> {
        if let Some(redactor) = self.redactor.as_mut() {
            // The request's findings are counted and recorded; the answer's are its own.
            redactor.counts.clear();
        }
        if self.redactor.is_none() || self.redactor.as_ref().is_some_and(Redactor::record_only) && !policy.scan_answers
        {
            return Ok(());
        }
        let content_type = host::response_header(&*self.host, "content-type")?.unwrap_or_default().to_ascii_lowercase();
        let coding =
            encoding::non_identity(self.host.response_header_values("content-encoding")?.iter().map(String::as_str));
        self.answer = if coding.is_some() {
            Answer::Withheld
        } else if content_type.starts_with("text/event-stream") {
            let api = match self.target {
                Target::Model(Some(Api::AnthropicMessages)) => StreamApi::AnthropicMessages,
                Target::Model(Some(Api::Responses)) => StreamApi::Responses,
                Target::Mcp { .. } => StreamApi::Mcp,
                _ => StreamApi::ChatCompletions,
            };
            Answer::Stream(AnswerStream::new(api, policy.max_event_bytes))
        } else if content_type.starts_with("application/json") || content_type.is_empty() {
            Answer::Json
        } else {
            Answer::Pass
        };
        if !matches!(self.answer, Answer::Pass) {
            // The answer's length changes with what is restored or masked.
            self.host.set_response_header("content-length", None)?;
        }
        if matches!(self.answer, Answer::Withheld) {
            self.host.set_response_header("content-encoding", None)?;
            self.host.set_response_header("content-type", Some("application/json"))?;
        }
        Ok(())
    }

    fn response_body(&mut self, policy: &CompiledRedaction, size: usize, end: bool) -> Result<Action, HostError> {
        self.response_size = size;
        let Some(redactor) = self.redactor.as_mut() else { return Ok(Action::Continue) };
        match &mut self.answer {
            Answer::Pass => Ok(Action::Continue),
            Answer::Withheld => {
                if end {
                    let body = crate::error_body::openai(
                        "the answer is encoded and could not be checked for sensitive data",
                        "api_error",
                        "answer_withheld",
                        None,
                        &self.request_id,
                    );
                    self.host.set_response_body(size, body.as_bytes())?;
                    self.host.increment(metrics::ANSWERS_WITHHELD, 1)?;
                } else {
                    self.host.set_response_body(size, b"")?;
                }
                Ok(Action::Continue)
            }
            Answer::Json => {
                if size > policy.max_body_bytes {
                    let body = crate::error_body::openai(
                        "the answer is too large to check",
                        "api_error",
                        "answer_withheld",
                        None,
                        &self.request_id,
                    );
                    self.host.set_response_body(size, body.as_bytes())?;
                    self.host.increment(metrics::ANSWERS_WITHHELD, 1)?;
                    self.answer = Answer::Pass;
                    return Ok(Action::Continue);
                }
                if !end {
                    return Ok(Action::Pause);
                }
                let body = self.host.response_body(size)?;
                let text = String::from_utf8_lossy(&body);
                let rewritten =
                    json_text::rewrite(&text, &mut |t| redactor.rewrite(t, Direction::Answer, TextKind::Plain));
                // An answer that is not JSON has no text of a known shape; it passes as sent.
                let delivered = match &rewritten {
                    Ok(Some(new_body)) if !redactor.record_only() || !new_body.is_empty() => {
                        self.host.set_response_body(size, new_body.as_bytes())?;
                        new_body.as_str()
                    }
                    _ => &*text,
                };
                if let Some(capture) = self.capture.as_mut() {
                    capture.push_answer(delivered, &|t| redactor.unrestore(t));
                    capture.write(&*self.host)?;
                }
                self.record_answer(policy)?;
                Ok(Action::Continue)
            }
            Answer::Stream(stream) => {
                let chunk = self.host.response_body(size)?;
                match stream.push(redactor, &chunk, end) {
                    Ok(out) => {
                        self.host.set_response_body(size, &out)?;
                        if let Some(capture) = self.capture.as_mut() {
                            capture.push_answer(&String::from_utf8_lossy(&out), &|t| redactor.unrestore(t));
                            if end {
                                capture.write(&*self.host)?;
                            }
                        }
                    }
                    Err(too_large) => {
                        error!("warden redaction: {too_large}; the stream is ended");
                        self.host.set_response_body(size, b"")?;
                        self.host.increment(metrics::ANSWERS_WITHHELD, 1)?;
                        self.answer = Answer::Withheld;
                    }
                }
                if end {
                    self.record_answer(policy)?;
                }
                Ok(Action::Continue)
            }
        }
    }

    /// A body that cannot be read as JSON: refused (failure mode `deny`) or passed unread.
    fn unreadable(&mut self, policy: &CompiledRedaction, why: &str) -> Action {
        let _ = self.host.increment(metrics::UNREADABLE, 1);
        if policy.failure_mode == FailureMode::Allow {
            self.target = Target::Pass;
            return Action::Continue;
        }
        self.refuse(400, "unreadable_body", &format!("the request could not be checked for sensitive data: {why}"))
    }

    fn fault(&mut self, policy: &CompiledRedaction, e: &HostError) -> Action {
        error!("warden redaction: host call failed: {e}");
        let _ = self.host.increment(metrics::FAULTS, 1);
        if policy.failure_mode == FailureMode::Allow {
            self.target = Target::Pass;
            return Action::Continue;
        }
        self.refuse(503, "host_error", "sensitive data could not be checked")
    }

    /// A refusal in the caller's protocol, naming the class or the reason, never a value.
    fn refuse(&mut self, status: u32, code: &str, message: &str) -> Action {
        let _ = self.host.increment(&metrics::refused(code), 1);
        let body = match self.target {
            Target::Mcp { .. } => crate::error_body::jsonrpc(None, -32600, message, None),
            Target::Model(Some(Api::AnthropicMessages)) => {
                crate::error_body::anthropic(status, message, code, Some("redaction"), &self.request_id)
            }
            _ => crate::error_body::openai(message, "invalid_request_error", code, Some("redaction"), &self.request_id),
        };
        self.target = Target::Pass;
        self.answer = Answer::Pass;
        if let Err(e) = self.host.send_local_reply(status, &[JSON], body.as_bytes()) {
            error!("warden redaction: cannot send the reply: {e}");
        }
        Action::Pause
    }
}

/// class → action → findings, for the record.
fn findings(redactor: &Redactor) -> serde_json::Value {
    let mut findings = serde_json::Map::new();
    for ((class, action), n) in &redactor.counts {
        let entry = findings.entry(class.clone()).or_insert_with(|| serde_json::Value::Object(Default::default()));
        entry[*action] = (*n).into();
    }
    serde_json::Value::Object(findings)
}
