//! `make bench`: each Warden filter against the same Envoy without it, in one run.
//!
//! identity: an RS256 JWT on every request through `envoy/identity.yaml`, keys cached, measured
//! twice: with the default verified-token cache (a repeated token is verified once per VM) and
//! with the cache off (the signature is checked on every request).
//! Writes `target/bench/identity.json` and prints a table.

use anyhow::{Context, Result};
use jsonwebtoken::Algorithm;
use std::time::Duration;
use warden_integration_tests::bench::{Comparison, Figures, Load};
use warden_integration_tests::envoy::{config_policy, Envoy};
use warden_integration_tests::fixtures::{EchoUpstream, JwksBehaviour, JwksServer};
use warden_integration_tests::repo;
use warden_policy::testing::tokens;

const ROUNDS: usize = 3;
const CONFIG: &str = "envoy/identity.yaml";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn side(json: &mut serde_json::Value, comparison: &Comparison) -> Result<()> {
    let value = serde_json::to_value(comparison)?;
    if let (Some(target), Some(source)) = (json.as_object_mut(), value.as_object()) {
        target.extend(source.clone());
    }
    Ok(())
}

async fn identity(version: &str) -> Result<serde_json::Value> {
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
    let baseline = builder().without_filter("warden.identity").start().await?;
    let cached = builder().start().await?;
    let uncached = builder().policy("warden.identity", &uncached_policy).start().await?;

    let now = tokens::now_secs();
    let claims = serde_json::json!({
        "iss": "https://idp.warden.test", "aud": "warden-gateway", "sub": "agent-bench",
        "iat": now, "exp": now + 3600, "scope": "models:call", "tenant": "acme",
    });
    let load = Load {
        connections: env_u64("WARDEN_BENCH_CONNECTIONS", 8) as u32,
        duration: Duration::from_secs(env_u64("WARDEN_BENCH_SECONDS", 5)),
        headers: vec![("authorization".into(), format!("Bearer {}", tokens::token(&rsa, &claims)))],
    };
    let path = "/v1/chat/completions";
    let urls = [baseline.url("agents_plain"), cached.url("agents_plain"), uncached.url("agents_plain")]
        .map(|u| format!("{u}{path}"));

    // Warm up every side (the first requests also wait for the key set), then alternate rounds
    // so that drift on this shared machine hits every side alike.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm = Load { duration: Duration::from_secs(1), ..load.clone() };
    let warm_urls = urls.clone();
    tokio::task::spawn_blocking(move || warm_urls.iter().try_for_each(|u| warm.run(u).map(|_| ()))).await??;
    let mut rounds: [Vec<Figures>; 3] = Default::default();
    for round in 1..=ROUNDS {
        let (l, u) = (load.clone(), urls.clone());
        let figures =
            tokio::task::spawn_blocking(move || -> Result<Vec<Figures>> { u.iter().map(|url| l.run(url)).collect() })
                .await??;
        eprintln!(
            "round {round}: baseline {:?}\n         cached   {:?}\n         uncached {:?}",
            figures[0], figures[1], figures[2]
        );
        for (i, f) in figures.into_iter().enumerate() {
            rounds[i].push(f);
        }
    }
    let mut json = serde_json::json!({});
    side(&mut json, &Comparison::from_rounds(&rounds[0], &rounds[1]))?;
    json["uncached"] = serde_json::to_value(Comparison::from_rounds(&rounds[0], &rounds[2]))?;
    json["envoy_version"] = version.into();
    json["envoy_workers"] = workers.into();
    json["connections"] = load.connections.into();
    json["seconds_per_round"] = load.duration.as_secs().into();
    json["rounds"] = ROUNDS.into();
    json["wasm_bytes"] = std::fs::metadata(repo::filter_wasm("warden_identity")).map(|m| m.len()).unwrap_or(0).into();
    json["case"] = "GET /v1/chat/completions with an RS256 JWT on every request; keys cached; filtered = default policy (verified-token cache on), uncached = verifiedTokenCache: 0".into();
    Ok(json)
}

fn print_table(json: &serde_json::Value) {
    let row = |label: &str, side: &serde_json::Value| {
        println!("{label:<38} {:>9} {:>9} {:>9}", side["rps"], side["p50_us"], side["p99_us"]);
    };
    println!(
        "\nidentity: Envoy {}, {} worker, wrk -t1 -c{}, median of {} rounds × {} s",
        json["envoy_version"], json["envoy_workers"], json["connections"], json["rounds"], json["seconds_per_round"]
    );
    println!("{:<38} {:>9} {:>9} {:>9}", "", "req/s", "p50 µs", "p99 µs");
    row("Envoy, no filter", &json["baseline"]);
    row("Envoy + identity (token cache on)", &json["filtered"]);
    row("Envoy + identity (verify every request)", &json["uncached"]["filtered"]);
    println!("{:<38} {:>9} {:>9} {:>9}", "added, token cache on", "", json["added_p50_us"], json["added_p99_us"]);
    println!(
        "{:<38} {:>9} {:>9} {:>9}",
        "added, verify every request", "", json["uncached"]["added_p50_us"], json["uncached"]["added_p99_us"]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let version = repo::envoy_version();
    let out = repo::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let json = identity(&version).await.context("identity benchmark")?;
    std::fs::write(out.join("identity.json"), serde_json::to_string_pretty(&json)?)?;
    print_table(&json);
    println!("\nwritten: target/bench/identity.json");
    Ok(())
}
