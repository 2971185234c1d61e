//! `warden-ratelimit`: the Envoy RLS v3 service for Warden's global budgets.
//!
//! ```text
//! warden-ratelimit [--listen 127.0.0.1:8081] [--redis redis://127.0.0.1:6379/0 | --redis-cluster URL,URL…]
//!                  [--prefix warden:] [--max-keys 100000] [--tls-cert PEM --tls-key PEM --client-ca PEM] [--insecure]
//! ```
//! With `--redis-cluster` the counters live on a Redis Cluster reached through any of the given
//! nodes; every key of one counter shares a hash slot (see `store::RedisStore`). Replicas of the
//! service keep no state of their own: any number of them may serve one Redis.
//! With `--tls-cert`, `--tls-key` and `--client-ca` it serves mutual TLS only: a peer without a
//! certificate signed by the client CA (the gateways') cannot draw or settle. Without them it
//! listens only on a loopback address, unless `--insecure` says otherwise.
//! Without `--redis` counters are kept in memory (one replica only), at most `--max-keys` of
//! them: a draw that needs one more is answered RESOURCE_EXHAUSTED.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use warden_ratelimit::limiter::Limiter;
use warden_ratelimit::service::RateLimitServer;
use warden_ratelimit::store::{MemoryStore, RedisStore, Store, DEFAULT_MAX_KEYS};

/// How long one Redis call may take before the caller is told UNAVAILABLE: well inside the
/// filter's own reservation timeout, so its failure mode, not a timeout, decides.
const REDIS_TIMEOUT: Duration = Duration::from_millis(15);

struct Args {
    listen: SocketAddr,
    redis: Option<String>,
    redis_cluster: Vec<String>,
    prefix: String,
    max_keys: usize,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    client_ca: Option<String>,
    insecure: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        redis: None,
        redis_cluster: Vec::new(),
        prefix: "warden:".into(),
        max_keys: DEFAULT_MAX_KEYS,
        tls_cert: None,
        tls_key: None,
        client_ca: None,
        insecure: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--redis" => args.redis = Some(value()?),
            "--redis-cluster" => args.redis_cluster = value()?.split(',').map(str::to_string).collect(),
            "--prefix" => args.prefix = value()?,
            "--max-keys" => args.max_keys = value()?.parse().map_err(|e| format!("--max-keys: {e}"))?,
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--client-ca" => args.client_ca = Some(value()?),
            "--insecure" => args.insecure = true,
            "-h" | "--help" => return Err(
                "usage: warden-ratelimit [--listen ADDR] [--redis redis://HOST:PORT/DB | --redis-cluster URL,URL...] \
                     [--prefix KEYPREFIX] [--max-keys N] [--tls-cert PEM --tls-key PEM --client-ca PEM] [--insecure]"
                    .into(),
            ),
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if args.redis.is_some() && !args.redis_cluster.is_empty() {
        return Err("give --redis (one server) or --redis-cluster (its nodes), not both".into());
    }
    let tls = [&args.tls_cert, &args.tls_key, &args.client_ca].iter().filter(|v| v.is_some()).count();
    if tls != 0 && tls != 3 {
        return Err("mutual TLS needs all of --tls-cert, --tls-key and --client-ca".into());
    }
    if tls == 0 && !args.listen.ip().is_loopback() && !args.insecure {
        return Err(format!(
            "{} is not a loopback address: serve it with mutual TLS (--tls-cert, --tls-key, --client-ca) so only \
             gateways can draw and settle, or say --insecure",
            args.listen
        ));
    }
    Ok(args)
}

/// Mutual TLS: this service's certificate, and the CA whose client certificates are accepted
/// (every client must present one).
fn tls_config(args: &Args) -> Result<Option<ServerTlsConfig>, String> {
    let (Some(cert), Some(key), Some(ca)) = (&args.tls_cert, &args.tls_key, &args.client_ca) else { return Ok(None) };
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    let identity = Identity::from_pem(read(cert)?, read(key)?);
    Ok(Some(ServerTlsConfig::new().identity(identity).client_ca_root(Certificate::from_pem(read(ca)?))))
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
    let store = match (&args.redis, args.redis_cluster.is_empty()) {
        (None, true) => Store::Memory(MemoryStore::new(args.max_keys)),
        (Some(url), _) => match RedisStore::connect(url, REDIS_TIMEOUT).await {
            Ok(store) => Store::Redis(store),
            Err(e) => {
                eprintln!("warden-ratelimit: cannot connect to {url}: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, false) => match RedisStore::connect_cluster(&args.redis_cluster, REDIS_TIMEOUT).await {
            Ok(store) => Store::Redis(store),
            Err(e) => {
                eprintln!("warden-ratelimit: cannot connect to the cluster {}: {e}", args.redis_cluster.join(","));
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
    let backend = match (&args.redis, args.redis_cluster.is_empty()) {
        (Some(_), _) => "redis",
        (None, false) => "redis cluster",
        (None, true) => "memory",
    };
    let transport = if args.tls_cert.is_some() { "mutual TLS" } else { "plaintext" };
    println!("warden-ratelimit listening on {} ({backend}, {transport})", args.listen);
    let tls = match tls_config(&args) {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("warden-ratelimit: {message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(builder) => builder,
            Err(e) => {
                eprintln!("warden-ratelimit: bad TLS configuration: {e}");
                return ExitCode::from(2);
            }
        };
    }
    let server = RateLimitServer::new(Limiter { store, prefix: args.prefix });
    // Small unary answers must not wait for delayed ACKs (Nagle): reservations have a 20 ms budget.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match builder.add_service(server).serve_with_incoming_shutdown(incoming, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden-ratelimit: {e}");
            ExitCode::FAILURE
        }
    }
}
