//! HTTP context: each callback goes to the request's flow (`warden_policy::redaction::flow`),
//! which decides everything and says what Envoy does next.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::flow::RedactionFlow;
use warden_proxy_host::{action, ProxyHost};

pub struct RedactionHttp {
    flow: RedactionFlow,
}

impl RedactionHttp {
    pub fn new(policy: Option<Rc<CompiledRedaction>>, hold: bool) -> Self {
        Self { flow: RedactionFlow::new(Rc::new(ProxyHost), policy, hold) }
    }
}

impl Context for RedactionHttp {}

impl HttpContext for RedactionHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_request_headers(end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.flow.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.flow.on_response_headers())
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.flow.on_response_body(body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.flow.on_response_trailers())
    }
}
