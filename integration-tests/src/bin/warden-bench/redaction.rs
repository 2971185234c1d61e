//! redaction: the same Envoy with and without the filter (and with a do-nothing Wasm filter
//! that holds and reads bodies in its place), on a 2 KB chat, clean and with contacts in it
//! (placeholders made and restored); a streamed answer's first byte; the scanning throughput
//! on a 64 KB prompt with the whole catalogue, clean and PII-dense, inside the VM and native;
//! and the detectors' quality on the full generated corpus (1000 values a class, 2 MB clean).
//! Writes `target/bench/redaction.json`.

use anyhow::Result;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warden_integration_tests::bench::{first_byte_us, Comparison, Figures, Load};
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::{json_response, TestServer};
use warden_integration_tests::redaction_quality;
use warden_integration_tests::repo;
use warden_policy::principal::Caller;
use warden_policy::redaction::redactor::{Direction, Redactor, TextKind};

use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/redaction.yaml";

/// The example policy without its identity section (no identity filter runs here).
fn bench_policy() -> Result<String> {
    let example = std::fs::read_to_string(repo::root().join("examples/redaction/policy.yaml"))?;
    let start = example.find("redaction:").unwrap_or(0);
    Ok(example[start..].replace("paths: [/v1/]", "paths: [/v1/]\n  maxBodyBytes: 1048576"))
}

/// A provider that answers at once: a completion that repeats a placeholder (streamed in
/// three chunks when asked).
async fn upstream() -> Result<TestServer> {
    Ok(TestServer::start(0, |req| async move {
        use http_body_util::BodyExt;
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if body.windows(14).any(|w| w == b"\"stream\":true}" || w == b"\"stream\":true,") {
            let chunk = |text: &str| json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": text}}]});
            let text = format!(
                "data: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                chunk("Mailed ⟦EMA"),
                chunk("IL_1⟧ as asked"),
                chunk(".")
            );
            let mut response = json_response(200, text);
            response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/event-stream"));
            return response;
        }
        json_response(200, json!({"id": "c", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Mailed ⟦EMAIL_1⟧ as asked."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 420, "completion_tokens": 6, "total_tokens": 426}}).to_string())
    })
    .await?)
}

/// A chat of `size` bytes of prose from the clean corpus, with two contacts when `pii`.
fn chat(clean: &str, size: usize, pii: bool) -> String {
    let mut text: String = clean.chars().take(size).collect();
    if pii {
        text.push_str(" Please mail ann@example.com or call +44 20 7946 0958.");
    }
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).to_string()
}

/// Megabytes a second of `text` rewritten by the engine, natively.
fn native_mb_s(text: &str) -> Result<f64> {
    let policy = redaction_quality::default_policy()?;
    for _ in 0..30 {
        let mut redactor = Redactor::new(policy.clone(), Caller::default(), "/v1/chat/completions", false);
        std::hint::black_box(redactor.rewrite(text, Direction::Request, TextKind::Plain));
    }
    let rounds = 100;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut redactor = Redactor::new(policy.clone(), Caller::default(), "/v1/chat/completions", false);
        std::hint::black_box(redactor.rewrite(text, Direction::Request, TextKind::Plain));
    }
    Ok(mb_s(text.len() * rounds, start.elapsed()))
}

fn mb_s(bytes: usize, elapsed: Duration) -> f64 {
    (bytes as f64 / elapsed.as_secs_f64() / 1e6 * 10.0).round() / 10.0
}

/// Microseconds a request with `text` as its prompt spends in the filter inside a VM
/// (wasmtime), minus the same through a Wasm filter that only holds and reads bodies. The VM
/// is warmed first: the detectors' lazy DFA builds its states on the first texts it sees.
fn in_vm_us(policy: &str, text: &str) -> Result<f64> {
    use warden_integration_tests::proxy_wasm_host::{HostEnv, Plugin, Vm};
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).to_string();
    let length = body.len().to_string();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gw"),
        ("content-length", length.as_str()),
    ];
    let one = |vm: &mut Vm| -> Result<()> {
        let s = vm.new_stream()?;
        vm.request_headers(s, &headers, false)?;
        vm.request_body(s, body.as_bytes(), true)?;
        vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false)?;
        vm.response_body(s, b"{}", true)?;
        vm.finish(s)
    };
    let time = |wasm: &str, config: &str| -> Result<f64> {
        let mut vm = Plugin::load(&repo::filter_wasm(wasm))?.start(&HostEnv::default(), config.as_bytes())?;
        for _ in 0..30 {
            one(&mut vm)?;
        }
        let n = 60;
        let start = Instant::now();
        for _ in 0..n {
            one(&mut vm)?;
        }
        Ok(start.elapsed().as_secs_f64() / n as f64)
    };
    let filtered = time("warden_redaction", policy)?;
    let noop = time("warden_noop_filter", "buffer-bodies")?;
    Ok(((filtered - noop).max(1e-9) * 1e6 * 10.0).round() / 10.0)
}

fn in_vm_mb_s(policy: &str, text: &str) -> Result<f64> {
    let us = in_vm_us(policy, text)?;
    Ok((text.len() as f64 / us * 10.0).round() / 10.0)
}

pub async fn redaction(version: &str) -> Result<Value> {
    let corpus = tempfile::tempdir()?;
    redaction_quality::generate(corpus.path(), 11, 1000, 2048)?;
    let quality = redaction_quality::measure(corpus.path())?;
    let clean = std::fs::read_to_string(corpus.path().join("clean.txt"))?;
    let labelled: String = std::fs::read_to_string(corpus.path().join("labelled.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(String::from))
        .collect::<Vec<_>>()
        .join("\n");
    let prompt_clean: String = clean.chars().take(64 * 1024).collect();
    let prompt_dense: String = labelled.chars().take(64 * 1024).collect();
    let policy = bench_policy()?;
    let scanning = json!({
        "prompt_bytes": 64 * 1024,
        "in_vm_mb_s": {"clean": in_vm_mb_s(&policy, &prompt_clean)?, "pii_dense": in_vm_mb_s(&policy, &prompt_dense)?},
        "native_mb_s": {"clean": native_mb_s(&prompt_clean)?, "pii_dense": native_mb_s(&prompt_dense)?},
        "pii_dense_findings": redaction_quality::default_policy()?.requests.find_all(&prompt_dense, &|_| true).len(),
        "in_vm_us_2kb_chat": {
            "clean": in_vm_us(&policy, &prompt_clean.chars().take(2048).collect::<String>())?,
            "two_contacts": in_vm_us(&policy, &format!("{} Please mail ann@example.com or call +44 20 7946 0958.", prompt_clean.chars().take(2048).collect::<String>()))?,
        },
    });

    let server = upstream().await?;
    let workers = env_u64("WARDEN_BENCH_WORKERS", 1) as u32;
    let builder = || {
        Envoy::builder(CONFIG)
            .version(version)
            .cluster("mcp_files", server.port)
            .cluster("llm", server.port)
            .concurrency(workers)
            .without_filter("warden.identity")
    };
    let envoys = [
        builder().without_filter("warden.redaction").start().await?,
        builder()
            .wasm_code("warden.redaction", &repo::filter_wasm("warden_noop_filter"))
            .policy("warden.redaction", "buffer-bodies")
            .start()
            .await?,
        builder().policy("warden.redaction", &policy).start().await?,
    ];
    let urls: Vec<String> = envoys.iter().map(|e| format!("{}/v1/chat/completions", e.url("agents"))).collect();
    let seconds = env_u64("WARDEN_BENCH_SECONDS", 5);
    let headers = vec![("content-type".to_string(), "application/json".to_string())];
    let mut cases = Vec::new();
    for (name, body) in
        [("chat, 2 KB, clean", chat(&clean, 2048, false)), ("chat, 2 KB, two contacts", chat(&clean, 2048, true))]
    {
        let latency = Load {
            connections: 1,
            duration: Duration::from_secs(seconds),
            headers: headers.clone(),
            body: Some(body.clone()),
        };
        run_all(&Load { duration: Duration::from_secs(1), ..latency.clone() }, &urls).await?;
        let mut quiet: [Vec<Figures>; 3] = Default::default();
        for round in 1..=ROUNDS {
            let one = run_all(&latency, &urls).await?;
            eprintln!("{name} round {round}: {one:?}");
            for (i, f) in one.into_iter().enumerate() {
                quiet[i].push(f);
            }
        }
        let mut entry = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[2]))?;
        entry["wasm_buffering_noop"] = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[1]))?;
        entry["added_over_noop_p50_us"] = json!(
            ((entry["added_p50_us"].as_f64().unwrap_or(0.0)
                - entry["wasm_buffering_noop"]["added_p50_us"].as_f64().unwrap_or(0.0))
                * 10.0)
                .round()
                / 10.0
        );
        entry["case"] = name.into();
        entry["body_bytes"] = body.len().into();
        cases.push(entry);
    }
    let mut stream_body: Value = serde_json::from_str(&chat(&clean, 2048, true))?;
    stream_body["stream"] = json!(true);
    let stream_body = stream_body.to_string();
    let mut first_byte = Vec::new();
    for url in &urls {
        first_byte_us(url, None, &stream_body, 20).await?;
        first_byte.push(first_byte_us(url, None, &stream_body, 200).await?);
    }
    let log = envoys[2].log();
    if log.contains("invalid policy") {
        anyhow::bail!("the bench policy was refused:\n{log}");
    }
    Ok(json!({
        "filter": "redaction",
        "envoy_version": version,
        "envoy_workers": workers,
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "wasm_bytes": std::fs::metadata(repo::filter_wasm("warden_redaction")).map(|m| m.len()).unwrap_or(0),
        "cases": cases,
        "stream_first_byte_us": {"bare": first_byte[0], "wasm_buffering_noop": first_byte[1], "redaction": first_byte[2],
            "added": ((first_byte[2] - first_byte[0]) * 10.0).round() / 10.0},
        "scanning": scanning,
        "quality": {
            "corpus": "scripts/redaction-corpus.py --seed 11 --per-class 1000 --clean-kb 2048",
            "recall": quality.classes.iter().map(|(c, s)| (c.clone(), json!((s.recall() * 1000.0).round() / 10.0))).collect::<serde_json::Map<_, _>>(),
            "false_positives_per_100kb": (quality.false_positives_per_100kb() * 100.0).round() / 100.0,
            "false_positives": quality.false_positives,
            "clean_bytes": quality.clean_bytes,
            "misses": quality.misses(),
        },
    }))
}

pub fn print_table(r: &Value) {
    println!(
        "\nredaction: Envoy {}, {} worker, wrk -t1 -c1, median of {} rounds x {} s; baseline = the same Envoy without the filter",
        r["envoy_version"], r["envoy_workers"], r["rounds"], r["seconds_per_round"]
    );
    println!("{:<28} {:>9} {:>10} {:>12} {:>14}", "case", "base p50", "noop +p50", "redact +p50", "over noop p50");
    for case in r["cases"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:>9} {:>10} {:>12} {:>14}",
            case["case"].as_str().unwrap_or(""),
            case["baseline"]["p50_us"],
            case["wasm_buffering_noop"]["added_p50_us"],
            case["added_p50_us"],
            case["added_over_noop_p50_us"]
        );
    }
    println!("streamed chat, first byte (median of 200, us): {}", r["stream_first_byte_us"]);
    println!("scanning a 64 KB prompt (MB/s): {}", r["scanning"]);
    println!("quality: {}", r["quality"]);
}
