//! The one seam between policy logic and the proxy.
//!
//! Filters implement [`Host`] over proxy-wasm hostcalls, mapping every host status to a
//! [`HostError`] rather than unwrapping it (an unwrapped `BadArgument` aborts the VM for every
//! request on that worker). Tests implement it in memory.

use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A compare-and-swap write lost a race: read again and retry.
    #[error("shared data was changed by another worker")]
    CasMismatch,
    #[error("host call {call} failed: {status}")]
    Failed { call: &'static str, status: String },
}

/// What a flow tells the proxy to do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Hold what arrived (headers, or the body buffered so far) until resumed or answered.
    Pause,
}

/// What a filter needs from the proxy. Every call acts on the current (effective) stream.
pub trait Host {
    fn now(&self) -> SystemTime;

    /// All request headers, in order, duplicates kept (two `Authorization` headers matter).
    fn request_headers(&self) -> Result<Vec<(String, String)>, HostError>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// The first `size` bytes of the request body held (all of it once buffered whole).
    fn request_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the first `size` bytes of the request body held with `body`.
    fn set_request_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;
    /// Lets a paused request go on (after a callout answered).
    fn resume_request(&self) -> Result<(), HostError>;
    /// Makes the stream `context_id` the one later calls act on (from a root callback); fails
    /// when that stream is gone.
    fn enter_context(&self, context_id: u32) -> Result<(), HostError>;

    /// Every value of a response header, in order (a header may come more than once).
    fn response_header_values(&self, name: &str) -> Result<Vec<String>, HostError>;
    fn set_response_header(&self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// The response body chunk (or the body buffered so far), its first `size` bytes.
    fn response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    fn set_response_body(&self, size: usize, body: &[u8]) -> Result<(), HostError>;

    /// A proxy property such as `["connection", "uri_san_peer_certificate"]`.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    fn set_property(&self, path: &[&str], value: &[u8]) -> Result<(), HostError>;
    /// Declares the type of a property this plugin writes (Envoy's `declare_property` foreign
    /// function; `arguments` is its serialized `DeclarePropertyArguments`).
    fn declare_property(&self, arguments: &[u8]) -> Result<(), HostError>;

    /// A shared-data value and its CAS token.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes shared data; `cas` must match the current token or [`HostError::CasMismatch`].
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;

    /// Adds to a counter, defining it on first use.
    fn increment(&self, metric: &str, by: i64) -> Result<(), HostError>;
    /// Sets a gauge, defining it on first use.
    fn set_gauge(&self, metric: &str, value: u64) -> Result<(), HostError>;

    /// Sends an HTTP request to an Envoy cluster; the answer comes to the calling context's
    /// callback with the returned token. Fails when the cluster is unknown.
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], timeout: Duration) -> Result<u32, HostError>;

    /// Sends a unary gRPC call to an Envoy cluster; the answer comes to the calling context with
    /// the returned token.
    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// The message of a gRPC answer just received, its first `size` bytes.
    fn grpc_response(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// The HTTP callout answer just received: its status (`None` when the callout failed or
    /// timed out inside the proxy) and the first `size` bytes of its body.
    fn http_call_answer(&self, size: usize) -> Result<(Option<u16>, Vec<u8>), HostError>;

    /// Makes Envoy choose the route again from the (changed) request headers. Only has an
    /// effect while the request headers are held.
    fn clear_route_cache(&self) -> Result<(), HostError>;

    /// Ends the stream with a reply generated here; the upstream is never called.
    fn send_local_reply(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError>;
}

/// The first value of a response header.
pub fn response_header(host: &dyn Host, name: &str) -> Result<Option<String>, HostError> {
    Ok(host.response_header_values(name)?.into_iter().next())
}
