//! `warden-ratelimit`: the Envoy RLS v3 service for Warden's global budgets.
//!
//! ```text
//! warden-ratelimit [--listen 127.0.0.1:8081] [--redis redis://127.0.0.1:6379/0] [--prefix warden:]
//!                  [--max-keys 100000]
//! ```
//! Without `--redis` counters are kept in memory (one replica only), at most `--max-keys` of
//! them: a draw that needs one more is answered RESOURCE_EXHAUSTED.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use warden_ratelimit::limiter::Limiter;
use warden_ratelimit::service::RateLimitServer;
use warden_ratelimit::store::{MemoryStore, RedisStore, Store, DEFAULT_MAX_KEYS};

/// How long one Redis call may take before the caller is told UNAVAILABLE: well inside the
/// filter's own reservation timeout, so its failure mode, not a timeout, decides.
const REDIS_TIMEOUT: Duration = Duration::from_millis(15);

struct Args {
    listen: SocketAddr,
    redis: Option<String>,
    prefix: String,
    max_keys: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        redis: None,
        prefix: "warden:".into(),
        max_keys: DEFAULT_MAX_KEYS,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--redis" => args.redis = Some(value()?),
            "--prefix" => args.prefix = value()?,
            "--max-keys" => args.max_keys = value()?.parse().map_err(|e| format!("--max-keys: {e}"))?,
            "-h" | "--help" => {
                return Err(
                    "usage: warden-ratelimit [--listen ADDR] [--redis redis://HOST:PORT/DB] [--prefix KEYPREFIX] [--max-keys N]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let store = match &args.redis {
        None => Store::Memory(MemoryStore::new(args.max_keys)),
        Some(url) => match RedisStore::connect(url, REDIS_TIMEOUT).await {
            Ok(store) => Store::Redis(store),
            Err(e) => {
                eprintln!("warden-ratelimit: cannot connect to {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("warden-ratelimit: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let backend = if args.redis.is_some() { "redis" } else { "memory" };
    println!("warden-ratelimit listening on {} ({backend})", args.listen);
    let server = RateLimitServer::new(Limiter { store, prefix: args.prefix });
    // Small unary answers must not wait for delayed ACKs (Nagle): reservations have a 20 ms budget.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tonic::transport::Server::builder().add_service(server).serve_with_incoming_shutdown(incoming, shutdown).await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-ratelimit: {e}");
            ExitCode::FAILURE
        }
    }
}
