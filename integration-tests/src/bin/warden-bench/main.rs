//! `make bench`: each Warden filter against the same Envoy without it, in one run.
//! `WARDEN_BENCH_ONLY=identity`, `=tool-acl`, `=token-budget`, `=router`, `=redaction`, `=chain`
//! or `=memory` (the chain's memory per worker) runs one.

mod chain;
mod identity;
mod redaction;
mod router;
mod token_budget;
mod tool_acl;

use anyhow::{Context, Result};
use warden_integration_tests::bench::{Figures, Load};
use warden_integration_tests::repo;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `load` against every URL in turn, off the async runtime (wrk blocks).
pub async fn run_all(load: &Load, urls: &[String]) -> Result<Vec<Figures>> {
    let (load, urls) = (load.clone(), urls.to_vec());
    tokio::task::spawn_blocking(move || urls.iter().map(|url| load.run(url)).collect()).await?
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let version = repo::envoy_version();
    let out = repo::root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    let only = std::env::var("WARDEN_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "identity" {
        let result = identity::identity(&version).await.context("identity benchmark")?;
        std::fs::write(out.join("identity.json"), serde_json::to_string_pretty(&result)?)?;
        identity::print_table(&result);
        println!("\nwritten: target/bench/identity.json");
    }
    if only.is_empty() || only == "tool-acl" {
        let result = tool_acl::tool_acl(&version).await.context("tool-acl benchmark")?;
        std::fs::write(out.join("tool-acl.json"), serde_json::to_string_pretty(&result)?)?;
        tool_acl::print_table(&result);
        println!("\nwritten: target/bench/tool-acl.json");
    }
    if only.is_empty() || only == "token-budget" {
        let result = token_budget::token_budget(&version).await.context("token-budget benchmark")?;
        std::fs::write(out.join("token-budget.json"), serde_json::to_string_pretty(&result)?)?;
        token_budget::print_table(&result);
        println!("\nwritten: target/bench/token-budget.json");
    }
    if only.is_empty() || only == "router" {
        let result = router::router(&version).await.context("router benchmark")?;
        std::fs::write(out.join("router.json"), serde_json::to_string_pretty(&result)?)?;
        router::print_table(&result);
        println!("\nwritten: target/bench/router.json");
    }
    if only.is_empty() || only == "redaction" {
        let result = redaction::redaction(&version).await.context("redaction benchmark")?;
        std::fs::write(out.join("redaction.json"), serde_json::to_string_pretty(&result)?)?;
        redaction::print_table(&result);
        println!("\nwritten: target/bench/redaction.json");
    }
    if only.is_empty() || only == "chain" {
        let result = chain::chain(&version).await.context("chain benchmark")?;
        std::fs::write(out.join("chain.json"), serde_json::to_string_pretty(&result)?)?;
        chain::print_table(&result);
        println!("\nwritten: target/bench/chain.json");
    }
    if only.is_empty() || only == "memory" {
        let result = chain::memory(&version).await.context("memory benchmark")?;
        std::fs::write(out.join("memory.json"), serde_json::to_string_pretty(&result)?)?;
        chain::print_memory(&result);
        println!("\nwritten: target/bench/memory.json");
    }
    Ok(())
}
