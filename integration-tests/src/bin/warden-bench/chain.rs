//! chain: Warden's chain as shipped (`envoy/warden.yaml`: identity with a cached RS256 JWT,
//! tool-acl on the model and MCP routes, redaction with every detector, token-budget with a local budget, the router and its
//! providers' hop, with an environment credential) against the same
//! Envoy without Warden's filters, and with as many do-nothing Wasm filters that hold and read
//! every body in their place (what any body-reading Wasm chain pays), in one run, rounds
//! alternated. Cases: a 2 KB chat completion and a 1 KB MCP `tools/call` (latency at one
//! connection, CPU per request and throughput at 16), the chat at 16 and 128 KB of prompt (the
//! cost per KB), a streamed chat's first byte, and each configuration's idle RSS with two
//! workers (and of the chain built as one module per filter, with the Wasm VMs each runs).
//! Writes `target/bench/chain.json`.

use anyhow::{Context, Result};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::Duration;
use warden_integration_tests::bench::{first_byte_us, Comparison, Figures, Load};
use warden_integration_tests::envoy::{Envoy, EnvoyBuilder};
use warden_integration_tests::fixtures::{json_response, TestServer};
use warden_integration_tests::repo;
use warden_policy::testing::tokens;

use crate::token_budget::{chat_body, rss_kib};
use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/warden.yaml";
const FILTERS: [&str; 5] =
    ["warden.identity", "warden.tool_acl", "warden.redaction", "warden.token_budget", "warden.router"];
/// The per-filter modules, in `FILTERS` order; the shipped chain runs all five from warden.wasm.
const PER_FILTER_MODULES: [&str; 5] =
    ["warden_identity", "warden_tool_acl", "warden_redaction", "warden_token_budget", "warden_router"];
const SIDES: [&str; 3] = ["Envoy alone", "Envoy + 5 do-nothing body-holding Wasm filters", "Envoy + Warden's chain"];

/// The shipped chain's policy, with what a benchmark needs instead of the demo's: agents
/// authenticate with an RS256 JWT (keys inline, tokens cached), no per-session limits or
/// loop protection (wrk repeats one request), bodies up to 1 MB, one local budget.
fn policy(jwks: &str) -> Result<String> {
    let example = std::fs::read_to_string(repo::root().join("examples/warden/policy.yaml"))?;
    let start = example.find("toolAcl:").context("no toolAcl section")?;
    let end = example.find("tokenBudget:").context("no tokenBudget section")?;
    let tool_acl = &example[start..end];
    let limits = tool_acl.find("  limits:").context("no limits")?;
    let llm = tool_acl.find("  llm:").context("no llm")?;
    let tool_acl =
        format!("{}{}", &tool_acl[..limits], &tool_acl[llm..]).replace("maxBodyBytes: 65536", "maxBodyBytes: 1048576");
    // Redaction as shipped: every detector, placeholders for contacts, secrets blocked.
    let start = example.find("redaction:").context("no redaction section")?;
    let end = example.find("\nrouter:").context("no router section")?;
    let redaction = &example[start..=end];
    Ok(format!(
        "requestHeaders: hold
identity:
  issuers:
    - name: bench
      issuer: https://idp.warden.test
      audiences: [warden-gateway]
      algorithms: [RS256]
      tenantClaim: tenant
      jwks: {{ inline: '{jwks}' }}
  routes:
    - name: agents
      agent: [jwt]
{tool_acl}{redaction}tokenBudget:
  maxBodyBytes: 1048576
  models:
    - {{ name: 'gpt-4o*', price: {{ input: 2.5, output: 10 }} }}
  budgets:
    - {{ id: tenant-day, scope: [tenant], unit: totalTokens, limit: 4000000000, window: day }}
router:
  providers:
    - {{ name: openai, kind: openai, cluster: llm, credential: {{ env: OPENAI_API_KEY }} }}
  models:
    - {{ alias: gpt-4o, targets: [{{ provider: openai, model: gpt-4o }}] }}
"
    ))
}

/// One upstream for every route: a completion with usage (streamed when asked), or a tool
/// result for a JSON-RPC call.
async fn upstream() -> Result<TestServer> {
    Ok(TestServer::start(0, |req| async move {
        use http_body_util::BodyExt;
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        if path.starts_with("/mcp/") {
            let id = serde_json::from_slice::<Value>(&body).ok().map(|v| v["id"].clone()).unwrap_or(json!(1));
            return json_response(200, json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "ok"}]}}).to_string());
        }
        if body.windows(14).any(|w| w == b"\"stream\":true}" || w == b"\"stream\":true,") {
            let chunk = |delta: Value| json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [{"index": 0, "delta": delta}]});
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 420, "completion_tokens": 2}});
            let text = format!("data: {}\n\ndata: {}\n\ndata: {usage}\n\ndata: [DONE]\n\n", chunk(json!({"content": "Do"})), chunk(json!({"content": "ne."})));
            let mut response = json_response(200, text);
            response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/event-stream"));
            return response;
        }
        json_response(200, json!({"id": "c", "object": "chat.completion", "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 420, "completion_tokens": 2, "total_tokens": 422}}).to_string())
    })
    .await?)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the state field), in 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `load` against each URL in turn; with each side's figures, the Envoy's CPU time per
/// request (all its threads: the worker, and the main thread's stats and timers).
pub async fn run_with_cpu(load: &Load, urls: &[String], pids: &[u32]) -> Result<Vec<(Figures, f64)>> {
    let mut out = Vec::new();
    for (url, pid) in urls.iter().zip(pids) {
        let before = cpu_seconds(*pid);
        let figures = run_all(load, std::slice::from_ref(url)).await?.remove(0);
        let used = cpu_seconds(*pid) - before;
        let requests = figures.rps * load.duration.as_secs_f64();
        out.push((figures, used * 1e6 / requests.max(1.0)));
    }
    Ok(out)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn mcp_call() -> String {
    let skeleton = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/srv/notes.txt", "content": ""}}});
    let pad = 1024usize.saturating_sub(skeleton.to_string().len());
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_file", "arguments": {"path": "/srv/notes.txt", "content": "x".repeat(pad)}}}).to_string()
}

/// `envoy/warden.yaml` with `workers` workers, every cluster sent to the bench's upstream.
fn envoy_builder(version: &str, upstream_port: u16, policy: &str, workers: u32) -> EnvoyBuilder {
    let mut b = Envoy::builder(CONFIG)
        .version(version)
        .concurrency(workers)
        .env("OPENAI_API_KEY", "sk-bench")
        .env("ANTHROPIC_API_KEY", "sk-bench")
        .policy("warden.router_attempt", policy);
    for cluster in ["mcp_files", "llm", "llm_mini", "ratelimit"] {
        b = b.cluster(cluster, upstream_port);
    }
    b
}

/// The bench's agent: the policy, an RS256 token its identity section accepts, and the JWKS.
fn bench_agent() -> Result<(String, String, String)> {
    let rsa = tokens::rsa(Algorithm::RS256);
    let jwks = tokens::jwks(&[&rsa]);
    let policy = policy(&jwks)?;
    let now = tokens::now_secs();
    let token = tokens::token(
        &rsa,
        &json!({"iss": "https://idp.warden.test", "aud": "warden-gateway", "sub": "agent-bench", "iat": now, "exp": now + 7200, "tenant": "acme"}),
    );
    Ok((policy, token, jwks))
}

/// Memory per worker, measured: the chain at 1, 2 and 4 workers, idle and then after chat
/// completions on many connections (the kernel spreads them over every worker's listener), since
/// each VM builds token-budget's vocabularies and redaction's detectors on first use. What one
/// more worker costs is the slope between 1 and 4 workers. Writes `target/bench/memory.json`.
pub async fn memory(version: &str) -> Result<Value> {
    let server = upstream().await?;
    let (policy, token, _) = bench_agent()?;
    let mut rows = Vec::new();
    for workers in [1u32, 2, 4] {
        let envoy = FILTERS
            .iter()
            .fold(envoy_builder(version, server.port, &policy, workers), |b, f| b.policy(f, &policy))
            .start()
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_kib(envoy.pid());
        let traffic = Load {
            connections: 64,
            duration: Duration::from_secs(3),
            headers: vec![
                ("authorization".to_string(), format!("Bearer {token}")),
                ("content-type".to_string(), "application/json".to_string()),
            ],
            body: Some(chat_body(2048)),
        };
        run_all(&traffic, &[format!("{}/v1/chat/completions", envoy.url("agents"))]).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        rows.push(json!({
            "workers": workers,
            "idle_rss_mib": (idle as f64 / 1024.0).round(),
            "warm_rss_mib": (rss_kib(envoy.pid()) as f64 / 1024.0).round(),
            "wasm_vms": envoy.stat("wasm.envoy.wasm.runtime.v8.active").await,
        }));
    }
    let warm = |i: usize| rows[i]["warm_rss_mib"].as_f64().unwrap_or(0.0);
    let idle = |i: usize| rows[i]["idle_rss_mib"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "envoy_version": version,
        "by_workers": rows,
        "warm_mib_per_worker": ((warm(2) - warm(0)) / 3.0).round(),
        "idle_mib_per_worker": ((idle(2) - idle(0)) / 3.0).round(),
    }))
}

pub fn print_memory(r: &Value) {
    println!(
        "
memory: Envoy {}, the chain of {CONFIG}, RSS in MiB",
        r["envoy_version"]
    );
    println!("{:>7} {:>6} {:>6} {:>8}", "workers", "idle", "warm", "Wasm VMs");
    for row in r["by_workers"].as_array().into_iter().flatten() {
        let cell = |key: &str| row[key].to_string();
        println!(
            "{:>7} {:>6} {:>6} {:>8}",
            cell("workers"),
            cell("idle_rss_mib"),
            cell("warm_rss_mib"),
            cell("wasm_vms")
        );
    }
    println!(
        "per worker (1 -> 4 workers): {} MiB warm, {} MiB idle",
        r["warm_mib_per_worker"], r["idle_mib_per_worker"]
    );
}

pub async fn chain(version: &str) -> Result<Value> {
    let server = upstream().await?;
    let (policy, token, jwks) = bench_agent()?;
    let builder = |workers: u32| envoy_builder(version, server.port, &policy, workers);
    let sides = |workers: u32| -> [EnvoyBuilder; 3] {
        // Without the router, the model route goes straight to the provider's cluster.
        let bare = FILTERS
            .iter()
            .fold(builder(workers), |b, f| b.without_filter(f))
            .without_filter("warden.router_attempt")
            .route_to("models", "llm");
        let noop = FILTERS
            .iter()
            .fold(builder(workers), |b, f| {
                b.wasm_code(f, &repo::filter_wasm("warden_noop_filter")).policy(f, "buffer-bodies")
            })
            .without_filter("warden.router_attempt")
            .route_to("models", "llm");
        let chain = FILTERS.iter().fold(builder(workers), |b, f| b.policy(f, &policy));
        [bare, noop, chain]
    };

    // Idle memory, two workers, one configuration at a time; and the chain built as one module
    // per filter (each its own VM), against the shipped one module (one VM per thread for all).
    let per_filter_modules = FILTERS
        .iter()
        .zip(PER_FILTER_MODULES)
        .fold(builder(2), |b, (f, module)| b.wasm_code(f, &repo::filter_wasm(module)).policy(f, &policy));
    let labels = SIDES.iter().copied().chain(["Envoy + Warden's chain, one module per filter"]);
    let mut rss = Vec::new();
    for (label, side) in labels.zip(sides(2).into_iter().chain([per_filter_modules])) {
        let envoy = side.start().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        rss.push(json!({
            "side": label,
            "rss_mib": (rss_kib(envoy.pid()) as f64 / 1024.0).round(),
            "wasm_vms": envoy.stat("wasm.envoy.wasm.runtime.v8.active").await,
        }));
    }

    let workers = env_u64("WARDEN_BENCH_WORKERS", 1) as u32;
    let [bare, noop, chain] = sides(workers);
    let envoys = [bare.start().await?, noop.start().await?, chain.start().await?];
    let seconds = env_u64("WARDEN_BENCH_SECONDS", 5);
    let headers = vec![
        ("authorization".to_string(), format!("Bearer {token}")),
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), "application/json, text/event-stream".to_string()),
    ];
    let chat_urls: Vec<String> = envoys.iter().map(|e| format!("{}/v1/chat/completions", e.url("agents"))).collect();
    let mcp_urls: Vec<String> = envoys.iter().map(|e| format!("{}/mcp/files", e.url("agents"))).collect();
    let cases: Vec<(String, Vec<String>, String, bool)> = vec![
        ("chat, 2 KB".into(), chat_urls.clone(), chat_body(2048), true),
        ("MCP tools/call, 1 KB".into(), mcp_urls, mcp_call(), true),
        ("chat, 16 KB".into(), chat_urls.clone(), chat_body(16 * 1024), false),
        ("chat, 128 KB".into(), chat_urls.clone(), chat_body(128 * 1024), false),
    ];
    let connections = env_u64("WARDEN_BENCH_CONNECTIONS", 16) as u32;
    let pids: Vec<u32> = envoys.iter().map(Envoy::pid).collect();
    let mut results = Vec::new();
    for (name, urls, body, loaded) in &cases {
        let latency = Load {
            connections: 1,
            duration: Duration::from_secs(seconds),
            headers: headers.clone(),
            body: Some(body.clone()),
        };
        let busy = Load { connections, ..latency.clone() };
        run_all(&Load { duration: Duration::from_secs(1), ..latency.clone() }, urls).await?;
        let (mut quiet, mut heavy): ([Vec<Figures>; 3], [Vec<Figures>; 3]) = Default::default();
        let mut cpu: [Vec<f64>; 3] = Default::default();
        for round in 1..=ROUNDS {
            let one = run_all(&latency, urls).await?;
            eprintln!("{name} round {round}: 1 connection {one:?}");
            for (i, f) in one.into_iter().enumerate() {
                quiet[i].push(f);
            }
            if *loaded {
                let many = run_with_cpu(&busy, urls, &pids).await?;
                eprintln!("{name} round {round}: {connections} connections {many:?}");
                for (i, (f, us)) in many.into_iter().enumerate() {
                    heavy[i].push(f);
                    cpu[i].push(us);
                }
            }
        }
        let mut entry = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[2]))?;
        entry["wasm_noop"] = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[1]))?;
        if *loaded {
            let figures: Vec<Figures> =
                (0..3).map(|i| Comparison::from_rounds(&heavy[0], &heavy[i]).filtered).collect();
            let per_request: Vec<f64> = cpu.iter().map(|c| median(c.clone())).collect();
            let round1 = |v: f64| (v * 10.0).round() / 10.0;
            entry["throughput"] = json!({
                "connections": connections,
                "rps": {"bare": figures[0].rps, "wasm_noop": figures[1].rps, "chain": figures[2].rps},
                "chain_share_of_bare": round1(figures[2].rps / figures[0].rps * 100.0),
                "envoy_cpu_us_per_request": {"bare": round1(per_request[0]), "wasm_noop": round1(per_request[1]), "chain": round1(per_request[2])},
                "added_cpu_us_per_request": {"wasm_noop": round1(per_request[1] - per_request[0]), "chain": round1(per_request[2] - per_request[0])},
            });
        }
        entry["case"] = name.clone().into();
        entry["body_bytes"] = body.len().into();
        results.push(entry);
    }
    let added = |i: usize| results[i]["added_p50_us"].as_f64().unwrap_or(0.0);
    let per_kb = ((added(3) - added(0)) / 126.0 * 10.0).round() / 10.0;

    let mut stream_body: Value = serde_json::from_str(&chat_body(2048))?;
    stream_body["stream"] = json!(true);
    let stream_body = stream_body.to_string();
    let mut first_byte = Vec::new();
    for url in &chat_urls {
        first_byte_us(url, Some(&token), &stream_body, 20).await?;
        first_byte.push(first_byte_us(url, Some(&token), &stream_body, 200).await?);
    }
    // Identity alone against Envoy's native `jwt_authn` on the same RS256 token (keys inline,
    // same issuer and audience): the CPU each adds to the 2 KB chat at 16 connections.
    let jwt_authn = format!(
        r#"
name: envoy.filters.http.jwt_authn
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
  providers:
    bench:
      issuer: https://idp.warden.test
      audiences: [warden-gateway]
      local_jwks: {{ inline_string: '{}' }}
  rules:
    - match: {{ prefix: / }}
      requires: {{ provider_name: bench }}
"#,
        jwks
    );
    let native = FILTERS
        .iter()
        .fold(builder(workers), |b, f| b.without_filter(f))
        .filter_before_router(&jwt_authn)
        .without_filter("warden.router_attempt")
        .route_to("models", "llm");
    // Every filter of the chain but identity, named once (FILTERS), so none stays by mistake.
    let identity_only = FILTERS
        .iter()
        .filter(|f| **f != "warden.identity")
        .fold(builder(workers).policy("warden.identity", &policy), |b, f| b.without_filter(f))
        .without_filter("warden.router_attempt")
        .route_to("models", "llm");
    let authn = [native.start().await?, identity_only.start().await?];
    let authn_urls: Vec<String> = std::iter::once(chat_urls[0].clone())
        .chain(authn.iter().map(|e| format!("{}/v1/chat/completions", e.url("agents"))))
        .collect();
    let authn_pids = [pids[0], authn[0].pid(), authn[1].pid()];
    let busy = Load {
        connections,
        duration: Duration::from_secs(seconds),
        headers: headers.clone(),
        body: Some(chat_body(2048)),
    };
    run_all(&Load { duration: Duration::from_secs(1), ..busy.clone() }, &authn_urls).await?;
    let mut authn_cpu: [Vec<f64>; 3] = Default::default();
    for round in 1..=ROUNDS {
        let figures = run_with_cpu(&busy, &authn_urls, &authn_pids).await?;
        eprintln!("jwt_authn vs identity round {round}: {figures:?}");
        for (i, (_, us)) in figures.into_iter().enumerate() {
            authn_cpu[i].push(us);
        }
    }
    let authn_cpu: Vec<f64> = authn_cpu.iter().map(|c| median(c.clone())).collect();
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let authentication = json!({
        "case": "chat, 2 KB, RS256 JWT, 16 connections",
        "envoy_cpu_us_per_request": {"bare": round1(authn_cpu[0]), "jwt_authn": round1(authn_cpu[1]), "identity": round1(authn_cpu[2])},
        "added_cpu_us_per_request": {"jwt_authn": round1(authn_cpu[1] - authn_cpu[0]), "identity": round1(authn_cpu[2] - authn_cpu[0])},
    });
    let chain_envoy = &envoys[2];
    anyhow::ensure!(chain_envoy.stat("wasmcustom.warden.identity.denied").await == 0, "identity refused requests");
    anyhow::ensure!(chain_envoy.stat("wasmcustom.warden.token_budget.refused").await == 0, "budgets refused requests");
    anyhow::ensure!(chain_envoy.stat("wasmcustom.warden.tool_acl.denied").await == 0, "tool-acl denied requests");
    Ok(json!({
        "filter": "chain",
        "envoy_version": version,
        "envoy_workers": workers,
        "seconds_per_round": seconds,
        "rounds": ROUNDS,
        "sides": SIDES,
        "cases": results,
        "added_p50_us_per_kb_of_prompt": per_kb,
        "stream_first_byte_us": {"bare": first_byte[0], "wasm_noop": first_byte[1], "chain": first_byte[2],
            "chain_added": ((first_byte[2] - first_byte[0]) * 10.0).round() / 10.0},
        "idle_rss_two_workers": rss,
        "authentication": authentication,
    }))
}

pub fn print_table(r: &Value) {
    println!(
        "\nchain: Envoy {}, {} worker, wrk -t1, median of {} rounds x {} s; added = side minus Envoy alone",
        r["envoy_version"], r["envoy_workers"], r["rounds"], r["seconds_per_round"]
    );
    println!(
        "{:<22} {:>9} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "case", "base p50", "noop +p50", "chain +p50", "noop +CPU", "chain +CPU", "chain/bare"
    );
    for c in r["cases"].as_array().into_iter().flatten() {
        let t = &c["throughput"];
        let cpu = |k: &str| if t.is_null() { String::new() } else { t["added_cpu_us_per_request"][k].to_string() };
        let share = if t.is_null() { String::new() } else { format!("{}%", t["chain_share_of_bare"]) };
        println!(
            "{:<22} {:>9} {:>12} {:>12} {:>14} {:>14} {:>12}",
            c["case"].as_str().unwrap_or(""),
            c["baseline"]["p50_us"].to_string(),
            c["wasm_noop"]["added_p50_us"].to_string(),
            c["added_p50_us"].to_string(),
            cpu("wasm_noop"),
            cpu("chain"),
            share
        );
    }
    println!("added p50 per KB of prompt (2 -> 128 KB): {} us", r["added_p50_us_per_kb_of_prompt"]);
    println!("streamed chat, first byte (median of 200): {}", r["stream_first_byte_us"]);
    println!("idle RSS, two workers: {}", r["idle_rss_two_workers"]);
    println!("identity alone vs Envoy's jwt_authn: {}", r["authentication"]);
}
