//! tool-acl: the same Envoy with and without the filter, on two cases:
//! - `tools/call` decision: a 1 KB `tools/call` body is buffered, parsed, hashed and decided
//!   (glob rules, an argument regex, an argument length constraint), then forwarded;
//! - `tools/list` filtering: the server's 50-tool answer is parsed, every tool pinned (shared
//!   data) and decided, and the answer rewritten without the hidden ones.
//!
//! The policy is `examples/tool-acl/policy.yaml` without its principal conditions and session
//! limits (no identity filter runs here, so the filter is measured alone), as one worker.
//! Writes `target/bench/tool-acl.json`, one entry per case.

use anyhow::Result;
use serde_json::{json, Value};
use std::time::Duration;
use warden_integration_tests::bench::{Comparison, Figures, Load};
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::TestServer;
use warden_integration_tests::repo;
use warden_integration_tests::tool_fixtures::{call_request, example_policy, list_answer, tool_definitions};

use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/tool-acl.yaml";
const LISTED_TOOLS: usize = 50;

/// The example policy without principal conditions or session limits.
fn bench_policy() -> String {
    let policy = example_policy().replace("      when: { tenants: [acme] }\n", "");
    let (head, rest) = policy.split_once("  limits:\n").unwrap_or((&policy, ""));
    let tail = rest.split_once("  llm:\n").map_or(String::new(), |(_, llm)| format!("  llm:\n{llm}"));
    format!("{head}{tail}")
}

/// An MCP server that answers instantly: the 50-tool listing, or a small tool result.
async fn upstream() -> Result<TestServer> {
    let listing = list_answer(3, &tool_definitions(LISTED_TOOLS));
    let result = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
    Ok(TestServer::start(0, move |req| {
        let listing = listing.clone();
        async move {
            use http_body_util::BodyExt;
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let answer = if body.windows(10).any(|w| w == b"tools/list") { listing } else { result.to_string() };
            warden_integration_tests::fixtures::json_response(200, answer)
        }
    })
    .await?)
}

/// The filter's own work per request inside a VM (wasmtime), without Envoy: the same request
/// sequence through the filter and through a Wasm filter that does nothing, the difference
/// per request (so the harness's own cost cancels out). What the Envoy figures add on top is
/// V8 and Envoy's host calls.
fn in_vm_us_per_request(policy: &str, case: &Case) -> Result<f64> {
    use warden_integration_tests::proxy_wasm_host::{HostEnv, Vm};
    let listing = list_answer(3, &tool_definitions(LISTED_TOOLS));
    let length = case.body.len().to_string();
    let headers =
        [(":method", "POST"), (":path", "/mcp/files"), (":authority", "gw"), ("content-length", length.as_str())];
    let one = |vm: &mut Vm| -> Result<()> {
        let s = vm.new_stream()?;
        vm.request_headers(s, &headers, false)?;
        vm.request_body(s, case.body.as_bytes(), true)?;
        vm.response_headers(s, &[(":status", "200"), ("content-type", "application/json")], false)?;
        let answer = if case.body.contains("tools/list") { listing.as_bytes() } else { b"{}".as_slice() };
        vm.response_body(s, answer, true)?;
        anyhow::ensure!(vm.local_reply(s).is_none(), "the bench request was refused: {:?}", vm.local_reply(s));
        vm.finish(s)
    };
    let time = |wasm: &str, config: &str| -> Result<f64> {
        let mut vm = warden_integration_tests::proxy_wasm_host::Plugin::load(&repo::filter_wasm(wasm))?
            .start(&HostEnv::default(), config.as_bytes())?;
        for _ in 0..200 {
            one(&mut vm)?;
        }
        let n = 2000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            one(&mut vm)?;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    let filtered = time("warden_tool_acl", policy)?;
    let noop = time("warden_noop_filter", "buffer-bodies")?;
    Ok(((filtered - noop) * 10.0).round() / 10.0)
}

struct Case {
    name: &'static str,
    body: String,
    describe: String,
}

pub async fn tool_acl(version: &str) -> Result<Value> {
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
    let policy = bench_policy();
    // The middle side runs a Wasm filter that only holds and reads the bodies, in tool-acl's
    // place: the floor for any filter that inspects bodies in this Envoy.
    let envoys = [
        builder().without_filter("warden.tool_acl").start().await?,
        builder()
            .wasm_code("warden.tool_acl", &repo::filter_wasm("warden_noop_filter"))
            .policy("warden.tool_acl", "buffer-bodies")
            .start()
            .await?,
        builder().policy("warden.tool_acl", &policy).start().await?,
    ];
    let urls: Vec<String> = envoys.iter().map(|e| format!("{}/mcp/files", e.url("agents"))).collect();
    let cases = [
        Case {
            name: "tools/call decision",
            body: call_request(1, "read_file", "/srv/notes/plan.txt", 1024),
            describe: "POST /mcp/files, a 1 KB tools/call of read_file, allowed by a glob rule after an argument regex and a length constraint".into(),
        },
        Case {
            name: "tools/list filtering",
            body: r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#.into(),
            describe: format!("POST /mcp/files tools/list; the server answers {LISTED_TOOLS} tools (JSON), the filter pins and decides each and hides those no rule allows"),
        },
    ];
    let seconds = env_u64("WARDEN_BENCH_SECONDS", 5);
    let mut entries = Vec::new();
    for case in &cases {
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json, text/event-stream".to_string()),
        ];
        let latency =
            Load { connections: 1, duration: Duration::from_secs(seconds), headers, body: Some(case.body.clone()) };
        let throughput = Load { connections: env_u64("WARDEN_BENCH_CONNECTIONS", 8) as u32, ..latency.clone() };
        run_all(&Load { duration: Duration::from_secs(1), ..throughput.clone() }, &urls).await?;
        let (mut quiet, mut busy): ([Vec<Figures>; 3], [Vec<Figures>; 3]) = Default::default();
        for round in 1..=ROUNDS {
            let one = run_all(&latency, &urls).await?;
            let many = run_all(&throughput, &urls).await?;
            eprintln!(
                "{} round {round}: 1 connection {one:?}\n  {} connections {many:?}",
                case.name, throughput.connections
            );
            for (i, (a, b)) in one.into_iter().zip(many).enumerate() {
                quiet[i].push(a);
                busy[i].push(b);
            }
        }
        let mut entry = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[2]))?;
        entry["wasm_buffering_noop"] = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[1]))?;
        let loaded: Vec<Figures> = (0..3).map(|i| Comparison::from_rounds(&busy[0], &busy[i]).filtered).collect();
        let cpu = |side: &Figures| ((1e6 / side.rps - 1e6 / loaded[0].rps) * 10.0).round() / 10.0;
        entry["throughput"] = json!({
            "connections": throughput.connections,
            "baseline": loaded[0],
            "wasm_buffering_noop": loaded[1],
            "filtered": loaded[2],
            "added_cpu_us_per_request": {"wasm_buffering_noop": cpu(&loaded[1]), "filtered": cpu(&loaded[2])},
        });
        entry["in_vm_us_per_request"] = in_vm_us_per_request(&policy, case)?.into();
        entry["case"] = case.name.into();
        entry["request"] = case.describe.clone().into();
        entry["body_bytes"] = case.body.len().into();
        entries.push(entry);
    }
    let answer = envoys[1].log();
    if answer.contains("invalid policy") {
        anyhow::bail!("the bench policy was refused:\n{answer}");
    }
    Ok(json!({
        "filter": "tool-acl",
        "envoy_version": version,
        "envoy_workers": workers,
        "connections": 1,
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "wasm_bytes": std::fs::metadata(repo::filter_wasm("warden_tool_acl")).map(|m| m.len()).unwrap_or(0),
        "cases": entries,
    }))
}

pub fn print_table(r: &Value) {
    println!(
        "\ntool-acl: Envoy {}, {} worker, wrk -t1, median of {} rounds x {} s; baseline = the same Envoy without the filter",
        r["envoy_version"], r["envoy_workers"], r["rounds"], r["seconds_per_round"]
    );
    println!(
        "added = side minus the same Envoy without any filter; noop = a Wasm filter that only buffers and reads bodies"
    );
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "case",
        "base p50",
        "base p99",
        "noop +p50",
        "noop +p99",
        "acl +p50",
        "acl +p99",
        "noop +CPU",
        "acl +CPU",
        "in VM us"
    );
    for case in r["cases"].as_array().into_iter().flatten() {
        let cpu = &case["throughput"]["added_cpu_us_per_request"];
        println!(
            "{:<22} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
            case["case"].as_str().unwrap_or(""),
            case["baseline"]["p50_us"],
            case["baseline"]["p99_us"],
            case["wasm_buffering_noop"]["added_p50_us"],
            case["wasm_buffering_noop"]["added_p99_us"],
            case["added_p50_us"],
            case["added_p99_us"],
            cpu["wasm_buffering_noop"],
            cpu["filtered"],
            case["in_vm_us_per_request"]
        );
    }
}
