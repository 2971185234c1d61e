//! One attempt's flow in the router's attempt filter: an upstream filter on the providers'
//! cluster, which Envoy runs again for every retry. Each attempt takes the next target of the
//! request's plan and is shaped for its own provider: the path (an Azure deployment and its
//! `api-version`), the provider's headers, its credential (every credential header the agent
//! sent removed first), the body (the target's model, or the request translated to the
//! provider's API), and the provider's cluster, which the providers' listener routes on. A
//! translated attempt's answer is translated back: JSON whole, streams event by event, errors
//! into the caller's shape. What comes back is recorded on the plan; a 429's `Retry-After` is
//! recorded for the router, which sends the provider to the back of the queue for that long.

use super::config::ProviderKind;
use super::cooldown;
use super::metrics;
use super::plan::{Attempt, Outcome, RoutePlan};
use super::provider::{
    api_headers, attempt_body, carriage, credential_header, provider_endpoint, upstream_path, Carriage, Endpoint,
    CREDENTIAL_HEADERS,
};
use super::translate::{answer, stream, Direction};
use super::vm::RouterVm;
use crate::attributes;
use crate::encoding::{ACCEPT_ENCODING, IDENTITY};
use crate::error_body;
use crate::host::{response_header, Action, Host, HostError};
use log::error;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What an agent may send that no provider gets on the gateway's key: the OpenAI organization
/// and project billed, and cookies.
const NOT_FOR_PROVIDERS: [&str; 3] = ["openai-organization", "openai-project", "cookie"];

/// Headers an attempt may set for an Anthropic provider (or the agent sent for one; its
/// `anthropic-beta` goes on to an Anthropic provider it calls natively).
const ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// What the attempt does to the answer.
enum Answer {
    /// Passed on as the provider sent it.
    AsSent,
    /// A JSON answer (or error) held whole, then translated.
    Json { direction: Direction, status: u16, size: usize },
    /// A stream translated event by event.
    Stream(Box<dyn stream::Translator>),
    /// Replaced whole: the provider refused the gateway's own credential, and its words may
    /// quote it (OpenAI's 401 shows the key's first and last characters).
    Replace(Vec<u8>),
}

/// The body edit the attempt makes, decided from its headers and done when the body is whole.
struct BodyEdit {
    kind: ProviderKind,
    carriage: Carriage,
    model: String,
}

pub struct AttemptFlow {
    host: Rc<dyn Host>,
    vm: Option<Rc<RouterVm>>,
    /// This attempt's place in the plan, once it has one.
    index: Option<usize>,
    edit: Option<BodyEdit>,
    /// The request is translated: so is its answer.
    direction: Option<Direction>,
    /// The agent asked for a usage chunk at the end of an OpenAI stream.
    include_usage: bool,
    answer: Answer,
    request_size: usize,
    sent: SystemTime,
    /// The plan as this attempt wrote it: attempts run one at a time and nothing else writes
    /// the plan meanwhile, so the answer's side updates this copy instead of reading it again.
    plan: Option<RoutePlan>,
}

impl AttemptFlow {
    pub fn new(host: Rc<dyn Host>, vm: Option<Rc<RouterVm>>) -> Self {
        let sent = host.now();
        AttemptFlow {
            host,
            vm,
            index: None,
            edit: None,
            direction: None,
            include_usage: false,
            answer: Answer::AsSent,
            request_size: 0,
            sent,
            plan: None,
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            return self.refuse(500, "the router's attempt filter has no policy");
        };
        match self.shape(&vm, end_of_stream) {
            Ok(action) => action,
            Err(e) => {
                error!("warden router: cannot shape an attempt: {e}");
                let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
                self.refuse(500, "the attempt could not be prepared")
            }
        }
    }

    fn shape(&mut self, vm: &RouterVm, end_of_stream: bool) -> Result<Action, HostError> {
        let Some(mut plan) = RoutePlan::read(&*self.host)? else {
            // Not routed: sending it would reach a provider with no credential, or with the
            // agent's. Refused, and not retried (a 4xx).
            return Ok(self.refuse(421, "this request was not routed by Warden's router"));
        };
        plan.close_unanswered();
        let index = plan.attempts.len();
        let Some(target) = plan.targets.get(index).cloned() else {
            return Ok(self.refuse(503, "no target is left to try"));
        };
        let found = (vm.router.provider(&target.provider), Endpoint::from_name(&plan.endpoint));
        let (Some((provider_index, provider)), Some(endpoint)) = found else {
            return self.skip(plan, "the plan names a provider or endpoint this filter's policy does not have");
        };
        let Some(how) = carriage(provider.kind, endpoint) else {
            return self.skip(plan, "the plan names a provider that cannot carry this endpoint");
        };
        let host = &*self.host;
        // Removed, each only where present (one read, then a call per header found): every
        // credential the agent sent, whatever Warden forwards for upstreams of its own (the
        // principal's copy, the model served: not a third-party provider's to see), and what
        // an earlier attempt set for its provider (Envoy hands every attempt the same header
        // map).
        let native_anthropic = provider.kind == ProviderKind::Anthropic && how == Carriage::Native;
        for (name, _) in host.request_headers()? {
            let stale = CREDENTIAL_HEADERS.contains(&name.as_str())
                || NOT_FOR_PROVIDERS.contains(&name.as_str())
                || (ANTHROPIC_HEADERS.contains(&name.as_str()) && !(native_anthropic && name == "anthropic-beta"))
                || name.starts_with(attributes::RESERVED_HEADER_PREFIX);
            if stale {
                host.set_request_header(&name, None)?;
            }
        }
        if let Some(secret) = &vm.credentials[provider_index] {
            let (name, value) = credential_header(provider.kind, secret.expose());
            host.set_request_header(name, Some(&value))?;
        }
        if let Carriage::Translated(direction) = how {
            // The answer is translated: it must arrive readable.
            host.set_request_header(ACCEPT_ENCODING, Some(IDENTITY))?;
            self.direction = Some(direction);
        }
        for (name, value) in api_headers(provider) {
            host.set_request_header(name, Some(&value))?;
        }
        let path = upstream_path(provider, provider_endpoint(endpoint, how), &target.model);
        host.set_request_header(":path", Some(&path))?;
        host.set_request_header(attributes::CLUSTER_HEADER, Some(&provider.cluster))?;
        if how != Carriage::Native || target.model != plan.body_model {
            // The body changes length; the codec frames it anew.
            host.set_request_header("content-length", None)?;
            self.edit = Some(BodyEdit { kind: provider.kind, carriage: how, model: target.model.clone() });
        }
        self.sent = host.now();
        plan.attempts.push(Attempt {
            provider: target.provider.clone(),
            model: target.model,
            outcome: Outcome::Sent,
            status: None,
            sent_ms: millis(self.sent),
            ttfb_ms: None,
            retry_after_ms: None,
        });
        plan.write(host)?;
        self.plan = Some(plan);
        self.index = Some(index);
        if end_of_stream {
            self.edit = None;
        }
        Ok(Action::Continue)
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.edit.is_none() {
            return Action::Continue;
        }
        self.request_size = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        self.rewrite()
    }

    /// A request that ends in trailers: the body held so far is the whole body.
    pub fn on_request_trailers(&mut self) -> Action {
        if self.edit.is_none() {
            return Action::Continue;
        }
        self.rewrite()
    }

    fn rewrite(&mut self) -> Action {
        let Some(edit) = self.edit.take() else { return Action::Continue };
        let body = match self.host.request_body(self.request_size) {
            Ok(body) => body,
            Err(e) => return self.body_fault(&e.to_string()),
        };
        if self.direction == Some(Direction::ChatToMessages) {
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            self.include_usage = value["stream_options"]["include_usage"] == true;
        }
        // The router checked that this body can be carried before it chose this target.
        match attempt_body(&body, edit.kind, edit.carriage, &edit.model) {
            Ok(rewritten) => match self.host.set_request_body(self.request_size, &rewritten) {
                Ok(()) => Action::Continue,
                Err(e) => self.body_fault(&e.to_string()),
            },
            Err(e) => self.body_fault(&e.to_string()),
        }
    }

    fn body_fault(&mut self, why: &str) -> Action {
        error!("warden router: cannot prepare the attempt's body: {why}");
        let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
        self.refuse(500, "the attempt could not be prepared")
    }

    pub fn on_response_headers(&mut self) -> Action {
        let Some(index) = self.index else { return Action::Continue };
        match self.record_answer(index) {
            Ok(()) => {}
            Err(e) => {
                error!("warden router: cannot record an attempt's answer: {e}");
                let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
            }
        }
        Action::Continue
    }

    fn record_answer(&mut self, index: usize) -> Result<(), HostError> {
        let host = &*self.host;
        let status = response_header(host, ":status")?.and_then(|s| s.parse::<u16>().ok()).unwrap_or(0);
        let now = host.now();
        let no_answer = response_header(host, attributes::NO_ANSWER_HEADER)?.is_some();
        if let (Some(direction), false) = (self.direction, no_answer) {
            self.answer = translation(host, direction, status, self.include_usage, now)?;
        }
        let Some(mut plan) = self.plan.take() else { return Ok(()) };
        if matches!(status, 401 | 403) && !no_answer {
            error!(
                "warden router: provider {:?} refused the gateway's credential ({status})",
                plan.attempts.get(index).map(|a| a.provider.as_str()).unwrap_or("?")
            );
            let api = Endpoint::from_name(&plan.endpoint).and_then(Endpoint::api);
            let body = error_body::model_api(
                api,
                502,
                "the provider refused the gateway's credential for it",
                "server_error",
                "provider_auth_failed",
                Some("router"),
                "-",
            );
            host.set_response_header("content-length", None)?;
            host.set_response_header("content-type", Some("application/json"))?;
            host.set_response_header(":status", Some("502"))?;
            self.answer = Answer::Replace(body.into_bytes());
        }
        let Some(attempt) = plan.attempts.get_mut(index) else { return Ok(()) };
        attempt.status = Some(status);
        attempt.outcome = Outcome::of_status(status);
        if matches!(status, 401 | 403) {
            // The gateway's credential, not the agent's request: answered as a 502, which Envoy
            // fails over like any other server error.
            attempt.outcome = Outcome::ServerError;
        }
        if no_answer {
            // The providers' listener answered for a provider that did not.
            attempt.outcome = Outcome::NoAnswer;
            host.set_response_header(attributes::NO_ANSWER_HEADER, None)?;
        }
        attempt.ttfb_ms = Some(now.duration_since(self.sent).map(|d| d.as_millis() as u64).unwrap_or(0));
        if status == 429 {
            let cap = self.vm.as_ref().map(|vm| vm.router.max_cooldown).unwrap_or_default();
            attempt.retry_after_ms = response_header(host, "retry-after")?
                .and_then(|v| cooldown::retry_after(&v, now, cap))
                .map(|wait| wait.as_millis() as u64);
        }
        plan.write(host)
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &mut self.answer {
            Answer::AsSent => Action::Continue,
            Answer::Replace(body) => {
                if !end_of_stream {
                    return Action::Pause;
                }
                if let Err(e) = self.host.set_response_body(body_size, body) {
                    error!("warden router: cannot replace a provider's refusal: {e}");
                }
                self.answer = Answer::AsSent;
                Action::Continue
            }
            Answer::Json { size, .. } => {
                *size = body_size;
                if !end_of_stream {
                    return Action::Pause;
                }
                self.translate_json()
            }
            Answer::Stream(translator) => {
                let result = self.host.response_body(body_size).and_then(|chunk| {
                    let mut out = translator.push(&chunk);
                    if end_of_stream {
                        out.extend(translator.finish());
                    }
                    self.host.set_response_body(body_size, &out)
                });
                if let Err(e) = result {
                    error!("warden router: cannot translate a streamed answer: {e}");
                    let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
                }
                Action::Continue
            }
        }
    }

    /// A stream whose provider ended it with trailers: the held tail is its end.
    pub fn on_response_trailers(&mut self) -> Action {
        match &mut self.answer {
            Answer::Json { .. } => self.translate_json(),
            // A stream's last event came before its trailers; a tail after it cannot be added
            // from this callback, and is left out.
            _ => Action::Continue,
        }
    }

    fn translate_json(&mut self) -> Action {
        let Answer::Json { direction, status, size } = std::mem::replace(&mut self.answer, Answer::AsSent) else {
            return Action::Continue;
        };
        let created = self.host.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let result = self.host.response_body(size).and_then(|body| {
            let translated = match (direction, (200..300).contains(&status)) {
                (Direction::ChatToMessages, true) => answer::messages_to_chat(&body, created),
                (Direction::MessagesToChat, true) => answer::chat_to_messages(&body),
                (Direction::ChatToMessages, false) => Some(answer::error_to_openai(&body, status)),
                (Direction::MessagesToChat, false) => Some(answer::error_to_anthropic(&body, status)),
            };
            let translated = translated.unwrap_or_else(|| {
                // Not the answer its API promises: the caller gets an error it can read.
                let message = "the provider's answer could not be read";
                match direction {
                    Direction::ChatToMessages => {
                        error_body::openai(message, "server_error", "answer_unreadable", Some("router"), "-")
                    }
                    Direction::MessagesToChat => {
                        error_body::anthropic(502, message, "answer_unreadable", Some("router"), "-")
                    }
                }
                .into_bytes()
            });
            self.host.set_response_body(size, &translated)
        });
        if let Err(e) = result {
            error!("warden router: cannot translate an answer: {e}");
            let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
        }
        Action::Continue
    }

    /// This attempt's target cannot be tried here (the router's policy and this filter's
    /// differ, as during a rollout): recorded as unanswered, so that Envoy's retry takes the
    /// next target rather than this one again.
    fn skip(&mut self, mut plan: RoutePlan, why: &str) -> Result<Action, HostError> {
        error!("warden router: {why}");
        let _ = self.host.increment(metrics::ATTEMPT_FAULTS, 1);
        if let Some(target) = plan.targets.get(plan.attempts.len()).cloned() {
            plan.attempts.push(Attempt {
                provider: target.provider,
                model: target.model,
                outcome: Outcome::NoAnswer,
                status: None,
                sent_ms: millis(self.host.now()),
                ttfb_ms: None,
                retry_after_ms: None,
            });
            plan.write(&*self.host)?;
        }
        Ok(self.refuse(500, why))
    }

    /// An attempt refused here is answered in OpenAI's shape (the caller's shape is the
    /// router's to know); the router replaces it when no attempt answered.
    fn refuse(&mut self, status: u32, message: &str) -> Action {
        self.index = None;
        self.edit = None;
        let body = error_body::openai(message, "server_error", "attempt_refused", Some("router"), "-");
        if let Err(e) = self.host.send_local_reply(status, &[("content-type", "application/json")], body.as_bytes()) {
            error!("warden router: cannot refuse an attempt: {e}");
        }
        Action::Pause
    }
}

/// How a translated attempt's answer is handled, from its headers: a stream event by event,
/// anything else whole. The length changes, so it is removed.
fn translation(
    host: &dyn Host,
    direction: Direction,
    status: u16,
    include_usage: bool,
    now: SystemTime,
) -> Result<Answer, HostError> {
    host.set_response_header("content-length", None)?;
    let streamed = response_header(host, "content-type")?.is_some_and(|t| t.starts_with("text/event-stream"));
    if streamed && (200..300).contains(&status) {
        let created = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let translator: Box<dyn stream::Translator> = match direction {
            Direction::ChatToMessages => Box::new(stream::MessagesToChat::new(created, include_usage)),
            Direction::MessagesToChat => Box::new(stream::ChatToMessages::new()),
        };
        return Ok(Answer::Stream(translator));
    }
    host.set_response_header("content-type", Some("application/json"))?;
    Ok(Answer::Json { direction, status, size: 0 })
}
