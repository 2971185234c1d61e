//! HTTP context: each callback goes to the request's flow (`warden_policy::budget::flow`),
//! which decides everything and says what Envoy does next.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;
use warden_policy::budget::flow::BudgetFlow;
use warden_policy::budget::vm::BudgetVm;
use warden_proxy_host::{action, ProxyHost};

pub struct BudgetHttp {
    flow: BudgetFlow,
}

impl BudgetHttp {
    pub fn new(vm: Option<Rc<BudgetVm>>) -> Self {
        BudgetHttp { flow: BudgetFlow::new(Rc::new(ProxyHost), vm) }
    }
}

impl Context for BudgetHttp {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.flow.on_grpc_answer(token_id, status_code, response_size);
    }
}

impl HttpContext for BudgetHttp {
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

    fn on_log(&mut self) {
        self.flow.on_log();
    }
}
