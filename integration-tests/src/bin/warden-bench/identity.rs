//! identity: an RS256 JWT on every request through `envoy/identity.yaml`, keys cached, measured
//! twice: with the default verified-token cache (a repeated token is verified once per VM) and
//! with the cache off (the signature is checked on every request). A fourth Envoy runs a Wasm
//! filter that does nothing in the same place, to show what the Wasm runtime itself costs.
//!
//! Latency is measured with one connection, so each request is alone and the added time is the
//! filter's own cost rather than queueing; throughput with eight connections on one Envoy worker,
//! from which the CPU time each request adds is read off. Rounds alternate between the sides so
//! that drift on this shared machine hits them alike. Writes `target/bench/identity.json`.

use anyhow::Result;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::Duration;
use warden_integration_tests::bench::{Comparison, Figures, Load};
use warden_integration_tests::envoy::{config_policy, Envoy};
use warden_integration_tests::fixtures::{EchoUpstream, JwksBehaviour, JwksServer};
use warden_integration_tests::repo;
use warden_policy::testing::tokens;

use crate::{env_u64, run_all};

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/identity.yaml";
const SIDES: [&str; 4] = [
    "Envoy, no filter",
    "Envoy + a Wasm filter that does nothing",
    "Envoy + identity (token cache on)",
    "Envoy + identity (verify every request)",
];

pub async fn identity(version: &str) -> Result<Value> {
    let upstream = EchoUpstream::start(0).await?;
    let rsa = tokens::rsa(Algorithm::RS256);
    let jwks = JwksServer::start(0, JwksBehaviour::Serve(tokens::jwks(&[&rsa]))).await?;
    let workers = env_u64("WARDEN_BENCH_WORKERS", 1) as u32;
    let builder = || {
        Envoy::builder(CONFIG)
            .version(version)
            .cluster("upstream", upstream.port())
            .cluster("jwks", jwks.port())
            .concurrency(workers)
    };
    let uncached_policy =
        config_policy(CONFIG, "warden.identity")?.replacen("identity:\n", "identity:\n  verifiedTokenCache: 0\n", 1);
    let envoys = [
        builder().without_filter("warden.identity").start().await?,
        builder().wasm_code("warden.identity", &repo::filter_wasm("warden_noop_filter")).start().await?,
        builder().start().await?,
        builder().policy("warden.identity", &uncached_policy).start().await?,
    ];

    let now = tokens::now_secs();
    let claims = json!({
        "iss": "https://idp.warden.test", "aud": "warden-gateway", "sub": "agent-bench",
        "iat": now, "exp": now + 3600, "scope": "models:call", "tenant": "acme",
    });
    let latency = Load {
        connections: 1,
        duration: Duration::from_secs(env_u64("WARDEN_BENCH_SECONDS", 5)),
        headers: vec![("authorization".into(), format!("Bearer {}", tokens::token(&rsa, &claims)))],
        body: None,
    };
    let throughput = Load { connections: env_u64("WARDEN_BENCH_CONNECTIONS", 8) as u32, ..latency.clone() };
    let urls: Vec<String> = envoys.iter().map(|e| format!("{}/v1/chat/completions", e.url("agents_plain"))).collect();

    // Warm up every side: the first requests also wait for the key set.
    tokio::time::sleep(Duration::from_millis(500)).await;
    run_all(&Load { duration: Duration::from_secs(1), ..throughput.clone() }, &urls).await?;

    let mut quiet: [Vec<Figures>; 4] = Default::default();
    let mut busy: [Vec<Figures>; 4] = Default::default();
    for round in 1..=ROUNDS {
        let one = run_all(&latency, &urls).await?;
        let many = run_all(&throughput, &urls).await?;
        eprintln!("round {round}: 1 connection {one:?}\n         {} connections {many:?}", throughput.connections);
        for (i, (a, b)) in one.into_iter().zip(many).enumerate() {
            quiet[i].push(a);
            busy[i].push(b);
        }
    }

    let mut result = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[2]))?;
    result["wasm_noop"] = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[1]))?;
    result["uncached"] = serde_json::to_value(Comparison::from_rounds(&quiet[0], &quiet[3]))?;
    let loaded: Vec<Figures> = (0..4).map(|i| Comparison::from_rounds(&busy[0], &busy[i]).filtered).collect();
    // CPU time each request adds on the one worker: 1/rps(side) - 1/rps(no filter).
    let cpu = |side: &Figures| ((1e6 / side.rps - 1e6 / loaded[0].rps) * 10.0).round() / 10.0;
    result["throughput"] = json!({
        "connections": throughput.connections,
        "baseline": loaded[0],
        "wasm_noop": loaded[1],
        "filtered": loaded[2],
        "uncached": loaded[3],
        "added_cpu_us_per_request": {"wasm_noop": cpu(&loaded[1]), "filtered": cpu(&loaded[2]), "uncached": cpu(&loaded[3])},
    });
    result["envoy_version"] = version.into();
    result["envoy_workers"] = workers.into();
    result["connections"] = latency.connections.into();
    result["seconds_per_round"] = latency.duration.as_secs().into();
    result["rounds"] = ROUNDS.into();
    result["wasm_bytes"] = std::fs::metadata(repo::filter_wasm("warden_identity")).map(|m| m.len()).unwrap_or(0).into();
    result["case"] = "GET /v1/chat/completions with an RS256 JWT; keys cached; filtered = default policy (verified-token cache on), uncached = verifiedTokenCache: 0, wasm_noop = a Wasm filter that does nothing".into();
    Ok(result)
}

pub fn print_table(r: &Value) {
    println!(
        "\nidentity latency: Envoy {}, {} worker, wrk -t1 -c1, median of {} rounds x {} s",
        r["envoy_version"], r["envoy_workers"], r["rounds"], r["seconds_per_round"]
    );
    println!("{:<42} {:>9} {:>9} {:>9} {:>12} {:>12}", "", "req/s", "p50 us", "p99 us", "added p50", "added p99");
    let latency = [&r["baseline"], &r["wasm_noop"]["filtered"], &r["filtered"], &r["uncached"]["filtered"]];
    let added = [None, Some(&r["wasm_noop"]), Some(r), Some(&r["uncached"])];
    for ((label, side), added) in SIDES.iter().zip(latency).zip(added) {
        let (p50, p99) = added
            .map_or((String::new(), String::new()), |a| (a["added_p50_us"].to_string(), a["added_p99_us"].to_string()));
        println!("{label:<42} {:>9} {:>9} {:>9} {p50:>12} {p99:>12}", side["rps"], side["p50_us"], side["p99_us"]);
    }
    let t = &r["throughput"];
    println!("\nidentity throughput: wrk -t1 -c{}", t["connections"]);
    println!("{:<42} {:>9} {:>18}", "", "req/s", "added CPU us/req");
    let cpu = &t["added_cpu_us_per_request"];
    let rows = [
        (&t["baseline"], Value::Null),
        (&t["wasm_noop"], cpu["wasm_noop"].clone()),
        (&t["filtered"], cpu["filtered"].clone()),
        (&t["uncached"], cpu["uncached"].clone()),
    ];
    for (label, (side, cpu)) in SIDES.iter().zip(rows) {
        let cpu = if cpu.is_null() { String::new() } else { cpu.to_string() };
        println!("{label:<42} {:>9} {cpu:>18}", side["rps"]);
    }
}
