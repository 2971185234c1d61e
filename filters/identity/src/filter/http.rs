//! HTTP context: capture the request, strip what clients must not set, decide, and pause when
//! the keys needed are still being fetched.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;
use warden_policy::host::{Host, HostError};
use warden_policy::identity::request::{decide, strip_untrusted_headers, CapturedRequest, Step};
use warden_policy::identity::vm::{refuse_after_host_fault, IdentityVm, Waiting};
use warden_proxy_host::ProxyHost;

pub struct IdentityHttp {
    context_id: u32,
    vm: Rc<RefCell<IdentityVm>>,
    traced: bool,
}

impl IdentityHttp {
    pub fn new(context_id: u32, vm: Rc<RefCell<IdentityVm>>) -> Self {
        Self { context_id, vm, traced: false }
    }

    /// Once the response has ended (every later filter has written its part of the record):
    /// the span attributes, when the policy asks for them.
    fn trace(&mut self) {
        if std::mem::replace(&mut self.traced, true) {
            return;
        }
        let Some(trace) = self.vm.borrow().trace.clone() else { return };
        if let Err(e) = trace.write(&ProxyHost) {
            log::warn!("warden identity: cannot set the span attributes: {e}");
        }
    }

    fn on_request(&mut self) -> Result<Action, HostError> {
        let host = ProxyHost;
        let policy = Rc::clone(&self.vm.borrow().policy);
        let mut request = CapturedRequest::capture(&host, &policy)?;
        strip_untrusted_headers(&host, &policy, &mut request)?;
        let step = decide(&host, &policy, &self.vm.borrow().verifier(), &request, true)?;
        // Both kinds of wait (keys not loaded, unknown kid) are handled alike: `decide` with
        // `may_wait = false` turns each into its own outcome.
        let Step::WaitForKeys { issuer, .. } = step else {
            return Ok(action_for(&step));
        };
        let now = host.now();
        let mut state = self.vm.borrow_mut();
        // Wait only where the root is fetching or will fetch on its next tick.
        if state.keys.want_fetch(issuer, now) {
            let deadline = now + policy.key_wait;
            state.waiting.push(Waiting { context_id: self.context_id, request, issuer, deadline });
            return Ok(Action::Pause);
        }
        drop(state);
        let step = decide(&host, &policy, &self.vm.borrow().verifier(), &request, false)?;
        Ok(action_for(&step))
    }

    /// The body of a request still waiting for keys is held too. Without Envoy's
    /// `allow_on_headers_stop_iteration` no body callback comes while the headers are paused;
    /// with it (an operator may set it on every Warden filter) one would, and the SDK's default
    /// `Continue` would let the request go before it is decided.
    fn body_action(&self) -> Action {
        let id = self.context_id;
        if self.vm.borrow().waiting.iter().any(|w| w.context_id == id) {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

impl Context for IdentityHttp {
    fn on_done(&mut self) -> bool {
        // A stream reset while waiting must not be resumed later.
        let id = self.context_id;
        self.vm.borrow_mut().waiting.retain(|w| w.context_id != id);
        true
    }
}

impl HttpContext for IdentityHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.on_request() {
            Ok(action) => action,
            Err(e) => {
                refuse_after_host_fault(&ProxyHost, &e);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.body_action()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.body_action()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.trace();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.trace();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.trace();
        Action::Continue
    }
}

fn action_for(step: &Step) -> Action {
    match step {
        Step::Continue(_) => Action::Continue,
        Step::Replied(_) | Step::WaitForKeys { .. } => Action::Pause,
    }
}
