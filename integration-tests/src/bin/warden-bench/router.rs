//! router: Warden's router as shipped (`envoy/router.yaml`) against the same Envoy sending the
//! model route straight to the provider's cluster, and with a do-nothing body-holding Wasm
//! filter in the router's place, in one run, rounds alternated. Cases: a 2 KB chat completion
//! routed by alias to a provider of its own API, and to an Anthropic provider (translated both
//! ways); a streamed chat's first byte, same API and translated. In the wasm VM (wasmtime): the
//! router's own work per request (both plugins) and translation's throughput. Writes
//! `target/bench/router.json`.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_integration_tests::bench::{first_byte_us, Comparison, Figures, Load};
use warden_integration_tests::envoy::{Envoy, EnvoyBuilder};
use warden_integration_tests::fixtures::TestServer;
use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin, Vm};
use warden_integration_tests::repo;

use crate::chain::{median, run_with_cpu};
use crate::token_budget::chat_body;
use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/router.yaml";
const SIDES: [&str; 4] = [
    "Envoy alone (route to the provider)",
    "Envoy + a do-nothing body-holding Wasm filter",
    "Envoy + the router, same API",
    "Envoy + the router, OpenAI -> Anthropic",
];

/// A provider of both APIs answering at once: JSON, or a short stream when asked.
async fn upstream() -> Result<TestServer> {
    Ok(TestServer::start(0, |req| async move {
        let anthropic = req.uri().path().ends_with("/messages");
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let stream = serde_json::from_slice::<Value>(&body).map(|v| v["stream"] == true).unwrap_or(false);
        let (content_type, text) = match (anthropic, stream) {
            (true, false) => ("application/json", json!({"id": "m", "type": "message", "role": "assistant", "model": "claude",
                "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": {"input_tokens": 420, "output_tokens": 2}}).to_string()),
            (true, true) => ("text/event-stream", [
                ("message_start", json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 420, "output_tokens": 1}}})),
                ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}})),
                ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
                ("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}})),
                ("message_stop", json!({"type": "message_stop"})),
            ].iter().map(|(n, d)| format!("event: {n}\ndata: {d}\n\n")).collect()),
            (false, false) => ("application/json", json!({"id": "c", "object": "chat.completion", "model": "gpt-4o",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 420, "completion_tokens": 2}}).to_string()),
            (false, true) => ("text/event-stream", format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "ok"}}]}),
                json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            )),
        };
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static(content_type));
        response
    })
    .await?)
}

/// The 2 KB chat for `alias`.
fn chat(alias: &str, bytes: usize, stream: bool) -> String {
    let mut body: Value = serde_json::from_str(&chat_body(bytes)).unwrap_or_default();
    body["model"] = alias.into();
    if stream {
        body["stream"] = true.into();
    }
    body.to_string()
}

fn headers(path: &str, length: &str) -> Vec<(String, String)> {
    [(":method", "POST"), (":path", path), ("content-type", "application/json"), ("content-length", length)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One request through both plugins, as Envoy runs them: the router, then one attempt.
fn one_request(router: &mut Vm, attempt: &mut Vm, body: &str, answer: &[u8]) -> Result<()> {
    let length = body.len().to_string();
    let owned = headers("/v1/chat/completions", &length);
    let hs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = router.new_stream()?;
    router.request_headers(s, &hs, false)?;
    router.request_body(s, body.as_bytes(), true)?;
    anyhow::ensure!(router.local_reply(s).is_none(), "refused: {:?}", router.local_reply(s));
    let plan = router.property(s, "warden.route").unwrap_or_default();
    // Envoy replays the body as the router let it go.
    let sent = router.stream(s).map(|st| st.sent_request_body.clone()).unwrap_or_default();
    let a = attempt.new_stream()?;
    attempt.set_property(a, "warden.route", plan.as_bytes());
    attempt.request_headers(a, &hs, false)?;
    attempt.request_body(a, &sent, true)?;
    attempt.response_headers(a, &[(":status", "200"), ("content-type", "application/json")], false)?;
    attempt.response_body(a, answer, true)?;
    let after = attempt.property(a, "warden.route").unwrap_or_default();
    attempt.finish(a)?;
    router.set_property(s, "warden.route", after.as_bytes());
    router.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false)?;
    router.response_body(s, answer, true)?;
    router.finish(s)
}

/// The same request through two do-nothing body-holding filters (the harness's own cost).
fn one_noop(noop: &mut Vm, body: &str, answer: &[u8]) -> Result<()> {
    let length = body.len().to_string();
    let owned = headers("/v1/chat/completions", &length);
    let hs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for _ in 0..2 {
        let s = noop.new_stream()?;
        noop.request_headers(s, &hs, false)?;
        noop.request_body(s, body.as_bytes(), true)?;
        noop.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false)?;
        noop.response_body(s, answer, true)?;
        noop.finish(s)?;
    }
    Ok(())
}

fn timed(n: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// In wasmtime: the router's own work per request, same API and translated, net of two
/// do-nothing filters; and translation's throughput on large prompts.
fn in_vm() -> Result<Value> {
    let env = HostEnv::default();
    let policy = std::fs::read_to_string(repo::root().join("examples/router/policy.yaml"))?
        .replace("credential: { env: OPENAI_API_KEY }", "credential: { sds: openai-key }");
    let plugin = Plugin::load(&repo::filter_wasm("warden_router"))?;
    let (mut router, ok) = plugin.start_as(&env, "warden.router", policy.as_bytes())?;
    anyhow::ensure!(ok, "router refused: {}", router.log_text());
    let (mut attempt, ok) = plugin.start_as(&env, "warden.router_attempt", policy.as_bytes())?;
    anyhow::ensure!(ok, "attempt refused: {}", attempt.log_text());
    let mut noop = Plugin::load(&repo::filter_wasm("warden_noop_filter"))?.start(&env, b"buffer-bodies")?;
    let openai_answer = json!({"id": "c", "object": "chat.completion", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 420, "completion_tokens": 2}})
    .to_string();
    let anthropic_answer = json!({"id": "m", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "usage": {"input_tokens": 420, "output_tokens": 2}}).to_string();
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let mut per_request = Vec::new();
    for (label, alias, answer) in
        [("same API", "fast", &openai_answer), ("OpenAI -> Anthropic", "claude", &anthropic_answer)]
    {
        let body = chat(alias, 2048, false);
        timed(50, || one_request(&mut router, &mut attempt, &body, answer.as_bytes()))?;
        timed(50, || one_noop(&mut noop, &body, answer.as_bytes()))?;
        let filtered = timed(1000, || one_request(&mut router, &mut attempt, &body, answer.as_bytes()))?;
        let baseline = timed(1000, || one_noop(&mut noop, &body, answer.as_bytes()))?;
        per_request.push(json!({"case": format!("chat, 2 KB, {label}"), "us_per_request": round1(filtered),
            "do_nothing_us": round1(baseline), "router_own_us": round1(filtered - baseline)}));
    }
    let mut throughput = Vec::new();
    for (label, bytes, n) in [("32 KB", 32 * 1024, 100), ("512 KB", 512 * 1024, 8)] {
        let same = chat("fast", bytes, false);
        let translated = chat("claude", bytes, false);
        timed(2, || one_request(&mut router, &mut attempt, &translated, anthropic_answer.as_bytes()))?;
        let with = timed(n, || one_request(&mut router, &mut attempt, &translated, anthropic_answer.as_bytes()))?;
        let without = timed(n, || one_request(&mut router, &mut attempt, &same, openai_answer.as_bytes()))?;
        let us = (with - without).max(0.001);
        throughput.push(json!({"prompt": label, "body_bytes": translated.len(), "translation_us": round1(us),
            "mb_per_s": round1(translated.len() as f64 / us)}));
    }
    Ok(
        json!({"runtime": "wasmtime (Cranelift), the test harness", "per_request": per_request, "translation": throughput}),
    )
}

pub async fn router(version: &str) -> Result<Value> {
    let server = upstream().await?;
    let builder = |workers: u32| {
        let mut b = Envoy::builder(CONFIG).version(version).concurrency(workers).env("OPENAI_API_KEY", "sk-bench");
        for cluster in ["llm_openai", "llm_backup", "llm_anthropic", "llm_local"] {
            b = b.cluster(cluster, server.port);
        }
        b
    };
    let sides = |workers: u32| -> [EnvoyBuilder; 3] {
        let bare = builder(workers)
            .without_filter("warden.router")
            .without_filter("warden.router_attempt")
            .route_to("models", "llm_openai");
        let noop = builder(workers)
            .wasm_code("warden.router", &repo::filter_wasm("warden_noop_filter"))
            .policy("warden.router", "buffer-bodies")
            .without_filter("warden.router_attempt")
            .route_to("models", "llm_openai");
        [bare, noop, builder(workers)]
    };
    let workers = env_u64("WARDEN_BENCH_WORKERS", 1) as u32;
    let [bare, noop, routed] = sides(workers);
    let envoys = [bare.start().await?, noop.start().await?, routed.start().await?];
    let url = |e: &Envoy| format!("{}/v1/chat/completions", e.url("agents"));
    // The translated side is the router's Envoy, asked for the Anthropic alias.
    let urls: Vec<String> = vec![url(&envoys[0]), url(&envoys[1]), url(&envoys[2]), url(&envoys[2])];
    let bodies =
        [chat("fast", 2048, false), chat("fast", 2048, false), chat("fast", 2048, false), chat("claude", 2048, false)];
    let seconds = env_u64("WARDEN_BENCH_SECONDS", 5);
    let connections = env_u64("WARDEN_BENCH_CONNECTIONS", 16) as u32;
    let pids: Vec<u32> = vec![envoys[0].pid(), envoys[1].pid(), envoys[2].pid(), envoys[2].pid()];
    let load = |i: usize, connections: u32| Load {
        connections,
        duration: Duration::from_secs(seconds),
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: Some(bodies[i].clone()),
    };
    for (i, u) in urls.iter().enumerate() {
        run_all(&Load { duration: Duration::from_secs(1), ..load(i, 1) }, std::slice::from_ref(u)).await?;
    }
    let (mut quiet, mut heavy): ([Vec<Figures>; 4], [Vec<Figures>; 4]) = Default::default();
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for round in 1..=ROUNDS {
        for i in 0..4 {
            let one = run_all(&load(i, 1), std::slice::from_ref(&urls[i])).await?;
            quiet[i].extend(one);
            let many = run_with_cpu(&load(i, connections), std::slice::from_ref(&urls[i]), &pids[i..=i]).await?;
            eprintln!("router round {round} side {i}: {many:?}");
            for (f, us) in many {
                heavy[i].push(f);
                cpu[i].push(us);
            }
        }
    }
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let mut cases = Vec::new();
    for i in 1..4 {
        let mut entry = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[i]))?;
        let rps = Comparison::from_rounds(&heavy[0], &heavy[i]).filtered.rps;
        let bare_rps = Comparison::from_rounds(&heavy[0], &heavy[0]).filtered.rps;
        entry["side"] = SIDES[i].into();
        entry["throughput"] = json!({"connections": connections, "rps": rps, "bare_rps": bare_rps,
            "share_of_bare": round1(rps / bare_rps * 100.0),
            "envoy_cpu_us_per_request": round1(median(cpu[i].clone())),
            "added_cpu_us_per_request": round1(median(cpu[i].clone()) - median(cpu[0].clone()))});
        cases.push(entry);
    }
    let stream_urls = [url(&envoys[0]), url(&envoys[2]), url(&envoys[2])];
    let stream_bodies = [chat("fast", 2048, true), chat("fast", 2048, true), chat("claude", 2048, true)];
    let mut first_byte = Vec::new();
    for (u, b) in stream_urls.iter().zip(&stream_bodies) {
        first_byte_us(u, None, b, 20).await?;
        first_byte.push(first_byte_us(u, None, b, 200).await?);
    }
    anyhow::ensure!(envoys[2].stat("wasmcustom.warden.router.refused").await == 0, "the router refused requests");
    let vm = tokio::task::spawn_blocking(in_vm).await??;
    Ok(json!({
        "filter": "router",
        "envoy_version": version,
        "envoy_workers": workers,
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "cases": cases,
        "stream_first_byte_us": {"bare": first_byte[0], "same_api": first_byte[1], "translated": first_byte[2],
            "same_api_added": round1(first_byte[1] - first_byte[0]), "translation_added": round1(first_byte[2] - first_byte[1])},
        "in_vm": vm,
    }))
}

pub fn print_table(r: &Value) {
    println!("\nrouter (Envoy {}, {} worker(s)), chat 2 KB:", r["envoy_version"], r["envoy_workers"]);
    println!("{:<44} {:>12} {:>16} {:>14}", "side", "added p50 µs", "added CPU µs/rq", "% of bare rps");
    for c in r["cases"].as_array().into_iter().flatten() {
        println!(
            "{:<44} {:>12} {:>16} {:>14}",
            c["side"].as_str().unwrap_or_default(),
            c["added_p50_us"],
            c["throughput"]["added_cpu_us_per_request"],
            c["throughput"]["share_of_bare"]
        );
    }
    println!("streamed first byte: {}", r["stream_first_byte_us"]);
    println!("in the VM: {}", r["in_vm"]);
}
