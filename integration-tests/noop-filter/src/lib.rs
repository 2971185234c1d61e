//! A proxy-wasm HTTP filter that lets every request through untouched. `make bench` runs it
//! beside the Warden filters to show what the Wasm runtime itself costs per request, so the
//! filters' own cost can be read off the difference. With the plugin configuration
//! `buffer-bodies` it also holds each request and response body until it is complete and reads
//! it into the VM, as a filter that inspects bodies must: the floor for such filters.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};

#[derive(Default)]
struct NoopRoot {
    buffer_bodies: bool,
}

struct NoopHttp {
    buffer_bodies: bool,
}

impl Context for NoopRoot {}
impl RootContext for NoopRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size).ok().flatten().unwrap_or_default();
        self.buffer_bodies = size > 0 && config == b"buffer-bodies";
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp { buffer_bodies: self.buffer_bodies }))
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

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.buffer_bodies {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok());
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.buffer_bodies {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok());
        Action::Continue
    }
}

// The SDK's entry point is an exported `#[no_mangle]` function; it is the only unsafe item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::<super::NoopRoot>::default());
    }}
}
