//! HTTP context: each callback goes to the request's flow (`warden_policy::tool_acl::flow`),
//! which decides everything and says what Envoy does next.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use warden_policy::tool_acl::compile::CompiledToolAcl;
use warden_policy::tool_acl::flow::ToolAclFlow;
use warden_proxy_host::{action, ProxyHost};

pub struct ToolAclHttp {
    flow: ToolAclFlow,
}

impl ToolAclHttp {
    pub fn new(acl: Option<Rc<CompiledToolAcl>>, hold: bool) -> Self {
        Self { flow: ToolAclFlow::new(Rc::new(ProxyHost), acl, hold) }
    }
}

impl Context for ToolAclHttp {}

impl HttpContext for ToolAclHttp {
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
