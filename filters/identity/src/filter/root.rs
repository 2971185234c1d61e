//! Root context: configure once, fetch remote key sets, resume requests that waited for them.

use super::host::{refuse_after_host_fault, ProxyHost};
use super::http::IdentityHttp;
use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime};
use warden_policy::attributes;
use warden_policy::host::Host;
use warden_policy::identity::compile::CompiledIdentity;
use warden_policy::identity::metrics;
use warden_policy::identity::remote_keys::{FetchRequest, RemoteKeys};
use warden_policy::identity::request::{decide, CapturedRequest, Step};
use warden_policy::identity::token_cache::{TokenCache, Verifier};
use warden_policy::policy::{parse_document, AuditFormat};
use warden_proxy_host::on_configure;

/// How often the root wakes to start due fetches and release requests that waited too long.
const TICK: Duration = Duration::from_millis(100);

/// A request paused until its issuer's keys arrive.
pub struct Waiting {
    pub context_id: u32,
    pub request: CapturedRequest,
    pub issuer: usize,
    pub deadline: SystemTime,
}

/// What the root and the HTTP contexts of one VM share.
pub struct State {
    pub policy: Rc<CompiledIdentity>,
    pub keys: RemoteKeys,
    pub cache: TokenCache,
    pub callouts: HashMap<u32, usize>,
    pub waiting: Vec<Waiting>,
}

impl State {
    pub fn verifier(&self) -> Verifier<'_> {
        Verifier { keys: &self.keys, cache: &self.cache }
    }

    /// Sends a key-set fetch as an HTTP callout; a fetch that cannot be sent counts as failed.
    pub fn dispatch(&mut self, fetch: FetchRequest, now: SystemTime) -> bool {
        let headers: Vec<(&str, &str)> = fetch.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match ProxyHost.http_call(&fetch.cluster, &headers, fetch.timeout) {
            Ok(token) => {
                self.callouts.insert(token, fetch.issuer);
                true
            }
            Err(error) => {
                warn!("warden identity: cannot fetch keys from cluster {:?}: {error}", fetch.cluster);
                let _ = self.keys.complete(fetch.issuer, Err(()), now);
                let _ = ProxyHost.increment(metrics::JWKS_FETCH_FAILURE, 1);
                false
            }
        }
    }
}

#[derive(Default)]
pub struct IdentityRoot {
    state: Option<Rc<RefCell<State>>>,
}

impl IdentityRoot {
    fn configure(&mut self, config: &[u8]) -> Result<AuditFormat, String> {
        let document = parse_document(config).map_err(|e| e.to_string())?;
        let identity = document.identity.ok_or("identity: the policy has no identity section")?;
        let mut policy = CompiledIdentity::compile(&identity).map_err(|e| e.to_string())?;
        policy.audit_format = document.audit_format;
        let keys = RemoteKeys::new(&policy);
        if !keys.is_empty() {
            hostcalls::set_tick_period(TICK).map_err(|s| format!("cannot start the key refresh timer: {s:?}"))?;
        }
        info!(
            "warden identity: policy loaded with {} routes and {} issuers",
            policy.routes.len(),
            policy.issuers.len()
        );
        let cache = TokenCache::new(policy.verified_token_cache);
        self.state = Some(Rc::new(RefCell::new(State {
            policy: Rc::new(policy),
            keys,
            cache,
            callouts: HashMap::new(),
            waiting: Vec::new(),
        })));
        Ok(document.audit_format)
    }

    /// Decides the waiting requests that `release` selects, now that they can wait no longer.
    fn release(state: &Rc<RefCell<State>>, release: impl Fn(&Waiting) -> bool) {
        let (ready, policy) = {
            let mut s = state.borrow_mut();
            let (ready, still): (Vec<Waiting>, Vec<Waiting>) = s.waiting.drain(..).partition(|w| release(w));
            s.waiting = still;
            (ready, Rc::clone(&s.policy))
        };
        for waiting in ready {
            // The stream may have been reset meanwhile: then there is nothing to resume.
            if hostcalls::set_effective_context(waiting.context_id).is_err() {
                continue;
            }
            let step = {
                let s = state.borrow();
                decide(&ProxyHost, &policy, &s.verifier(), &waiting.request, false)
            };
            match step {
                Ok(Step::Continue(_)) => {
                    let _ = hostcalls::resume_http_request();
                }
                Ok(_) => {}
                Err(e) => refuse_after_host_fault(&e),
            }
        }
    }
}

impl Context for IdentityRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let now = ProxyHost.now();
        let issuer = {
            let mut s = state.borrow_mut();
            let Some(issuer) = s.callouts.remove(&token_id) else {
                return;
            };
            let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|v| v.parse::<u16>().ok());
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            // No `:status` means the callout failed or timed out inside Envoy.
            let result = status.map(|code| (code, body.as_slice())).ok_or(());
            match s.keys.complete(issuer, result, now) {
                Ok(count) => {
                    // A key may have been withdrawn: tokens it signed must verify again.
                    s.cache.clear();
                    info!("warden identity: loaded {count} keys for issuer {:?}", s.policy.issuers[issuer].name);
                    let _ = ProxyHost.increment(metrics::JWKS_FETCH_SUCCESS, 1);
                }
                Err(e) => {
                    warn!(
                        "warden identity: key fetch for issuer {:?} failed: {e}; keeping the last good keys",
                        s.policy.issuers[issuer].name
                    );
                    let _ = ProxyHost.increment(metrics::JWKS_FETCH_FAILURE, 1);
                }
            }
            let _ = ProxyHost.set_gauge(metrics::KEYS_LOADED, s.keys.loaded() as u64);
            issuer
        };
        Self::release(&state, |w| w.issuer == issuer);
    }
}

impl RootContext for IdentityRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        on_configure(
            "identity",
            plugin_configuration_size,
            &[(attributes::PRINCIPAL, true), (attributes::AUDIT, false)],
            |config| self.configure(config),
        )
    }

    fn on_tick(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let now = ProxyHost.now();
        let unsent: Vec<usize> = {
            let mut s = state.borrow_mut();
            let mut unsent = Vec::new();
            for fetch in s.keys.due_fetches(now) {
                let issuer = fetch.issuer;
                if !s.dispatch(fetch, now) {
                    unsent.push(issuer);
                }
            }
            unsent
        };
        // Requests waiting for a fetch that could not even be sent are decided now; the others
        // when their answer arrives or their `keyWait` runs out.
        Self::release(&state, |w| now >= w.deadline || unsent.contains(&w.issuer));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = self.state.clone()?;
        Some(Box::new(IdentityHttp::new(context_id, state)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
