//! A test-only filter that uses the host features the Warden filters do not (yet), so the
//! wasmtime host's own tests can check them: on a request with `x-probe: grpc` it makes a gRPC
//! callout, with `x-probe: http` an HTTP callout, pauses, and records the answer as the property
//! `probe.result` before resuming (or replying 503 on failure).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType, MetricType};
use std::time::Duration;

struct ProbeRoot;
struct Probe;

impl Context for ProbeRoot {}
impl RootContext for ProbeRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Probe {
    fn finish(&self, result: &str, ok: bool) {
        let _ = hostcalls::set_property(vec!["probe.result"], Some(result.as_bytes()));
        log::info!("probe: {result}");
        if ok {
            let _ = hostcalls::resume_http_request();
        } else {
            let _ = hostcalls::send_http_response(503, vec![("content-type", "text/plain")], Some(result.as_bytes()));
        }
    }
}

impl Context for Probe {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        if status_code != 0 {
            return self.finish(&format!("grpc failed: {status_code}"), false);
        }
        let body =
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size).ok().flatten().unwrap_or_default();
        self.finish(&format!("grpc ok: {}", String::from_utf8_lossy(&body)), true);
    }

    fn on_http_call_response(&mut self, _token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        match hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten() {
            None => self.finish("http failed", false),
            Some(status) => {
                let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                self.finish(&format!("http {status}: {}", String::from_utf8_lossy(&body)), true);
            }
        }
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.requests") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let timeout = Duration::from_millis(250);
        let sent = match hostcalls::get_map_value(MapType::HttpRequestHeaders, "x-probe").ok().flatten().as_deref() {
            Some("grpc") => hostcalls::dispatch_grpc_call(
                "probe-grpc",
                "probe.v1.Probe",
                "Check",
                vec![("x-probe-md", b"1".as_slice())],
                Some(b"ping"),
                timeout,
            )
            .is_ok(),
            Some("http") => hostcalls::dispatch_http_call(
                "probe-http",
                vec![(":method", "GET"), (":path", "/probe"), (":authority", "probe")],
                None,
                vec![],
                timeout,
            )
            .is_ok(),
            _ => return Action::Continue,
        };
        if sent {
            Action::Pause
        } else {
            self.finish("dispatch failed", false);
            Action::Pause
        }
    }
}

// The SDK's entry point is an exported `#[no_mangle]` function; it is the only unsafe item.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| Box::new(super::ProbeRoot));
    }}
}
