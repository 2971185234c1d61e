//! `Host` over proxy-wasm hostcalls: every status the SDK returns becomes a `HostError`. (Some
//! SDK helpers still panic on a status Envoy is not expected to give, e.g. `set_map_value`;
//! `set_property`, which Envoy does refuse, calls the ABI directly.)

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use warden_policy::attributes;
use warden_policy::audit::{self, AuditFormat};
use warden_policy::host::{Host, HostError};

thread_local! {
    /// Metric ids by name, defined on first use; names come from a fixed set, so this is bounded.
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn failed(call: &'static str, status: Status) -> HostError {
    match status {
        Status::CasMismatch => HostError::CasMismatch,
        other => HostError::Failed { call, status: format!("{other:?}") },
    }
}

// The direct ABI imports: allowed here only, where each is wrapped with its status mapped. The
// SDK's helpers for these panic on any status but `Ok`, which would stop the VM (every filter
// sharing it) on a status Envoy does return.
#[allow(unsafe_code)]
#[link(wasm_import_module = "env")]
extern "C" {
    /// The ABI call itself, returning the raw status (see `Host::set_property`).
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
}

/// The first `size` bytes of a buffer (empty when there is none).
fn buffer(kind: BufferType, size: usize) -> Result<Vec<u8>, HostError> {
    hostcalls::get_buffer(kind, 0, size).map(Option::unwrap_or_default).map_err(|s| failed("get_buffer", s))
}

/// Replaces the first `size` bytes of a buffer with `bytes`.
fn set_buffer(kind: BufferType, size: usize, bytes: &[u8]) -> Result<(), HostError> {
    hostcalls::set_buffer(kind, 0, size, bytes).map_err(|s| failed("set_buffer", s))
}

/// The host as seen from whichever context is current (or made effective by the root).
pub struct ProxyHost;

impl ProxyHost {
    fn metric_id(metric: &str, kind: MetricType) -> Result<u32, HostError> {
        if let Some(id) = METRICS.with(|m| m.borrow().get(metric).copied()) {
            return Ok(id);
        }
        let id = hostcalls::define_metric(kind, metric).map_err(|s| failed("define_metric", s))?;
        METRICS.with(|m| m.borrow_mut().insert(metric.to_string(), id));
        Ok(id)
    }
}

/// The plugin configuration (the policy document), or why there is none,
/// in words for the log line that explains Envoy's refusal.
pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, String> {
    match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
        Ok(Some(bytes)) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err("no plugin configuration: refusing to start without a policy".to_string()),
        Err(status) => Err(format!("cannot read the plugin configuration: {status:?}")),
    }
}

/// Every filter's `on_configure`: reads the policy, hands it to `configure`, and declares the
/// records the filter writes (`(key, read-only)`): the principal as JSON text, the audit record
/// in the policy's `auditFormat`, which `configure` returns. A refusal is logged with why, and
/// Envoy refuses the configuration.
pub fn on_configure(
    filter: &str,
    size: usize,
    records: &[(&str, bool)],
    configure: impl FnOnce(&[u8]) -> Result<AuditFormat, String>,
) -> bool {
    let config = match plugin_configuration(size) {
        Ok(bytes) => bytes,
        Err(message) => {
            log::error!("warden {filter}: {message}");
            return false;
        }
    };
    let format = match configure(&config) {
        Ok(format) => format,
        Err(message) => {
            log::error!("warden {filter}: invalid policy: {message}");
            return false;
        }
    };
    for (key, readonly) in records {
        let format = if *key == attributes::PRINCIPAL { AuditFormat::Json } else { format };
        match audit::declare(&ProxyHost, key, *readonly, format) {
            Ok(()) => {}
            // Undeclared, the principal would not be read-only: no later filter may replace it.
            Err(e) if *readonly => {
                log::error!("warden {filter}: cannot declare {key} read-only: {e}");
                return false;
            }
            // Undeclared, the record still reaches the log as written; a typed log cannot print
            // it: worth a line, not a refusal.
            Err(e) => log::warn!("warden {filter}: cannot declare {key}: {e}"),
        }
    }
    true
}

/// The `root_id` of the plugin whose root context is being created (empty when it has none;
/// a fault reading it becomes a value that names no filter, so the plugin is refused).
pub fn plugin_root_id() -> String {
    match ProxyHost.property(&["plugin_root_id"]) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => String::new(),
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// A plugin whose `root_id` names no filter of its module: it refuses its configuration,
/// naming the ones the module runs, so Envoy refuses the listener instead of running a filter
/// that does nothing.
pub struct UnknownRoot {
    /// The module, as its log lines name it (`warden`, `warden router`).
    pub module: &'static str,
    pub root_id: String,
    pub valid: &'static [&'static str],
}

impl proxy_wasm::traits::Context for UnknownRoot {}

impl proxy_wasm::traits::RootContext for UnknownRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        log::error!("{}: unknown root_id {:?}: this module runs {}", self.module, self.root_id, self.valid.join(", "));
        false
    }

    fn get_type(&self) -> Option<proxy_wasm::types::ContextType> {
        Some(proxy_wasm::types::ContextType::HttpContext)
    }
}

/// Defines a counter now (at configure time), so that no request pays for defining it.
pub fn define_counter(metric: &str) -> Result<(), HostError> {
    ProxyHost::metric_id(metric, MetricType::Counter).map(|_| ())
}

impl Host for ProxyHost {
    fn now(&self) -> SystemTime {
        hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now())
    }

    fn request_headers(&self) -> Result<Vec<(String, String)>, HostError> {
        let pairs = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).map_err(|s| failed("get_map", s))?;
        // Header values are bytes on the wire; a non-UTF-8 value is kept, lossily, so that a
        // duplicate or malformed credential is still seen rather than silently dropped.
        Ok(pairs.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect())
    }

    #[allow(unsafe_code)]
    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        // Not the SDK's `hostcalls::set_map_value`: Envoy answers `BadArgument` where the request's
        // headers can no longer be changed (its response phase), and the SDK would panic.
        let map = MapType::HttpRequestHeaders as u32;
        // SAFETY: the pointers and lengths describe live slices for the duration of the call;
        // the host copies what it keeps.
        let status = unsafe {
            match value {
                Some(v) => proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
                None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
            }
        };
        match status {
            0 => Ok(()),
            other => Err(HostError::Failed { call: "set_map_value", status: format!("status {other}") }),
        }
    }

    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        buffer(BufferType::HttpRequestBody, size)
    }

    fn set_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        set_buffer(BufferType::HttpRequestBody, size, body)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(|s| failed("resume_http_request", s))
    }

    fn enter_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id).map_err(|s| failed("set_effective_context", s))
    }

    fn response_header_values(&self, name: &str) -> Result<Vec<String>, HostError> {
        let pairs = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).map_err(|s| failed("get_map", s))?;
        Ok(pairs
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            .collect())
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value).map_err(|s| failed("set_map_value", s))
    }

    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        buffer(BufferType::HttpResponseBody, size)
    }

    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError> {
        set_buffer(BufferType::HttpResponseBody, size, body)
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(|s| failed("get_property", s))
    }

    #[allow(unsafe_code)]
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError> {
        // Not the SDK's `hostcalls::set_property`: it panics on any status but `Ok`, and Envoy
        // answers `BadArgument` to a second write of a read-only property (the principal) and
        // `NotFound` where there is no stream.
        let path = path.join("\0");
        // SAFETY: both pointers and lengths describe live slices for the duration of the call;
        // the host copies what it keeps.
        let status = unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
        match status {
            0 => Ok(()),
            other => Err(HostError::Failed { call: "set_property", status: format!("status {other}") }),
        }
    }

    fn declare_property(&self, arguments: &[u8]) -> Result<(), HostError> {
        hostcalls::call_foreign_function("declare_property", Some(arguments))
            .map(|_| ())
            .map_err(|s| failed("call_foreign_function(declare_property)", s))
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(|s| failed("get_shared_data", s))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|s| failed("set_shared_data", s))
    }

    fn increment(&self, metric: &str, by: i64) -> Result<(), HostError> {
        let id = Self::metric_id(metric, MetricType::Counter)?;
        hostcalls::increment_metric(id, by).map_err(|s| failed("increment_metric", s))
    }

    fn set_gauge(&self, metric: &str, value: u64) -> Result<(), HostError> {
        let id = Self::metric_id(metric, MetricType::Gauge)?;
        hostcalls::record_metric(id, value).map_err(|s| failed("record_metric", s))
    }

    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), None, vec![], timeout)
            .map_err(|s| failed("dispatch_http_call", s))
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout)
            .map_err(|s| failed("dispatch_grpc_call", s))
    }

    fn grpc_response(&self, size: usize) -> Result<Vec<u8>, HostError> {
        buffer(BufferType::GrpcReceiveBuffer, size)
    }

    fn http_call_answer(&self, size: usize) -> Result<(Option<u16>, Vec<u8>), HostError> {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .map_err(|s| failed("get_map_value", s))?
            .and_then(|v| v.parse::<u16>().ok());
        Ok((status, buffer(BufferType::HttpCallResponseBody, size)?))
    }

    fn clear_route_cache(&self) -> Result<(), HostError> {
        // Envoy ≥ 1.33 no longer clears the route cache when a Wasm filter changes a header.
        hostcalls::call_foreign_function("clear_route_cache", None)
            .map(|_| ())
            .map_err(|s| failed("call_foreign_function(clear_route_cache)", s))
    }

    fn send_local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
        hostcalls::send_http_response(status, headers.to_vec(), Some(body)).map_err(|s| failed("send_http_response", s))
    }
}

/// Maps a flow's action to the SDK's.
pub fn action(action: warden_policy::host::Action) -> proxy_wasm::types::Action {
    match action {
        warden_policy::host::Action::Continue => proxy_wasm::types::Action::Continue,
        warden_policy::host::Action::Pause => proxy_wasm::types::Action::Pause,
    }
}
