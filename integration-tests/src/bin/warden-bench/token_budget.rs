//! token-budget: the same Envoy without any filter, with a Wasm filter that only holds and reads
//! bodies, and with token-budget counting a local budget and a global one (Warden's rate-limit
//! service on Redis), on a budgeted 2 KB chat request (counted, reserved, forwarded, settled
//! from the answer's usage) and a 512 KB one. Plus, per VM: start time and memory with the
//! tokenizers loaded (in Envoy and in a wasmtime VM), the first request against the steady
//! state, and prompt-counting throughput for 1 KB, 32 KB and 512 KB prompts inside the VM.
//! Writes `target/bench/token-budget.json`.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_integration_tests::bench::{Comparison, Figures, Load};
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::{json_response, TestServer};
use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin, Vm};
use warden_integration_tests::repo;
use warden_integration_tests::services::{RateLimitService, Redis};

use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/token-budget.yaml";

/// Budgets per model (no identity filter runs here, so there is no principal to count by).
/// The service's timeout is raised from the default 20 ms: with one worker, a 512 KB prompt
/// counted for one request delays the answer of another's reservation on the same thread, and
/// the benchmark measures cost, not the failure mode.
fn policy(store: &str) -> String {
    let global = if store == "global" { ", store: global, failureMode: deny" } else { "" };
    format!(
        "tokenBudget:\n  rateLimitService: {{ cluster: ratelimit, timeout: 250ms }}\n  models:\n    - {{ name: 'gpt-4o*', price: {{ input: 2.5, output: 10 }} }}\n  budgets:\n    - {{ id: model-day, scope: [model], unit: totalTokens, limit: 4000000000, window: day{global} }}\n"
    )
}

/// A chat request of about `bytes` bytes of English-like prose.
pub fn chat_body(bytes: usize) -> String {
    let sentence = "The agent reads the quarterly report, compares revenue with last year's figures, and drafts a short summary for the finance team. ";
    let text: String = sentence.repeat(bytes / sentence.len() + 1).chars().take(bytes.saturating_sub(120)).collect();
    json!({"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "system", "content": "You are concise."}, {"role": "user", "content": text}]}).to_string()
}

/// A provider that answers at once with a fixed completion and its usage.
async fn upstream() -> Result<TestServer> {
    let answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 420, "completion_tokens": 2, "total_tokens": 422}})
    .to_string();
    Ok(TestServer::start(0, move |req| {
        let answer = answer.clone();
        async move {
            // The body is read before answering: an unread body makes hyper drop the connection.
            use http_body_util::BodyExt;
            let _ = req.into_body().collect().await;
            json_response(200, answer)
        }
    })
    .await?)
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

fn one_request(vm: &mut Vm, body: &str) -> Result<()> {
    let length = body.len().to_string();
    let headers = [(":method", "POST"), (":path", "/v1/chat/completions"), ("content-length", length.as_str())];
    let s = vm.new_stream()?;
    vm.request_headers(s, &headers, false)?;
    vm.request_body(s, body.as_bytes(), true)?;
    anyhow::ensure!(vm.local_reply(s).is_none(), "the bench request was refused: {:?}", vm.local_reply(s));
    vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false)?;
    vm.response_body(s, br#"{"usage":{"prompt_tokens":10,"completion_tokens":2}}"#, true)?;
    vm.finish(s)
}

/// Microseconds per request of `wasm` (configured with `config`) over `n` requests.
fn per_request_us(vm: &mut Vm, body: &str, n: usize) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        one_request(vm, body)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// In a wasmtime VM: start time and memory, first request, counting throughput.
fn in_vm(policy: &str) -> Result<Value> {
    let env = HostEnv::default();
    let plugin = Plugin::load(&repo::filter_wasm("warden_token_budget"))?;
    let start = Instant::now();
    let mut vm = plugin.start(&env, policy.as_bytes())?;
    let start_ms = start.elapsed().as_secs_f64() * 1e3;
    let memory = vm.memory_bytes();
    let small = chat_body(2048);
    let first = per_request_us(&mut vm, &small, 1)?;
    let steady = per_request_us(&mut vm, &small, 500)?;
    let mut noop = Plugin::load(&repo::filter_wasm("warden_noop_filter"))?.start(&env, b"buffer-bodies")?;
    let mut throughput = Vec::new();
    for (label, bytes, n) in [("1 KB", 1024, 400), ("32 KB", 32 * 1024, 60), ("512 KB", 512 * 1024, 6)] {
        let body = chat_body(bytes);
        per_request_us(&mut vm, &body, 1)?;
        per_request_us(&mut noop, &body, 1)?;
        let filtered = per_request_us(&mut vm, &body, n)?;
        let baseline = per_request_us(&mut noop, &body, n)?;
        let us = (filtered - baseline).max(0.001);
        throughput
            .push(json!({"prompt": label, "body_bytes": body.len(), "us_per_request": (us * 10.0).round() / 10.0,
            "mb_per_s": ((body.len() as f64 / us) * 10.0).round() / 10.0}));
    }
    Ok(json!({
        "runtime": "wasmtime (Cranelift), the test harness",
        "vm_start_ms": (start_ms * 10.0).round() / 10.0,
        "linear_memory_bytes": memory,
        "first_request_us": first.round(),
        "steady_request_us": steady.round(),
        "counting": throughput,
    }))
}

pub async fn token_budget(version: &str) -> Result<Value> {
    let server = upstream().await?;
    let redis = Redis::start()?;
    let rls =
        RateLimitService::start_binary(&repo::root().join("target/bench-tools/warden-ratelimit"), Some(&redis.url()))
            .context("the rate-limit service (make bench builds it)")?;
    let workers = env_u64("WARDEN_BENCH_WORKERS", 1) as u32;
    let builder = || {
        Envoy::builder(CONFIG)
            .version(version)
            .cluster("llm", server.port)
            .cluster("ratelimit", rls.port)
            .concurrency(workers)
            .without_filter("warden.identity")
    };
    let timed = |b: warden_integration_tests::envoy::EnvoyBuilder| async move {
        let start = Instant::now();
        let envoy = b.start().await?;
        Ok::<_, anyhow::Error>((envoy, start.elapsed().as_secs_f64() * 1e3))
    };
    let (bare, bare_ms) = timed(builder().without_filter("warden.token_budget")).await?;
    let (noop, _) = timed(
        builder()
            .wasm_code("warden.token_budget", &repo::filter_wasm("warden_noop_filter"))
            .policy("warden.token_budget", "buffer-bodies"),
    )
    .await?;
    let (local, local_ms) = timed(builder().policy("warden.token_budget", &policy("local"))).await?;
    let (global, _) = timed(builder().policy("warden.token_budget", &policy("global"))).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let envoy_vm = json!({
        "ready_ms_without_filter": bare_ms.round(),
        "ready_ms_with_token_budget": local_ms.round(),
        "rss_kib_without_filter": rss_kib(bare.pid()),
        "rss_kib_with_token_budget": rss_kib(local.pid()),
        "vms": 1 + workers,
    });
    let envoys = [bare, noop, local, global];
    let urls: Vec<String> = envoys.iter().map(|e| format!("{}/v1/chat/completions", e.url("agents"))).collect();
    for (side, url) in ["no filter", "buffering noop", "token-budget local", "token-budget global"].iter().zip(&urls) {
        eprintln!("{side}: {url}");
    }
    let seconds = env_u64("WARDEN_BENCH_SECONDS", 5);
    let mut entries = Vec::new();
    for (name, bytes) in [("budgeted chat, 2 KB", 2048usize), ("budgeted chat, 512 KB", 512 * 1024)] {
        let body = chat_body(bytes);
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        let latency =
            Load { connections: 1, duration: Duration::from_secs(seconds), headers, body: Some(body.clone()) };
        run_all(&Load { duration: Duration::from_secs(1), ..latency.clone() }, &urls).await?;
        let mut sides: [Vec<Figures>; 4] = Default::default();
        for round in 1..=ROUNDS {
            let figures = run_all(&latency, &urls).await?;
            eprintln!("{name} round {round}: {figures:?}");
            for (i, f) in figures.into_iter().enumerate() {
                sides[i].push(f);
            }
        }
        let mut entry = serde_json::to_value(Comparison::from_rounds(&sides[0], &sides[2]))?;
        entry["global"] = serde_json::to_value(Comparison::from_rounds(&sides[0], &sides[3]))?;
        entry["wasm_buffering_noop"] = serde_json::to_value(Comparison::from_rounds(&sides[0], &sides[1]))?;
        entry["case"] = name.into();
        entry["body_bytes"] = body.len().into();
        entries.push(entry);
    }
    for envoy in &envoys[2..] {
        anyhow::ensure!(envoy.stat("wasmcustom.warden.token_budget.refused").await == 0, "requests were refused");
        anyhow::ensure!(
            envoy.stat("wasmcustom.warden.token_budget.failure_mode_applied").await == 0,
            "the service failed"
        );
    }
    drop(redis);
    Ok(json!({
        "filter": "token-budget",
        "envoy_version": version,
        "envoy_workers": workers,
        "connections": 1,
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "wasm_bytes": std::fs::metadata(repo::filter_wasm("warden_token_budget")).map(|m| m.len()).unwrap_or(0),
        "envoy_vm": envoy_vm,
        "in_vm": in_vm(&policy("local"))?,
        "cases": entries,
    }))
}

pub fn print_table(r: &Value) {
    println!(
        "\ntoken-budget: Envoy {}, {} worker, wrk -t1 -c1, median of {} rounds x {} s; added = side minus the same Envoy without any filter",
        r["envoy_version"], r["envoy_workers"], r["rounds"], r["seconds_per_round"]
    );
    println!(
        "{:<24} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12}",
        "case",
        "base p50",
        "base p99",
        "noop +p50",
        "noop +p99",
        "local +p50",
        "local +p99",
        "global +p50",
        "global +p99"
    );
    for c in r["cases"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>12}",
            c["case"].as_str().unwrap_or(""),
            c["baseline"]["p50_us"],
            c["baseline"]["p99_us"],
            c["wasm_buffering_noop"]["added_p50_us"],
            c["wasm_buffering_noop"]["added_p99_us"],
            c["added_p50_us"],
            c["added_p99_us"],
            c["global"]["added_p50_us"],
            c["global"]["added_p99_us"]
        );
    }
    println!("Envoy VMs: {}", r["envoy_vm"]);
    println!("in a wasmtime VM: {}", r["in_vm"]);
}
