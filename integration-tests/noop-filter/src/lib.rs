//! A proxy-wasm HTTP filter that lets every request through untouched. `make bench` runs it
//! beside the Warden filters to show what the Wasm runtime itself costs per request, so the
//! filters' own cost can be read off the difference.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

struct NoopRoot;
struct NoopHttp;

impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for NoopHttp {}
impl HttpContext for NoopHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

// The SDK's entry point is an exported `#[no_mangle]` function; it is the only unsafe item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(super::NoopRoot));
    }}
}
