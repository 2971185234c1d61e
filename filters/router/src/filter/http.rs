//! HTTP contexts: each callback goes to the request's flow (`warden_policy::router::flow`) or
//! the attempt's (`warden_policy::router::attempt`), which say what Envoy does next.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use warden_policy::router::attempt::AttemptFlow;
use warden_policy::router::flow::RouteFlow;
use warden_policy::router::vm::RouterVm;
use warden_proxy_host::{action, ProxyHost};

pub struct RouterHttp {
    flow: RouteFlow,
}

impl RouterHttp {
    pub fn new(vm: Option<Rc<RouterVm>>) -> Self {
        RouterHttp { flow: RouteFlow::new(Rc::new(ProxyHost), vm) }
    }
}

impl Context for RouterHttp {}

impl HttpContext for RouterHttp {
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
}

pub struct AttemptHttp {
    flow: AttemptFlow,
}

impl AttemptHttp {
    pub fn new(vm: Option<Rc<RouterVm>>) -> Self {
        AttemptHttp { flow: AttemptFlow::new(Rc::new(ProxyHost), vm) }
    }
}

impl Context for AttemptHttp {}

impl HttpContext for AttemptHttp {
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
