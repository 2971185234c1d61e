//! What the host keeps: per VM, per stream, and shared by every VM of one [`HostEnv`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const STATUS_OK: i32 = 0;
pub const STATUS_NOT_FOUND: i32 = 1;
pub const STATUS_BAD_ARGUMENT: i32 = 2;
pub const STATUS_CAS_MISMATCH: i32 = 8;
pub const STATUS_UNIMPLEMENTED: i32 = 12;

/// What several VMs share, as Envoy's workers do: shared data, the clock and metrics.
#[derive(Clone)]
pub struct HostEnv {
    inner: Arc<EnvInner>,
}

struct EnvInner {
    shared: Mutex<SharedData>,
    clock_ns: AtomicU64,
    metrics: Mutex<BTreeMap<String, i64>>,
}

#[derive(Default)]
struct SharedData {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Default for HostEnv {
    fn default() -> Self {
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        HostEnv {
            inner: Arc::new(EnvInner {
                shared: Mutex::new(SharedData::default()),
                clock_ns: AtomicU64::new(start),
                metrics: Mutex::new(BTreeMap::new()),
            }),
        }
    }
}

impl HostEnv {
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.inner.clock_ns.load(Ordering::SeqCst))
    }

    pub fn now_nanos(&self) -> u64 {
        self.inner.clock_ns.load(Ordering::SeqCst)
    }

    /// Moves the fake clock forward; timers fire only when a VM is ticked.
    pub fn advance(&self, by: Duration) {
        self.inner.clock_ns.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.shared.lock().ok()?.entries.get(key).cloned()
    }

    pub fn shared_keys(&self) -> Vec<String> {
        self.inner.shared.lock().map(|s| s.entries.keys().cloned().collect()).unwrap_or_default()
    }

    /// Envoy's semantics: a CAS token is checked only when the key exists and the token is non-zero.
    pub(crate) fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> i32 {
        let Ok(mut shared) = self.inner.shared.lock() else {
            return STATUS_BAD_ARGUMENT;
        };
        if let Some((_, current)) = shared.entries.get(key) {
            if cas != 0 && cas != *current {
                return STATUS_CAS_MISMATCH;
            }
        }
        shared.next_cas += 1;
        let next = shared.next_cas;
        shared.entries.insert(key.to_string(), (value.to_vec(), next));
        STATUS_OK
    }

    /// A metric's value summed over every VM; 0 when never defined.
    pub fn metric(&self, name: &str) -> i64 {
        self.inner.metrics.lock().ok().and_then(|m| m.get(name).copied()).unwrap_or(0)
    }

    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.inner.metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub(crate) fn update_metric(&self, name: &str, update: impl FnOnce(&mut i64)) {
        if let Ok(mut metrics) = self.inner.metrics.lock() {
            update(metrics.entry(name.to_string()).or_insert(0));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP stream as the filter sees it.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    pub request_headers: Vec<(String, Vec<u8>)>,
    /// The request body the filter holds buffered.
    pub request_body: Vec<u8>,
    /// What the filter let go upstream.
    pub sent_request_body: Vec<u8>,
    pub request_trailers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub response_body: Vec<u8>,
    /// What the filter let go downstream.
    pub sent_response_body: Vec<u8>,
    pub response_trailers: Vec<(String, Vec<u8>)>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub local_reply: Option<LocalReply>,
    /// Times the filter resumed the request / response (`proxy_continue_stream`).
    pub resumed_request: usize,
    pub resumed_response: usize,
    /// Times the filter asked Envoy to choose the route again.
    pub route_cache_cleared: usize,
}

#[derive(Debug, Clone)]
pub struct HttpCall {
    pub token: u32,
    /// The context that dispatched it, which gets the answer.
    pub context_id: u32,
    pub upstream: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

impl HttpCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct GrpcCall {
    pub token: u32,
    pub context_id: u32,
    pub upstream: String,
    pub service: String,
    pub method: String,
    pub initial_metadata: Vec<(String, String)>,
    pub message: Vec<u8>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: u32,
    pub message: String,
}

/// A callout answer being delivered, visible to the filter during the callback.
#[derive(Default)]
pub(crate) struct CalloutAnswer {
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, Vec<u8>)>,
}

pub struct VmState {
    pub(crate) env: HostEnv,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) root_id: u32,
    pub(crate) effective: u32,
    pub(crate) streams: HashMap<u32, Stream>,
    pub(crate) root_properties: BTreeMap<String, Vec<u8>>,
    pub(crate) tick_period: Option<Duration>,
    pub(crate) http_calls: Vec<HttpCall>,
    pub(crate) grpc_calls: Vec<GrpcCall>,
    pub(crate) next_token: u32,
    pub(crate) answer: Option<CalloutAnswer>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) metric_names: Vec<String>,
    pub(crate) stdout: Vec<u8>,
    /// Clusters the host does not know: callouts to them fail to dispatch.
    pub(crate) unknown_clusters: Vec<String>,
    /// Calls from the module into the host (proxy-wasm and WASI), counted by a store hook.
    pub(crate) host_calls: u64,
    /// Properties the plugin declared (`declare_property`): name → read-only.
    pub(crate) declared: BTreeMap<String, bool>,
}

impl VmState {
    pub(crate) fn new(env: HostEnv, vm_config: Vec<u8>, plugin_config: Vec<u8>) -> Self {
        VmState {
            env,
            vm_config,
            plugin_config,
            root_id: 1,
            effective: 1,
            streams: HashMap::new(),
            root_properties: BTreeMap::new(),
            tick_period: None,
            http_calls: Vec::new(),
            grpc_calls: Vec::new(),
            next_token: 1,
            answer: None,
            logs: Vec::new(),
            metric_names: Vec::new(),
            stdout: Vec::new(),
            unknown_clusters: Vec::new(),
            host_calls: 0,
            declared: BTreeMap::new(),
        }
    }

    pub(crate) fn stream(&mut self) -> Option<&mut Stream> {
        let id = self.effective;
        self.streams.get_mut(&id)
    }
}
