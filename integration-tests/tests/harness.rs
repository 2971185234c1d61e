//! The wasmtime proxy-wasm host's own behaviour, through `warden-probe-filter`: gRPC and HTTP
//! callouts sent from a request context and answered, failed or timed out; logs; metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use warden_integration_tests::proxy_wasm_host::{Action, HostEnv, Plugin, Vm};
use warden_integration_tests::repo;

fn probe(kind: &str) -> (Vm, HostEnv, u32) {
    let plugin = Plugin::load(&repo::filter_wasm("warden_probe_filter")).unwrap();
    let env = HostEnv::default();
    let mut vm = plugin.start(&env, b"").unwrap();
    let stream = vm.new_stream().unwrap();
    let action = vm.request_headers(stream, &[(":path", "/"), ("x-probe", kind)], true).unwrap();
    assert_eq!(action, Action::Pause, "the probe waits for its callout");
    (vm, env, stream)
}

#[test]
fn a_grpc_callout_is_seen_and_answered() {
    let (mut vm, env, stream) = probe("grpc");
    let call = vm.grpc_calls().pop().expect("one gRPC call");
    assert_eq!(
        (call.upstream.as_str(), call.service.as_str(), call.method.as_str()),
        ("probe-grpc", "probe.v1.Probe", "Check")
    );
    assert_eq!(call.message, b"ping");
    assert_eq!(call.timeout, Duration::from_millis(250));
    assert_eq!(call.initial_metadata, vec![("x-probe-md".to_string(), "1".to_string())]);
    assert_eq!(call.context_id, stream, "the answer goes to the context that asked");
    vm.respond_grpc_call(call.token, b"pong").unwrap();
    assert_eq!(vm.property(stream, "probe.result").as_deref(), Some("grpc ok: pong"));
    assert_eq!(vm.resumed(stream), 1);
    assert!(vm.log_text().contains("probe: grpc ok: pong"));
    assert_eq!(env.metric("probe.requests"), 1);
}

#[test]
fn a_failed_or_timed_out_grpc_callout_reports_its_status() {
    for status in [14, 4] {
        let (mut vm, _env, stream) = probe("grpc");
        let call = vm.grpc_calls().pop().unwrap();
        vm.fail_grpc_call(call.token, status).unwrap();
        assert_eq!(vm.property(stream, "probe.result"), Some(format!("grpc failed: {status}")));
        assert_eq!(vm.local_reply(stream).map(|r| r.status), Some(503));
        assert_eq!(vm.resumed(stream), 0);
    }
}

#[test]
fn an_http_callout_from_a_request_is_answered_or_fails() {
    let (mut vm, _env, stream) = probe("http");
    let call = vm.http_calls().pop().expect("one HTTP call");
    assert_eq!((call.upstream.as_str(), call.header(":path")), ("probe-http", Some("/probe")));
    vm.respond_http_call(call.token, 204, &[("x-a", "b")], b"done").unwrap();
    assert_eq!(vm.property(stream, "probe.result").as_deref(), Some("http 204: done"));
    assert_eq!(vm.resumed(stream), 1);

    let (mut vm, _env, stream) = probe("http");
    let call = vm.http_calls().pop().unwrap();
    vm.fail_http_call(call.token).unwrap();
    assert_eq!(vm.property(stream, "probe.result").as_deref(), Some("http failed"));
    assert_eq!(vm.local_reply(stream).map(|r| r.status), Some(503));
}

#[test]
fn a_request_without_a_probe_passes_and_metrics_add_up_across_vms() {
    let plugin = Plugin::load(&repo::filter_wasm("warden_probe_filter")).unwrap();
    let env = HostEnv::default();
    for _ in 0..2 {
        let mut vm = plugin.start(&env, b"").unwrap();
        let stream = vm.new_stream().unwrap();
        assert_eq!(vm.request_headers(stream, &[(":path", "/")], true).unwrap(), Action::Continue);
        vm.finish(stream).unwrap();
    }
    assert_eq!(env.metric("probe.requests"), 2);
}
