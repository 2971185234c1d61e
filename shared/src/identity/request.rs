//! The identity filter's request flow over the [`Host`] seam: capture what the request says,
//! strip what a client must not set, decide, and act on the decision. The proxy-wasm glue only
//! calls these and pauses or resumes the stream.

use super::authenticate::{authenticate, Denial, KeyWait, Outcome, RequestFacts};
use super::compile::CompiledIdentity;
use super::denial;
use super::metrics;
use super::query;
use super::session::{self, Binding};
use super::token_cache::Verifier;
use crate::attributes;
use crate::audit::{self, Record, Section};
use crate::decision::{Decision, Mode, Verdict};
use crate::host::{Host, HostError};
use crate::principal::Principal;
use serde_json::{Map, Value};

/// A request as it arrived, kept so a paused request can be decided again later.
#[derive(Debug, Clone, Default)]
pub struct CapturedRequest {
    pub headers: Vec<(String, String)>,
    pub authority: String,
    pub path: String,
    pub route_name: Option<String>,
    pub peer_uri_san: Option<String>,
    pub request_id: String,
}

impl CapturedRequest {
    /// Reads the request. Proxy properties are read only when the policy can use them: each
    /// host call costs about a microsecond on Envoy's request path.
    pub fn capture(host: &dyn Host, policy: &CompiledIdentity) -> Result<Self, HostError> {
        let headers = host.request_headers()?;
        let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        let text = |bytes: Option<Vec<u8>>| bytes.and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty());
        let route_name = if policy.reads_route_name { text(host.property(&["xds", "route_name"])?) } else { None };
        let peer_uri_san =
            if policy.reads_peer { text(host.property(&["connection", "uri_san_peer_certificate"])?) } else { None };
        Ok(CapturedRequest {
            authority: find(":authority"),
            path: find(":path"),
            request_id: find(attributes::REQUEST_ID_HEADER),
            route_name,
            peer_uri_san,
            headers,
        })
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k == name)
    }

    pub fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            headers: &self.headers,
            authority: &self.authority,
            path: &self.path,
            route_name: self.route_name.as_deref(),
            peer_uri_san: self.peer_uri_san.as_deref(),
        }
    }
}

/// Removes every header a client could use to pose as a verified principal or to steer Envoy.
/// Runs first, whatever the outcome:
/// - the reserved `x-warden-` prefix and the configured forward headers, and their underscore
///   twins (`x_warden_agent`), which upstreams that fold `_` into `-` (CGI, many Python and
///   Node servers) would read as the real thing;
/// - Envoy's request control headers (`x-envoy-max-retries`, `x-envoy-upstream-rq-timeout-ms`,
///   ...): Envoy honours them from peers its `internal_address_config` calls internal, and
///   meshes often call every peer internal. Only `x-envoy-internal`, which Envoy itself sets
///   and clears before any filter runs, is kept.
pub fn strip_untrusted_headers(
    host: &dyn Host,
    policy: &CompiledIdentity,
    request: &mut CapturedRequest,
) -> Result<(), HostError> {
    let forwarded = [
        &policy.forward.agent,
        &policy.forward.user,
        &policy.forward.tenant,
        &policy.forward.session,
        &policy.forward.auth_method,
    ];
    let reserved = |name: &str| {
        name.starts_with(attributes::RESERVED_HEADER_PREFIX) || forwarded.iter().any(|f| f.as_deref() == Some(name))
    };
    let untrusted = |name: &str| {
        reserved(name)
            || (name.contains('_') && reserved(&name.replace('_', "-")))
            || (name.starts_with(ENVOY_HEADER_PREFIX) && name != ENVOY_INTERNAL)
    };
    let mut stripped = false;
    for (name, _) in &request.headers {
        if untrusted(name) {
            host.set_request_header(name, None)?;
            stripped = true;
        }
    }
    if stripped {
        request.headers.retain(|(name, _)| !untrusted(name));
        // Envoy chose the route before any filter ran, possibly on a header just removed (say
        // `x-warden-model`, which a route may match): it is chosen again without them, and a
        // policy that matches route names reads the new one. (Envoy also does this by itself
        // on a header edit from an ABI 0.2.1 module, but not from newer ABIs.)
        host.clear_route_cache()?;
        if policy.reads_route_name {
            request.route_name = host
                .property(&["xds", "route_name"])?
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty());
        }
    }
    Ok(())
}

/// Envoy's own request headers: control headers the router acts on, and its internal marker.
const ENVOY_HEADER_PREFIX: &str = "x-envoy-";
const ENVOY_INTERNAL: &str = "x-envoy-internal";

/// What the glue does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Let the request continue upstream.
    Continue(Decision),
    /// A local reply was sent; the stream is over.
    Replied(Decision),
    /// Pause until `issuer`'s keys are fetched, then call [`decide`] again.
    WaitForKeys { issuer: usize, why: KeyWait },
}

/// Decides the request and acts on it. `may_wait` is false once the request has waited for
/// keys already: a second miss is decided at once.
pub fn decide(
    host: &dyn Host,
    policy: &CompiledIdentity,
    verifier: &Verifier,
    request: &CapturedRequest,
    may_wait: bool,
) -> Result<Step, HostError> {
    let now = host.now();
    let outcome = authenticate(policy, verifier, &request.facts(), now);
    let (rule, result) = match outcome {
        Outcome::WaitForKeys { issuer, why, .. } if may_wait => return Ok(Step::WaitForKeys { issuer, why }),
        Outcome::WaitForKeys { rule, why: KeyWait::NotLoaded, .. } => {
            // The keys could not be fetched: a runtime fault, decided by the failure mode.
            return fault(host, policy, request, Outcome::keys_unavailable(&rule, KeyWait::NotLoaded));
        }
        Outcome::WaitForKeys { rule, why: KeyWait::UnknownKid, .. } => {
            let denial = Outcome::keys_unavailable(&rule, KeyWait::UnknownKid);
            (rule, Err(denial))
        }
        Outcome::Deny(denial) => (denial.rule.clone(), Err(denial)),
        Outcome::Allow { rule, principal } => match check_session(host, policy, &rule, &principal, now)? {
            SessionCheck::Bound => (rule, Ok(principal)),
            SessionCheck::Refused(denial) => (rule, Err(denial)),
            SessionCheck::Fault(denial) => return fault(host, policy, request, denial),
        },
    };

    match result {
        Ok(principal) => {
            let written = principal.write(host)?;
            forward_principal(host, policy, &principal)?;
            strip_credentials(host, policy, request)?;
            let decision = Decision { verdict: Verdict::Allow, rule, reason: "authenticated", shadowed: false };
            record(host, policy, &decision, Some(&written))?;
            Ok(Step::Continue(decision))
        }
        Err(denial) => deny(host, policy, request, denial),
    }
}

enum SessionCheck {
    /// No session, or the session is this agent's (now or from before).
    Bound,
    /// The session belongs to another agent.
    Refused(Denial),
    /// The bindings could not be read or written: a runtime fault.
    Fault(Denial),
}

/// Binds the request's session to its verified agent, in shared data.
fn check_session(
    host: &dyn Host,
    policy: &CompiledIdentity,
    rule: &str,
    principal: &Principal,
    now: std::time::SystemTime,
) -> Result<SessionCheck, HostError> {
    let (Some(session_policy), Some(id)) = (&policy.session, &principal.session) else {
        return Ok(SessionCheck::Bound);
    };
    let tenant = principal.tenant.as_deref().unwrap_or("");
    Ok(match session::bind(host, session_policy, tenant, id, &principal.agent, now) {
        Ok(Binding::OwnedByAnotherAgent) => {
            let mut denial =
                Denial::forbidden("session_agent_mismatch", "this session belongs to another agent").on_route(rule);
            // The agent is verified; the session it claimed is not its own.
            denial.verified = Some(Box::new(Principal { session: None, ..principal.clone() }));
            SessionCheck::Refused(denial)
        }
        Ok(Binding::TooManySessions) => SessionCheck::Refused(
            Denial::over_limit(
                "too_many_sessions",
                format!(
                    "this agent already holds {} live sessions: reuse one, or open a new one once one has been idle for {}s",
                    session_policy.max_per_agent,
                    session_policy.idle_timeout.as_secs()
                ),
            )
            .on_route(rule),
        ),
        Ok(Binding::StoreFull) => SessionCheck::Refused(
            Denial::unavailable("session_store_full", "no room for a new session now: reuse an open one, or retry later")
                .on_route(rule),
        ),
        Ok(Binding::Opened | Binding::Continued) => SessionCheck::Bound,
        Err(_) => SessionCheck::Fault(
            Denial::unavailable("session_store_unavailable", "session bindings could not be checked").on_route(rule),
        ),
    })
}

/// A request that could not be decided because of a runtime fault.
fn fault(
    host: &dyn Host,
    policy: &CompiledIdentity,
    request: &CapturedRequest,
    denial: Denial,
) -> Result<Step, HostError> {
    let decision = policy.failure_mode.apply(host, metrics::FAILURE_MODE, denial.reason);
    if decision.verdict == Verdict::Deny {
        // Refused with the fault's status and reason, under the failure mode's rule.
        return deny(host, policy, request, denial.on_route(&decision.rule));
    }
    strip_credentials(host, policy, request)?;
    record(host, policy, &decision, None)?;
    Ok(Step::Continue(decision))
}

fn deny(
    host: &dyn Host,
    policy: &CompiledIdentity,
    request: &CapturedRequest,
    denial: Denial,
) -> Result<Step, HostError> {
    let decision = Decision {
        verdict: Verdict::Deny,
        rule: denial.rule.clone(),
        reason: denial.reason,
        shadowed: policy.mode == Mode::Shadow,
    };
    // Whatever was verified before the refusal goes to the audit log with the decision.
    let verified = denial.verified.as_ref().map(|verified| verified.write(host)).transpose()?;
    record(host, policy, &decision, verified.as_ref())?;
    if decision.shadowed {
        strip_credentials(host, policy, request)?;
        return Ok(Step::Continue(decision));
    }
    let reply = denial::reply(&denial, &request.request_id);
    let headers: Vec<(&str, &str)> = reply.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host.send_local_reply(reply.status, &headers, &reply.body)?;
    Ok(Step::Replied(decision))
}

/// Writes the decision, and the principal verified (the record `Principal::write` wrote), into
/// the audit record, and counts it.
fn record(
    host: &dyn Host,
    policy: &CompiledIdentity,
    decision: &Decision,
    principal: Option<&Map<String, Value>>,
) -> Result<(), HostError> {
    let format = policy.audit_format;
    host.increment(&metrics::for_decision(decision), 1)?;
    let mut identity = Record::new();
    identity.decision(decision);
    let identity = identity.into_fields();
    match principal {
        Some(principal) => {
            audit::write(host, format, &[(Section::Principal, principal), (Section::Identity, &identity)])
        }
        None => audit::write(host, format, &[(Section::Identity, &identity)]),
    }
}

fn forward_principal(
    host: &dyn Host,
    policy: &CompiledIdentity,
    principal: &crate::principal::Principal,
) -> Result<(), HostError> {
    let auth_method = principal.auth_method();
    let pairs = [
        (&policy.forward.agent, Some(principal.agent.as_str())),
        (&policy.forward.user, principal.user.as_deref()),
        (&policy.forward.tenant, principal.tenant.as_deref()),
        (&policy.forward.session, principal.session.as_deref()),
        (&policy.forward.auth_method, Some(auth_method.as_str())),
    ];
    for (header, value) in pairs {
        if let (Some(header), Some(value)) = (header, value) {
            host.set_request_header(header, Some(value))?;
        }
    }
    Ok(())
}

/// Agents' credentials stay at the gateway unless the policy says otherwise.
fn strip_credentials(host: &dyn Host, policy: &CompiledIdentity, request: &CapturedRequest) -> Result<(), HostError> {
    if policy.forward_credentials {
        return Ok(());
    }
    let user = policy.user_token.as_ref().map(|u| u.header.as_str());
    let api_key = policy.api_keys.as_ref().map(|k| k.header.as_str());
    let route_keys = policy.routes.iter().flat_map(|r| r.api_key_headers.iter().map(String::as_str));
    let headers = [Some(policy.agent_token.header.as_str()), user, api_key].into_iter().flatten().chain(route_keys);
    for header in headers {
        if request.has_header(header) {
            host.set_request_header(header, None)?;
        }
    }
    if let Some(param) = &policy.agent_token.query_param {
        if let Some(path) = query::without(&request.path, param) {
            host.set_request_header(":path", Some(&path))?;
        }
    }
    Ok(())
}
