//! One request's flow through the router (in the HTTP filter chain, last before Envoy's
//! router): hold the headers, read the body's alias, choose the targets the rules permit in
//! the order to try them, and leave that plan in the request's filter state for the attempt
//! filter, which shapes and authenticates each attempt on the providers' cluster. When the
//! answer comes back, record the route it took; when none came (every attempt failed), answer
//! in the caller's API shape instead of Envoy's text.

use super::cooldown;
use super::metrics;
use super::plan::{Outcome, PlannedTarget, RoutePlan};
use super::provider::{
    attempt_body, carriage, credential_header, provider_endpoint, upstream_path, Carriage, Endpoint,
};
use super::request::{object_with_model, parse_object, RoutedRequest};
use super::select::{select, Refusal};
use super::vm::RouterVm;
use crate::attributes;
use crate::audit::{Record, Section};
use crate::decision::{Decision, FAILURE_MODE_RULE};
use crate::encoding;
use crate::error_body;
use crate::host::{Action, Host, HostError};
use crate::principal::Caller;
use log::error;
use serde_json::{json, Value};
use std::rc::Rc;

/// Envoy's request headers that steer retries and timeouts.
const ENVOY_CONTROLS: [&str; 9] = [
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-rq-timeout-alt-response",
];

/// The rule recorded when the router itself refuses (no rule of the policy decided).
const ROUTER_RULE: &str = "router";

enum Stage {
    /// Not the router's, or already answered.
    Pass,
    /// Headers held; waiting for the whole body.
    Reading,
    /// Sent on with a plan; the answer tells how it went.
    Routed,
    /// Every attempt failed: Envoy's reply body is replaced with one in the caller's shape.
    Replacing { body: String },
}

pub struct RouteFlow {
    host: Rc<dyn Host>,
    vm: Option<Rc<RouterVm>>,
    stage: Stage,
    endpoint: Endpoint,
    request_id: String,
    /// Request body bytes buffered so far: a request that ends in trailers is routed on them.
    request_size: usize,
    /// The path the agent called (each attempt rewrites the shared header map's).
    agent_path: String,
    record: Record,
}

impl RouteFlow {
    pub fn new(host: Rc<dyn Host>, vm: Option<Rc<RouterVm>>) -> Self {
        RouteFlow {
            host,
            vm,
            stage: Stage::Pass,
            endpoint: Endpoint::ChatCompletions,
            request_id: String::new(),
            request_size: 0,
            agent_path: String::new(),
            record: Record::new(),
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(vm) = self.vm.clone() else {
            return self.refuse(503, "the router has no policy", "server_error", "no_policy", FAILURE_MODE_RULE);
        };
        match self.headers(&vm, end_of_stream) {
            Ok(action) => action,
            Err(e) => self.fault(&e),
        }
    }

    fn headers(&mut self, vm: &RouterVm, end_of_stream: bool) -> Result<Action, HostError> {
        let headers = self.host.request_headers()?;
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let (method, path) = (header(":method").unwrap_or_default(), header(":path").unwrap_or_default());
        let Some(name) = vm.router.paths.endpoint(path) else { return Ok(Action::Continue) };
        self.request_id = header(attributes::REQUEST_ID_HEADER).unwrap_or("-").to_string();
        self.agent_path = path.to_string();
        // Envoy's retry and timeout controls are the route's and the router's to set: a client
        // must not turn failover off, retry a 200 on every provider, or hedge (identity also
        // strips every client `x-envoy-*`; the router is used alone too).
        for (name, _) in &headers {
            if ENVOY_CONTROLS.contains(&name.as_str()) {
                self.host.set_request_header(name, None)?;
            }
        }
        let Some(endpoint) = Endpoint::from_name(name) else {
            if name == "models" && method == "GET" {
                return Ok(self.list_models(vm));
            }
            let _ = self.host.increment(metrics::BAD_REQUEST, 1);
            let message = "the router serves chat/completions, responses, embeddings and messages here";
            return Ok(self.refuse(404, message, "invalid_request_error", "unknown_endpoint", ROUTER_RULE));
        };
        self.endpoint = endpoint;
        if method != "POST" {
            let _ = self.host.increment(metrics::BAD_REQUEST, 1);
            let message = format!("{} takes POST", endpoint.name());
            return Ok(self.refuse(405, &message, "invalid_request_error", "method_not_allowed", ROUTER_RULE));
        }
        if let Some(coding) = encoding::of_request(&headers) {
            let _ = self.host.increment(metrics::BAD_REQUEST, 1);
            let message = encoding::refusal_message(&coding);
            return Ok(self.refuse(415, &message, "invalid_request_error", "unsupported_encoding", ROUTER_RULE));
        }
        if end_of_stream {
            let _ = self.host.increment(metrics::BAD_REQUEST, 1);
            return Ok(self.refuse(400, "the request has no body", "invalid_request_error", "no_body", ROUTER_RULE));
        }
        // Held until the plan is written: the attempt filter reads it when the request goes.
        self.stage = Stage::Reading;
        Ok(Action::Pause)
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.stage, Stage::Reading) {
            return Action::Continue;
        }
        self.request_size = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        self.route()
    }

    /// A request that ends in trailers is routed on the body it sent before them.
    pub fn on_request_trailers(&mut self) -> Action {
        if !matches!(self.stage, Stage::Reading) {
            return Action::Continue;
        }
        self.route()
    }

    fn route(&mut self) -> Action {
        let Some(vm) = self.vm.clone() else { return Action::Continue };
        match self.plan(&vm) {
            Ok(action) => action,
            Err(e) => self.fault(&e),
        }
    }

    fn plan(&mut self, vm: &RouterVm) -> Result<Action, HostError> {
        let body = self.host.request_body(self.request_size)?;
        let parsed = parse_object(&body).and_then(|object| Ok((RoutedRequest::read(&object)?, object)));
        let (request, object) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                let _ = self.host.increment(metrics::BAD_REQUEST, 1);
                return Ok(self.refuse(400, &e.to_string(), "invalid_request_error", "bad_request", ROUTER_RULE));
            }
        };
        self.record.set("alias", request.alias.as_str()).set("endpoint", self.endpoint.name());
        // Read only what a rule can look at: each is a host call.
        let rules = &vm.router.rules;
        let caller = if rules.is_empty() { Caller::default() } else { Caller::read(&*self.host)? };
        let classes =
            if rules.iter().any(|r| !r.data_classes.is_empty()) { data_classes(&*self.host)? } else { Vec::new() };
        let chosen = match select(&vm.router, &request.alias, &caller, &classes, self.seed()) {
            Ok(targets) => targets,
            Err(Refusal::UnknownModel) => {
                let _ = self.host.increment(metrics::REFUSED, 1);
                let message = format!("the model {:?} is not one this gateway routes", request.alias);
                return Ok(self.refuse(404, &message, "invalid_request_error", "model_not_found", ROUTER_RULE));
            }
            Err(Refusal::NotPermitted { rule }) => {
                let _ = self.host.increment(metrics::REFUSED, 1);
                let message = format!("rule {rule:?} permits no provider of {:?} for this request", request.alias);
                return Ok(self.refuse(403, &message, "permission_error", "provider_not_permitted", &rule));
            }
        };
        // A target that cannot carry this request (no such API at its provider, or a member
        // translation has no counterpart for) is dropped; the first reason is kept for the 400.
        let mut why_not: Option<String> = None;
        let mut translated_ok: Vec<(Carriage, bool)> = Vec::new();
        let (mut servable, unservable): (Vec<_>, Vec<_>) = chosen.into_iter().partition(|t| {
            let kind = vm.router.providers[t.provider].kind;
            match carriage(kind, self.endpoint) {
                None => {
                    why_not.get_or_insert_with(|| {
                        format!("{:?} has no {} API", vm.router.providers[t.provider].name, self.endpoint.name())
                    });
                    false
                }
                Some(Carriage::Native) => true,
                Some(how) => {
                    if let Some((_, ok)) = translated_ok.iter().find(|(c, _)| *c == how) {
                        return *ok;
                    }
                    let result = attempt_body(&body, kind, how, &t.model);
                    if let Err(e) = &result {
                        why_not.get_or_insert_with(|| e.to_string());
                    }
                    translated_ok.push((how, result.is_ok()));
                    result.is_ok()
                }
            }
        });
        if servable.is_empty() {
            let _ = self.host.increment(metrics::REFUSED, 1);
            let message = format!(
                "no permitted target of {:?} can carry this request: {}",
                request.alias,
                why_not.unwrap_or_default()
            );
            return Ok(self.refuse(400, &message, "invalid_request_error", "unsupported_endpoint", ROUTER_RULE));
        }
        // Providers that asked for time (429 with Retry-After) go last, in their order.
        let now = self.host.now();
        let cooling = cooldown::cooling(&*self.host, now);
        if !cooling.is_empty() {
            servable.sort_by_key(|t| cooling.contains(&vm.router.providers[t.provider].name));
        }
        if self.endpoint == Endpoint::Embeddings {
            // Vectors of two models are not comparable: an embedding never fails over to another
            // model, whatever the policy's targets allow.
            let model = servable[0].model.clone();
            servable.retain(|t| t.model == model);
        }
        servable.truncate(vm.router.max_attempts as usize);
        // The first target's model is written here, while the headers are held (so the length
        // stays right): an attempt then holds the body only to translate it, or to fail over to
        // a target with another model. Envoy replays this body on every retry.
        let first = servable[0];
        let mut body_model = request.alias.clone();
        if carriage(vm.router.providers[first.provider].kind, self.endpoint) == Some(Carriage::Native)
            && first.model != request.alias
        {
            match object_with_model(&object, body.len(), &first.model) {
                Ok(rewritten) => {
                    self.host.set_request_body(self.request_size, &rewritten)?;
                    self.host.set_request_header("content-length", Some(&rewritten.len().to_string()))?;
                    body_model = first.model.clone();
                }
                Err(e) => error!("warden router: cannot write the first target's model: {e}"),
            }
        }
        let plan = RoutePlan {
            endpoint: self.endpoint.name().to_string(),
            alias: request.alias,
            body_model,
            targets: servable
                .iter()
                .map(|t| PlannedTarget {
                    provider: vm.router.providers[t.provider].name.clone(),
                    model: t.model.clone(),
                })
                .collect(),
            attempts: Vec::new(),
        };
        plan.write(&*self.host)?;
        // Envoy tries at most one attempt per target (identity removed any client-sent value).
        let retries = (plan.targets.len() - 1).to_string();
        self.host.set_request_header("x-envoy-max-retries", Some(&retries))?;
        if !unservable.is_empty() {
            self.record.set("dropped", unservable.len());
        }
        self.record.decision(&Decision::allow(ROUTER_RULE, "routed"));
        let _ = self.host.increment(metrics::ROUTED, 1);
        self.stage = Stage::Routed;
        Ok(Action::Continue)
    }

    /// A seed for the weighted order, from the request id Envoy assigned (a UUID).
    fn seed(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.request_id.hash(&mut hasher);
        self.host.now().hash(&mut hasher);
        hasher.finish()
    }

    pub fn on_response_headers(&mut self) -> Action {
        if !matches!(self.stage, Stage::Routed) {
            return Action::Continue;
        }
        let Some(vm) = self.vm.clone() else { return Action::Continue };
        match self.answered(&vm) {
            Ok(action) => action,
            Err(e) => {
                // The answer is the provider's and goes on; only the record is lost.
                error!("warden router: cannot record the route: {e}");
                let _ = self.host.increment(metrics::FAULTS, 1);
                Action::Continue
            }
        }
    }

    fn answered(&mut self, vm: &RouterVm) -> Result<Action, HostError> {
        let Some(mut plan) = RoutePlan::read(&*self.host)? else { return Ok(Action::Continue) };
        self.restore_request_headers(vm, &plan)?;
        plan.close_unanswered();
        let format = vm.audit_format;
        self.record_route(vm, &plan);
        if plan.attempts.is_empty() {
            error!("warden router: the request reached an upstream without the attempt filter; check the route");
            let _ = self.host.increment(metrics::UNROUTED, 1);
        }
        if plan.served().is_some() {
            self.record.set("outcome", "answered");
            self.stage = Stage::Pass;
            self.record.write(&*self.host, format, Section::Router)?;
            return Ok(Action::Continue);
        }
        // Envoy's own reply after the last attempt failed: its text names clusters and reset
        // reasons, and is not in the caller's API. Replace it.
        let _ = self.host.increment(metrics::EXHAUSTED, 1);
        self.record.set("outcome", "no_answer");
        self.record.write(&*self.host, format, Section::Router)?;
        let tried = plan.attempts.len();
        let message = format!("no provider answered ({tried} tried)");
        let body = error_body::model_api(
            self.endpoint.api(),
            503,
            &message,
            "server_error",
            "providers_unavailable",
            Some(ROUTER_RULE),
            &self.request_id,
        );
        self.host.set_response_header("content-type", Some("application/json"))?;
        self.host.set_response_header("content-length", None)?;
        self.host.set_response_header(":status", Some("503"))?;
        self.stage = Stage::Replacing { body };
        Ok(Action::Continue)
    }

    /// Envoy hands its attempts this request's own header map: what the last attempt wrote
    /// there (a provider key from the proxy's environment, the provider's path) would otherwise
    /// be what the access log, tracing and every filter after this point see. Earlier attempts'
    /// keys were removed by the attempts after them.
    fn restore_request_headers(&self, vm: &RouterVm, plan: &RoutePlan) -> Result<(), HostError> {
        let Some(last) = plan.attempts.last() else { return Ok(()) };
        let Some((_, provider)) = vm.router.provider(&last.provider) else { return Ok(()) };
        if provider.credential.as_ref().is_some_and(|c| c.env.is_some()) {
            self.host.set_request_header(credential_header(provider.kind, "").0, None)?;
        }
        let sent_to = carriage(provider.kind, self.endpoint)
            .map(|how| upstream_path(provider, provider_endpoint(self.endpoint, how), &last.model));
        if sent_to.is_some_and(|path| path != self.agent_path) {
            self.host.set_request_header(":path", Some(&self.agent_path))?;
        }
        Ok(())
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Replacing { body } = &self.stage else { return Action::Continue };
        if !end_of_stream {
            return Action::Pause;
        }
        if let Err(e) = self.host.set_response_body(body_size, body.as_bytes()) {
            error!("warden router: cannot replace Envoy's reply: {e}");
        }
        self.stage = Stage::Pass;
        Action::Continue
    }

    /// The route into the record and the provider counters.
    fn record_route(&mut self, vm: &RouterVm, plan: &RoutePlan) {
        let host = &*self.host;
        let attempts: Vec<Value> = plan
            .attempts
            .iter()
            .map(|a| {
                let mut entry = json!({"provider": a.provider, "model": a.model, "outcome": a.outcome.as_str()});
                if let Some(status) = a.status {
                    entry["status"] = status.into();
                }
                if let Some(ttfb) = a.ttfb_ms {
                    entry["ttfb_ms"] = ttfb.into();
                }
                entry
            })
            .collect();
        // Counted here, not by the attempt filter: an upstream filter's metrics land in its
        // cluster's stats scope on some Envoy versions (1.36), the router's always at the root.
        let now = host.now();
        for attempt in &plan.attempts {
            let _ = host.increment(&metrics::provider(&attempt.provider, "attempts"), 1);
            if let Some(wait) = attempt.retry_after_ms {
                cooldown::start(host, &attempt.provider, now, std::time::Duration::from_millis(wait));
            }
        }
        let failed = plan.attempts.iter().take(plan.attempts.len().saturating_sub(1));
        for attempt in failed.clone() {
            let _ = host.increment(&metrics::provider(&attempt.provider, "failovers"), 1);
            let _ = host.increment(&metrics::provider(&attempt.provider, attempt.outcome.as_str()), 1);
        }
        if let Some(first) = failed.clone().next() {
            self.record.set("failover_reason", first.outcome.as_str());
        }
        self.record.set("failovers", failed.count());
        match plan.served() {
            Some(served) => {
                let private = vm.router.provider(&served.provider).is_some_and(|(_, p)| p.private);
                self.record
                    .set("provider", served.provider.as_str())
                    .set("model", served.model.as_str())
                    .set("private", private);
                if let Some(ttfb) = served.ttfb_ms {
                    self.record.set("ttfb_ms", ttfb);
                    let _ = host.increment(&metrics::provider(&served.provider, "ttfb_ms_sum"), ttfb as i64);
                }
                let _ = host.increment(&metrics::provider(&served.provider, "answered"), 1);
                if served.outcome != Outcome::Answered {
                    let _ = host.increment(&metrics::provider(&served.provider, served.outcome.as_str()), 1);
                }
            }
            None => {
                if let Some(last) = plan.attempts.last() {
                    let _ = host.increment(&metrics::provider(&last.provider, last.outcome.as_str()), 1);
                }
            }
        }
        self.record.set("attempts", attempts);
    }

    fn list_models(&mut self, vm: &RouterVm) -> Action {
        let caller = Caller::read(&*self.host).unwrap_or_default();
        let classes = data_classes(&*self.host).unwrap_or_default();
        let data: Vec<Value> = vm
            .router
            .models
            .iter()
            .filter(|m| select(&vm.router, &m.alias, &caller, &classes, 0).is_ok())
            .map(|m| json!({"id": m.alias, "object": "model", "created": 0, "owned_by": "warden"}))
            .collect();
        let body = json!({"object": "list", "data": data}).to_string();
        self.stage = Stage::Pass;
        if let Err(e) = self.host.send_local_reply(200, &[("content-type", "application/json")], body.as_bytes()) {
            error!("warden router: cannot send the model list: {e}");
        }
        Action::Pause
    }

    fn refuse(&mut self, status: u32, message: &str, kind: &str, code: &'static str, rule: &str) -> Action {
        self.stage = Stage::Pass;
        let format = self.vm.as_ref().map_or_else(Default::default, |vm| vm.audit_format);
        // Recorded at best: a host fault here must not keep the refusal from being sent.
        let _ = self.record.decision(&Decision::deny(rule, code)).write(&*self.host, format, Section::Router);
        let body =
            error_body::model_api(self.endpoint.api(), status, message, kind, code, Some(rule), &self.request_id);
        if let Err(e) = self.host.send_local_reply(status, &[("content-type", "application/json")], body.as_bytes()) {
            error!("warden router: cannot send the refusal: {e}");
        }
        Action::Pause
    }

    /// A runtime fault: with no plan there is no provider to send to, so the request is
    /// refused (in the caller's shape) rather than sent anywhere unrouted.
    fn fault(&mut self, e: &HostError) -> Action {
        error!("warden router: host call failed: {e}");
        let _ = self.host.increment(metrics::FAULTS, 1);
        self.refuse(503, "the route could not be chosen", "server_error", "router_unavailable", FAILURE_MODE_RULE)
    }
}

/// The data classes recorded for the request (by the redaction filter); none when nothing
/// recorded any. A value that is not a list of names is a fault, not an empty list.
fn data_classes(host: &dyn Host) -> Result<Vec<String>, HostError> {
    let Some(bytes) = host.property(&[attributes::DATA_CLASSES])? else { return Ok(Vec::new()) };
    serde_json::from_slice(&bytes)
        .map_err(|_| HostError::Failed { call: "get_property(warden.data_classes)", status: "not a list".into() })
}
