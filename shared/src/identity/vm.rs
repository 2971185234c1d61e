//! What the identity filter's root and HTTP contexts of one VM share, and the root's work on
//! it: key-set fetches, their answers, and the requests that waited for keys. The filter's glue
//! only passes the root's callbacks in.

use super::compile::CompiledIdentity;
use super::metrics;
use super::remote_keys::{FetchRequest, RemoteKeys};
use super::request::{decide, CapturedRequest, Step};
use super::token_cache::{TokenCache, Verifier};
use crate::host::{Host, HostError};
use crate::trace::TraceAttributes;
use log::{error, info, warn};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::SystemTime;

/// A request paused until its issuer's keys arrive.
pub struct Waiting {
    pub context_id: u32,
    pub request: CapturedRequest,
    pub issuer: usize,
    pub deadline: SystemTime,
}

/// One VM's identity state: the policy, the keys and verified tokens, fetches out, waiters.
pub struct IdentityVm {
    pub policy: Rc<CompiledIdentity>,
    pub keys: RemoteKeys,
    pub cache: TokenCache,
    pub callouts: HashMap<u32, usize>,
    pub waiting: Vec<Waiting>,
    /// The request's span attributes, when the policy asks for them (`traceAttributes`).
    pub trace: Option<Rc<TraceAttributes>>,
}

impl IdentityVm {
    pub fn new(policy: CompiledIdentity) -> IdentityVm {
        IdentityVm {
            keys: RemoteKeys::new(&policy),
            cache: TokenCache::new(policy.verified_token_cache),
            policy: Rc::new(policy),
            callouts: HashMap::new(),
            waiting: Vec::new(),
            trace: None,
        }
    }

    pub fn verifier(&self) -> Verifier<'_> {
        Verifier { keys: &self.keys, cache: &self.cache }
    }

    /// Sends a key-set fetch as an HTTP callout; a fetch that cannot be sent counts as failed.
    fn dispatch(&mut self, host: &dyn Host, fetch: FetchRequest, now: SystemTime) -> bool {
        let headers: Vec<(&str, &str)> = fetch.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match host.http_call(&fetch.cluster, &headers, fetch.timeout) {
            Ok(token) => {
                self.callouts.insert(token, fetch.issuer);
                true
            }
            Err(error) => {
                warn!("warden identity: cannot fetch keys from cluster {:?}: {error}", fetch.cluster);
                let _ = self.keys.complete(fetch.issuer, Err(()), now);
                let _ = host.increment(metrics::JWKS_FETCH_FAILURE, 1);
                false
            }
        }
    }

    /// Sends the fetches that are due; the issuers whose fetch could not even be sent.
    pub fn start_fetches(&mut self, host: &dyn Host, now: SystemTime) -> Vec<usize> {
        let mut unsent = Vec::new();
        for fetch in self.keys.due_fetches(now) {
            let issuer = fetch.issuer;
            if !self.dispatch(host, fetch, now) {
                unsent.push(issuer);
            }
        }
        unsent
    }

    /// A key-set callout answered (`status` is `None` when it failed or timed out inside the
    /// proxy): the keys are loaded, or the last good ones kept. The issuer it was for, when the
    /// callout was one of ours.
    pub fn on_key_answer(
        &mut self,
        host: &dyn Host,
        token: u32,
        status: Option<u16>,
        body: &[u8],
        now: SystemTime,
    ) -> Option<usize> {
        let issuer = self.callouts.remove(&token)?;
        match self.keys.complete(issuer, status.map(|code| (code, body)).ok_or(()), now) {
            Ok(count) => {
                // A key may have been withdrawn: tokens it signed must verify again.
                self.cache.clear();
                info!("warden identity: loaded {count} keys for issuer {:?}", self.policy.issuers[issuer].name);
                let _ = host.increment(metrics::JWKS_FETCH_SUCCESS, 1);
            }
            Err(e) => {
                warn!(
                    "warden identity: key fetch for issuer {:?} failed: {e}; keeping the last good keys",
                    self.policy.issuers[issuer].name
                );
                let _ = host.increment(metrics::JWKS_FETCH_FAILURE, 1);
            }
        }
        let _ = host.set_gauge(metrics::KEYS_LOADED, self.keys.loaded() as u64);
        Some(issuer)
    }
}

/// Decides the waiting requests that `release` selects, now that they can wait no longer, each
/// on its own stream: resumed when allowed, answered when refused.
pub fn release(host: &dyn Host, vm: &Rc<RefCell<IdentityVm>>, release: impl Fn(&Waiting) -> bool) {
    let ready: Vec<Waiting> = {
        let mut vm = vm.borrow_mut();
        let (ready, still) = vm.waiting.drain(..).partition(|w| release(w));
        vm.waiting = still;
        ready
    };
    for waiting in ready {
        // The stream may have been reset meanwhile: then there is nothing to resume.
        if host.enter_context(waiting.context_id).is_err() {
            continue;
        }
        let step = {
            let vm = vm.borrow();
            decide(host, &vm.policy, &vm.verifier(), &waiting.request, false)
        };
        match step {
            Ok(Step::Continue(_)) => {
                let _ = host.resume_request();
            }
            Ok(_) => {}
            Err(e) => refuse_after_host_fault(host, &e),
        }
    }
}

/// Refuses the current request after a host call failed: a request nobody could check is
/// never passed on.
pub fn refuse_after_host_fault(host: &dyn Host, fault: &HostError) {
    error!("warden identity: host call failed: {fault}");
    let body = crate::error_body::openai("identity check failed", "service_unavailable", "host_error", None, "-");
    let _ = host.send_local_reply(503, &[("content-type", "application/json")], body.as_bytes());
}
