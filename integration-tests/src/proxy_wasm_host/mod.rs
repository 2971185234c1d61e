//! A proxy-wasm host (ABI 0.2.1) on wasmtime, for driving a built filter without Envoy.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin, Action};
//! let plugin = Plugin::load(&warden_integration_tests::repo::filter_wasm("warden_identity"))?;
//! let env = HostEnv::default();
//! let mut vm = plugin.start(&env, b"identity: ...")?;
//! let stream = vm.new_stream()?;
//! let action = vm.request_headers(stream, &[(":path", "/v1/chat"), ("authorization", "Bearer ...")], true)?;
//! assert_eq!(action, Action::Pause);
//! let reply = vm.local_reply(stream).expect("a 401");
//! # Ok(()) }
//! ```
//!
//! Several VMs started on one [`HostEnv`] share shared data, the clock and metrics, as
//! Envoy's worker threads do.

mod abi;
mod memory;
mod state;

pub use state::{GrpcCall, HostEnv, HttpCall, LocalReply, LogLine, Stream};

use anyhow::{anyhow, bail, Context, Result};
use state::{CalloutAnswer, VmState};
use std::path::Path;
use std::time::Duration;
use wasmtime::{CallHook, Config, Engine, Instance, Linker, Module, Store};

/// What a callback told the host to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// A compiled filter module, ready to start VMs from.
pub struct Plugin {
    engine: Engine,
    module: Module,
}

impl Plugin {
    pub fn load(path: &Path) -> Result<Plugin> {
        let engine = Engine::new(&Config::new())?;
        let bytes =
            std::fs::read(path).with_context(|| format!("reading {} (run `make build` first)", path.display()))?;
        let module = Module::new(&engine, bytes)?;
        Ok(Plugin { engine, module })
    }

    /// Starts a VM and configures its root context with `plugin_config`.
    /// Fails, with the filter's log, when `proxy_on_configure` refuses the configuration.
    pub fn start(&self, env: &HostEnv, plugin_config: &[u8]) -> Result<Vm> {
        let mut vm = self.instantiate(env, "", plugin_config)?;
        if !vm.configure()? {
            bail!("the filter refused its configuration: {}", vm.log_text());
        }
        Ok(vm)
    }

    /// Starts a VM and returns it together with `proxy_on_configure`'s answer.
    pub fn start_unchecked(&self, env: &HostEnv, plugin_config: &[u8]) -> Result<(Vm, bool)> {
        self.start_as(env, "", plugin_config)
    }

    /// Starts a VM for a plugin with this `root_id` (Envoy's `plugin_root_id` property, which a
    /// module running several filters chooses by) and returns it with `proxy_on_configure`'s answer.
    pub fn start_as(&self, env: &HostEnv, root_id: &str, plugin_config: &[u8]) -> Result<(Vm, bool)> {
        let mut vm = self.instantiate(env, root_id, plugin_config)?;
        let accepted = vm.configure()?;
        Ok((vm, accepted))
    }

    fn instantiate(&self, env: &HostEnv, root_id: &str, plugin_config: &[u8]) -> Result<Vm> {
        let mut state = VmState::new(env.clone(), Vec::new(), plugin_config.to_vec());
        state.root_properties.insert("plugin_root_id".to_string(), root_id.as_bytes().to_vec());
        let mut store = Store::new(&self.engine, state);
        store.call_hook(|mut store, hook| {
            if matches!(hook, CallHook::CallingHost) {
                store.data_mut().host_calls += 1;
            }
            Ok(())
        });
        let mut linker = Linker::new(&self.engine);
        abi::link(&mut linker)?;
        abi::stub_missing(&mut linker, &mut store, &self.module)?;
        let instance = linker.instantiate(&mut store, &self.module)?;
        let mut vm = Vm { store, instance, next_context: 2 };
        let init =
            ["_initialize", "_start"].into_iter().find(|name| vm.instance.get_func(&mut vm.store, name).is_some());
        if let Some(init) = init {
            vm.call::<(), ()>(init, ())?;
        }
        let root = vm.store.data().root_id as i32;
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (root, 0))?;
        Ok(vm)
    }
}

/// One VM instance with its root context (id 1) and the streams the test opened.
pub struct Vm {
    store: Store<VmState>,
    instance: Instance,
    next_context: u32,
}

impl Vm {
    fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("export {name}"))?;
        func.call(&mut self.store, params).map_err(anyhow::Error::from).with_context(|| format!("calling {name}"))
    }

    fn enter(&mut self, context_id: u32) {
        self.store.data_mut().effective = context_id;
    }

    fn configure(&mut self) -> Result<bool> {
        let root = self.store.data().root_id;
        self.enter(root);
        let vm_size = self.store.data().vm_config.len() as i32;
        let started: i32 = self.call("proxy_on_vm_start", (root as i32, vm_size))?;
        if started == 0 {
            return Ok(false);
        }
        let size = self.store.data().plugin_config.len() as i32;
        let configured: i32 = self.call("proxy_on_configure", (root as i32, size))?;
        Ok(configured != 0)
    }

    /// A structured record (the principal, a filter's audit record) written on this stream.
    pub fn audit(&self, stream: u32, key: &str) -> Option<serde_json::Value> {
        let bytes = self.store.data().streams.get(&stream)?.properties.get(key)?;
        warden_policy::audit::decode(bytes).map(serde_json::Value::Object)
    }

    /// One field of the record under `key` on this stream (see `warden_policy::testing::field`).
    pub fn field(&self, stream: u32, key: &str, path: &str) -> Option<String> {
        warden_policy::testing::field(&self.audit(stream, key)?, path)
    }

    /// Writes the principal on this stream as the identity filter before this one would.
    pub fn set_principal(&mut self, stream: u32, principal: &warden_policy::principal::Principal) {
        let record = warden_policy::audit::encode(&principal.record(), warden_policy::audit::AuditFormat::Json);
        self.set_property(stream, warden_policy::attributes::PRINCIPAL, &record);
    }

    /// The properties this plugin declared, with whether each is read-only.
    pub fn declared(&self) -> std::collections::BTreeMap<String, bool> {
        self.store.data().declared.clone()
    }

    /// Calls the module has made into the host so far (proxy-wasm and WASI alike): each one
    /// crosses the VM boundary, which is what a filter's per-request cost is mostly made of.
    pub fn host_calls(&self) -> u64 {
        self.store.data().host_calls
    }

    /// Opens an HTTP stream; set its properties before sending headers.
    pub fn new_stream(&mut self) -> Result<u32> {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().streams.insert(id, Stream::default());
        let root = self.store.data().root_id as i32;
        self.enter(id);
        self.call::<(i32, i32), ()>("proxy_on_context_create", (id as i32, root))?;
        Ok(id)
    }

    /// Sets a property the filter can read on this stream, e.g. `connection.uri_san_peer_certificate`.
    pub fn set_property(&mut self, stream: u32, path: &str, value: &[u8]) {
        if let Some(s) = self.store.data_mut().streams.get_mut(&stream) {
            s.properties.insert(path.to_string(), value.to_vec());
        }
    }

    pub fn property(&self, stream: u32, path: &str) -> Option<String> {
        let value = self.store.data().streams.get(&stream)?.properties.get(path)?;
        Some(String::from_utf8_lossy(value).into_owned())
    }

    fn action(code: i32) -> Result<Action> {
        match code {
            0 => Ok(Action::Continue),
            1 => Ok(Action::Pause),
            other => Err(anyhow!("unknown action {other}")),
        }
    }

    pub fn request_headers(&mut self, stream: u32, headers: &[(&str, &str)], end_of_stream: bool) -> Result<Action> {
        let pairs = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
        let count = pairs.len() as i32;
        self.stream_mut(stream)?.request_headers = pairs;
        self.enter(stream);
        let code = self.call("proxy_on_request_headers", (stream as i32, count, end_of_stream as i32))?;
        Self::action(code)
    }

    /// Delivers a request body chunk. As in Envoy, a filter that returns `Continue` lets the
    /// buffered bytes go upstream (into `sent_request_body`); `Pause` keeps them buffered and
    /// the next chunk is added to them.
    pub fn request_body(&mut self, stream: u32, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let body = &mut self.stream_mut(stream)?.request_body;
        body.extend_from_slice(chunk);
        let size = body.len() as i32;
        self.enter(stream);
        let code = self.call("proxy_on_request_body", (stream as i32, size, end_of_stream as i32))?;
        let action = Self::action(code)?;
        if action == Action::Continue {
            let s = self.stream_mut(stream)?;
            let sent = std::mem::take(&mut s.request_body);
            s.sent_request_body.extend(sent);
        }
        Ok(action)
    }

    /// Delivers request trailers, which end the request. As in Envoy, `Continue` lets the body
    /// the filter held go upstream with them.
    pub fn request_trailers(&mut self, stream: u32, trailers: &[(&str, &str)]) -> Result<Action> {
        let pairs = trailers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
        let count = pairs.len() as i32;
        self.stream_mut(stream)?.request_trailers = pairs;
        self.enter(stream);
        let action = Self::action(self.call("proxy_on_request_trailers", (stream as i32, count))?)?;
        if action == Action::Continue {
            let s = self.stream_mut(stream)?;
            let sent = std::mem::take(&mut s.request_body);
            s.sent_request_body.extend(sent);
        }
        Ok(action)
    }

    /// Delivers response trailers, which end the answer; what the filter held goes on with
    /// them on `Continue`.
    pub fn response_trailers(&mut self, stream: u32, trailers: &[(&str, &str)]) -> Result<Action> {
        let pairs = trailers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
        let count = pairs.len() as i32;
        self.stream_mut(stream)?.response_trailers = pairs;
        self.enter(stream);
        let action = Self::action(self.call("proxy_on_response_trailers", (stream as i32, count))?)?;
        if action == Action::Continue {
            let s = self.stream_mut(stream)?;
            let sent = std::mem::take(&mut s.response_body);
            s.sent_response_body.extend(sent);
        }
        Ok(action)
    }

    pub fn response_headers(&mut self, stream: u32, headers: &[(&str, &str)], end_of_stream: bool) -> Result<Action> {
        let pairs = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect::<Vec<_>>();
        let count = pairs.len() as i32;
        self.stream_mut(stream)?.response_headers = pairs;
        self.enter(stream);
        let code = self.call("proxy_on_response_headers", (stream as i32, count, end_of_stream as i32))?;
        Self::action(code)
    }

    /// Delivers a response body chunk; what the filter lets through collects in
    /// `sent_response_body`, as for requests.
    pub fn response_body(&mut self, stream: u32, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let body = &mut self.stream_mut(stream)?.response_body;
        body.extend_from_slice(chunk);
        let size = body.len() as i32;
        self.enter(stream);
        let code = self.call("proxy_on_response_body", (stream as i32, size, end_of_stream as i32))?;
        let action = Self::action(code)?;
        if action == Action::Continue {
            let s = self.stream_mut(stream)?;
            let sent = std::mem::take(&mut s.response_body);
            s.sent_response_body.extend(sent);
        }
        Ok(action)
    }

    /// Ends a stream as Envoy does: `on_log`, `on_done`, `on_delete`.
    pub fn finish(&mut self, stream: u32) -> Result<()> {
        self.enter(stream);
        self.call::<i32, ()>("proxy_on_log", stream as i32)?;
        self.call::<i32, i32>("proxy_on_done", stream as i32)?;
        self.call::<i32, ()>("proxy_on_delete", stream as i32)?;
        self.store.data_mut().streams.remove(&stream);
        Ok(())
    }

    fn stream_mut(&mut self, stream: u32) -> Result<&mut Stream> {
        self.store.data_mut().streams.get_mut(&stream).ok_or_else(|| anyhow!("no stream {stream}"))
    }

    pub fn stream(&self, stream: u32) -> Option<&Stream> {
        self.store.data().streams.get(&stream)
    }

    /// Request headers as the filter left them, values as text.
    pub fn forwarded_headers(&self, stream: u32) -> Vec<(String, String)> {
        self.stream(stream)
            .map(|s| {
                s.request_headers.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect()
            })
            .unwrap_or_default()
    }

    pub fn forwarded_header(&self, stream: u32, name: &str) -> Option<String> {
        self.forwarded_headers(stream).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn local_reply(&self, stream: u32) -> Option<LocalReply> {
        self.stream(stream)?.local_reply.clone()
    }

    /// How many times the filter asked Envoy to choose this stream's route again.
    pub fn route_cache_cleared(&self, stream: u32) -> usize {
        self.stream(stream).map_or(0, |s| s.route_cache_cleared)
    }

    /// How many times the filter resumed this stream's request.
    pub fn resumed(&self, stream: u32) -> usize {
        self.stream(stream).map_or(0, |s| s.resumed_request)
    }

    /// Calls `proxy_on_tick` once.
    pub fn tick(&mut self) -> Result<()> {
        let root = self.store.data().root_id;
        self.enter(root);
        self.call::<i32, ()>("proxy_on_tick", root as i32)
    }

    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// Advances the shared clock by `by`, firing the timer each period that elapses.
    pub fn advance(&mut self, env: &HostEnv, by: Duration) -> Result<()> {
        let Some(period) = self.tick_period() else {
            env.advance(by);
            return Ok(());
        };
        let mut left = by;
        while left >= period {
            env.advance(period);
            left -= period;
            self.tick()?;
        }
        env.advance(left);
        Ok(())
    }

    /// Makes HTTP callouts to `cluster` fail to dispatch, as Envoy does for a cluster it lacks.
    pub fn forget_cluster(&mut self, cluster: &str) {
        self.store.data_mut().unknown_clusters.push(cluster.to_string());
    }

    /// HTTP callouts dispatched and not answered yet.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.store.data().http_calls.clone()
    }

    pub fn grpc_calls(&self) -> Vec<GrpcCall> {
        self.store.data().grpc_calls.clone()
    }

    fn take_http_call(&mut self, token: u32) -> Result<HttpCall> {
        let calls = &mut self.store.data_mut().http_calls;
        let at = calls.iter().position(|c| c.token == token).ok_or_else(|| anyhow!("no pending HTTP call {token}"))?;
        Ok(calls.remove(at))
    }

    /// Answers an HTTP callout.
    pub fn respond_http_call(&mut self, token: u32, status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<()> {
        let call = self.take_http_call(token)?;
        let mut all = vec![(":status".to_string(), status.to_string().into_bytes())];
        all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
        self.deliver_http_answer(call, CalloutAnswer { headers: all, body: body.to_vec(), trailers: Vec::new() })
    }

    /// Fails an HTTP callout the way Envoy reports a reset or time-out: no headers, no body.
    pub fn fail_http_call(&mut self, token: u32) -> Result<()> {
        let call = self.take_http_call(token)?;
        self.deliver_http_answer(call, CalloutAnswer::default())
    }

    fn deliver_http_answer(&mut self, call: HttpCall, answer: CalloutAnswer) -> Result<()> {
        let (headers, body) = (answer.headers.len() as i32, answer.body.len() as i32);
        self.store.data_mut().answer = Some(answer);
        self.enter(call.context_id);
        let result = self.call::<(i32, i32, i32, i32, i32), ()>(
            "proxy_on_http_call_response",
            (call.context_id as i32, call.token as i32, headers, body, 0),
        );
        self.store.data_mut().answer = None;
        result
    }

    /// Answers a unary gRPC callout with one message, as Envoy reports a success: the message
    /// alone, no close.
    pub fn respond_grpc_call(&mut self, token: u32, message: &[u8]) -> Result<()> {
        let call = self.take_grpc_call(token)?;
        self.store.data_mut().answer = Some(CalloutAnswer { body: message.to_vec(), ..CalloutAnswer::default() });
        self.enter(call.context_id);
        let received = self.call::<(i32, i32, i32), ()>(
            "proxy_on_grpc_receive",
            (call.context_id as i32, token as i32, message.len() as i32),
        );
        self.store.data_mut().answer = None;
        received
    }

    /// Fails a gRPC callout as Envoy does: a close with the status (14 unavailable, 4 deadline
    /// exceeded for a time-out ...).
    pub fn fail_grpc_call(&mut self, token: u32, grpc_status: u32) -> Result<()> {
        let call = self.take_grpc_call(token)?;
        self.enter(call.context_id);
        self.call::<(i32, i32, i32), ()>(
            "proxy_on_grpc_close",
            (call.context_id as i32, token as i32, grpc_status as i32),
        )
    }

    fn take_grpc_call(&mut self, token: u32) -> Result<GrpcCall> {
        let calls = &mut self.store.data_mut().grpc_calls;
        let at = calls.iter().position(|c| c.token == token).ok_or_else(|| anyhow!("no pending gRPC call {token}"))?;
        Ok(calls.remove(at))
    }

    pub fn logs(&self) -> Vec<LogLine> {
        self.store.data().logs.clone()
    }

    pub fn log_text(&self) -> String {
        self.store.data().logs.iter().map(|l| l.message.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// Bytes of linear memory the VM uses now.
    pub fn memory_bytes(&mut self) -> usize {
        self.instance.get_memory(&mut self.store, "memory").map_or(0, |m| m.data_size(&self.store))
    }
}
