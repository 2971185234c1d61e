//! Development helper for `make run` and the examples: serves the mock upstream, the demo JWKS,
//! the demo MCP file server (the official `rmcp` SDK) and mock model provider, and mints demo
//! tokens and tool-call approvals signed with the test keys in `testdata/keys`.
//!
//! ```text
//! warden-dev serve [--upstream-port 18080] [--jwks-port 18081]
//! warden-dev serve-tools [--mcp-port 18090] [--provider-port 18091]
//! warden-dev serve-models [--port 18092] [--output-tokens 40]
//! warden-dev serve-chain [--mcp-port 18090] [--provider-port 18091] [--mini-port 18096]
//! warden-dev token --sub AGENT [--scope "a b"] [--tenant acme] [--expired] [--key rsa|ec|ed] [--user]
//! warden-dev approval --args-sha256 HEX --session ID --jti ID [--tool files/delete_file]
//!                     [--agent planner] [--tenant acme] [--ttl-secs 120]
//! warden-dev api-key-hash KEY
//! ```

use anyhow::{bail, Context, Result};
use jsonwebtoken::Algorithm;
use warden_integration_tests::fixtures::{
    ChatProvider, EchoUpstream, JwksBehaviour, JwksServer, McpFileServer, ModelProvider, Script,
};
use warden_integration_tests::tool_fixtures::tool_definitions;
use warden_policy::identity::api_key;
use warden_policy::testing::tokens;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn demo_keys() -> Vec<tokens::SigningKey> {
    vec![tokens::rsa(Algorithm::RS256), tokens::ec256(), tokens::ed25519()]
}

async fn serve(args: &[String]) -> Result<()> {
    let upstream_port: u16 = flag(args, "--upstream-port").unwrap_or_else(|| "18080".into()).parse()?;
    let jwks_port: u16 = flag(args, "--jwks-port").unwrap_or_else(|| "18081".into()).parse()?;
    let keys = demo_keys();
    let jwks = tokens::jwks(&keys.iter().collect::<Vec<_>>());
    let _upstream = EchoUpstream::start(upstream_port).await.context("starting the mock upstream")?;
    let _jwks = JwksServer::start(jwks_port, JwksBehaviour::Serve(jwks)).await.context("starting the JWKS server")?;
    eprintln!("warden-dev: mock upstream on 127.0.0.1:{upstream_port}, JWKS on 127.0.0.1:{jwks_port}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn serve_tools(args: &[String]) -> Result<()> {
    let mcp_port: u16 = flag(args, "--mcp-port").unwrap_or_else(|| "18090".into()).parse()?;
    let provider_port: u16 = flag(args, "--provider-port").unwrap_or_else(|| "18091".into()).parse()?;
    // Stateless JSON answers, so the demo can talk MCP with plain curl.
    let _mcp = McpFileServer::start_on(mcp_port, tool_definitions(6), true).await.context("starting the MCP server")?;
    let _provider = ModelProvider::start_on(provider_port).await.context("starting the model provider")?;
    eprintln!("warden-dev: MCP file server on 127.0.0.1:{mcp_port}, model provider on 127.0.0.1:{provider_port}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// A model upstream that bills like a real provider (counts prompts, reports usage).
async fn serve_models(args: &[String]) -> Result<()> {
    let port: u16 = flag(args, "--port").unwrap_or_else(|| "18092".into()).parse()?;
    let output_tokens: u64 = flag(args, "--output-tokens").unwrap_or_else(|| "40".into()).parse()?;
    let script = Script { output_tokens, ..Script::default() };
    let _provider = ChatProvider::start_on(port, script).await.context("starting the model provider")?;
    eprintln!("warden-dev: model provider on 127.0.0.1:{port}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// What the whole chain (`envoy/warden.yaml`) talks to: the MCP file server, and two model
/// upstreams that bill like real ones (the second serves the cheaper model).
async fn serve_chain(args: &[String]) -> Result<()> {
    let port =
        |name: &str, default: &str| -> Result<u16> { Ok(flag(args, name).unwrap_or_else(|| default.into()).parse()?) };
    let (mcp_port, provider_port, mini_port) =
        (port("--mcp-port", "18090")?, port("--provider-port", "18091")?, port("--mini-port", "18096")?);
    let _mcp = McpFileServer::start_on(mcp_port, tool_definitions(6), true).await.context("starting the MCP server")?;
    let script = Script { output_tokens: 40, ..Script::default() };
    let _provider = ChatProvider::start_on(provider_port, script.clone()).await.context("starting the provider")?;
    let _mini = ChatProvider::start_on(mini_port, script).await.context("starting the cheaper model's provider")?;
    eprintln!(
        "warden-dev: MCP file server on 127.0.0.1:{mcp_port}, model providers on 127.0.0.1:{provider_port} \
         and 127.0.0.1:{mini_port}"
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// An approval for one tool call, as the approver (a person, via some approval UI) would sign.
fn approval(args: &[String]) -> Result<String> {
    let now = tokens::now_secs();
    let ttl: u64 = flag(args, "--ttl-secs").unwrap_or_else(|| "120".into()).parse()?;
    let claims = serde_json::json!({
        "iss": "https://approvals.warden.test", "aud": "warden-tool-acl", "sub": "alice@acme.test",
        "iat": now, "exp": now + ttl,
        "jti": flag(args, "--jti").context("--jti is required")?,
        "tool": flag(args, "--tool").unwrap_or_else(|| "files/delete_file".into()),
        "args_sha256": flag(args, "--args-sha256").context("--args-sha256 is required")?,
        "session": flag(args, "--session").context("--session is required")?,
        "agent": flag(args, "--agent").unwrap_or_else(|| "planner".into()),
        "tenant": flag(args, "--tenant").unwrap_or_else(|| "acme".into()),
    });
    Ok(tokens::token(&tokens::ed25519(), &claims))
}

fn token(args: &[String]) -> Result<String> {
    let sub = flag(args, "--sub").context("--sub is required")?;
    let key = match flag(args, "--key").as_deref() {
        None | Some("rsa") => tokens::rsa(Algorithm::RS256),
        Some("ec") => tokens::ec256(),
        Some("ed") => tokens::ed25519(),
        Some(other) => bail!("unknown --key {other} (rsa, ec, ed)"),
    };
    let now = tokens::now_secs();
    let exp = if args.iter().any(|a| a == "--expired") { now - 3600 } else { now + 3600 };
    let mut claims = serde_json::json!({
        "iss": "https://idp.warden.test", "aud": "warden-gateway", "sub": sub,
        "iat": now, "exp": exp, "tenant": flag(args, "--tenant").unwrap_or_else(|| "acme".into()),
    });
    if let Some(scope) = flag(args, "--scope") {
        claims["scope"] = scope.into();
    }
    // The demo IdP marks the tokens it issues to people; agent tokens never carry the claim.
    if args.iter().any(|a| a == "--user") {
        claims["token_use"] = "user".into();
    }
    Ok(tokens::token(&key, &claims))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args).await,
        Some("serve-tools") => serve_tools(&args).await,
        Some("serve-models") => serve_models(&args).await,
        Some("serve-chain") => serve_chain(&args).await,
        Some("approval") => {
            println!("{}", approval(&args)?);
            Ok(())
        }
        Some("token") => {
            println!("{}", token(&args)?);
            Ok(())
        }
        Some("api-key-hash") => {
            println!("{}", api_key::hash_hex(args.get(1).context("give the key")?));
            Ok(())
        }
        _ => bail!(
            "usage: warden-dev serve|serve-tools|serve-models|serve-chain|token|approval|api-key-hash (see the source header)"
        ),
    }
}
