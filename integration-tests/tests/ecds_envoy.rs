//! Policy updates without a restart: Envoy loads the Warden filters' configs through ECDS from
//! files `wardenctl render ecds` writes into a watched directory (no control plane).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use warden_integration_tests::envoy::Envoy;
use warden_integration_tests::fixtures::{ChatProvider, Script};
use warden_integration_tests::repo;

const PLANNER_KEY: &str = "wk-planner-7f3a9c1e5b2d4068";

/// The token-budget example's identity, and a per-session budget of `limit` requests.
fn policy(limit: u32) -> String {
    let example = std::fs::read_to_string(repo::root().join("examples/token-budget/policy.yaml")).unwrap();
    let identity = &example[..example.find("tokenBudget:").unwrap()];
    format!(
        "{identity}tokenBudget:\n  budgets:\n    - {{ id: session-requests, scope: [session], unit: requests, limit: {limit}, window: day }}\n"
    )
}

fn render(dir: &Path, policy: &str) -> std::process::Output {
    let file = dir.join("policy.yaml");
    std::fs::write(&file, policy).unwrap();
    Command::new(repo::root().join("target/debug/wardenctl"))
        .current_dir(repo::root())
        .args(["render", "ecds", "--envoy", "envoy/token-budget.yaml", "--out"])
        .arg(dir.join("ecds"))
        .arg("--envoy-out")
        .arg(dir.join("envoy.json"))
        .arg(&file)
        .output()
        .unwrap()
}

async fn ask(envoy: &Envoy, session: &str) -> u16 {
    let body = json!({"model": "gpt-4o", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", envoy.url("agents")))
        .header("x-api-key", PLANNER_KEY)
        .header("x-agent-session", session)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The sum of a stat over every ECDS resource of the config (Envoy names them by filter).
async fn ecds_stat(envoy: &Envoy, what: &str) -> u64 {
    envoy.stat(&format!("extension_config_discovery.http_filter.warden.token_budget.{what}")).await
}

async fn wait_for_reloads(envoy: &Envoy, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ecds_stat(envoy, "config_reload").await < at_least {
        assert!(Instant::now() < deadline, "Envoy did not load the new policy:\n{}", envoy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_applies_to_new_requests_keeps_the_counters_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = render(dir.path(), &policy(2));
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let provider = ChatProvider::start(Script { output_tokens: 5, ..Script::default() }).await.unwrap();
    let config = dir.path().join("envoy.json");
    let envoy = Envoy::builder(config.to_str().unwrap()).cluster("llm", provider.port()).start().await.unwrap();
    wait_for_reloads(&envoy, 1).await;

    // Policy 1: two requests a session.
    assert_eq!(ask(&envoy, "s1").await, 200);
    assert_eq!(ask(&envoy, "s1").await, 200);
    assert_eq!(ask(&envoy, "s1").await, 429);

    // Policy 2: three a session. The session's counter is kept: one more, not three.
    assert!(render(dir.path(), &policy(3)).status.success());
    wait_for_reloads(&envoy, 2).await;
    assert_eq!(ask(&envoy, "s1").await, 200, "the raised limit applies to new requests");
    assert_eq!(ask(&envoy, "s1").await, 429, "the counter kept the requests made under policy 1");
    assert_eq!(ask(&envoy, "s2").await, 200);

    // A policy with a typo never reaches Envoy: wardenctl refuses it, naming the field.
    let typo = policy(5).replace("window: day", "windw: day");
    let refused = render(dir.path(), &typo);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("windw"), "{message}");
    // An older policy version is refused with a clear error, too.
    let old = render(dir.path(), &format!("apiVersion: warden.dev/v1alpha1\n{}", policy(5)));
    assert_eq!(old.status.code(), Some(1));
    let message = String::from_utf8_lossy(&old.stderr);
    assert!(message.contains("apiVersion") && message.contains("warden.dev/v1"), "{message}");

    // Written past wardenctl, Envoy refuses it at configure time and keeps policy 2.
    let file = dir.path().join("ecds/warden.token_budget.yaml");
    let current = std::fs::read_to_string(&file).unwrap();
    let bad = current.replace("limit: 3", "lmit: 3");
    assert_ne!(bad, current);
    let temporary = dir.path().join("ecds/.bad.tmp");
    std::fs::write(&temporary, bad).unwrap();
    std::fs::rename(&temporary, &file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ecds_stat(&envoy, "config_fail").await < 1 {
        assert!(Instant::now() < deadline, "Envoy did not refuse the bad policy:\n{}", envoy.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(envoy.log().contains("lmit"), "Envoy's log names the field");
    assert_eq!(ask(&envoy, "s2").await, 200, "policy 2 still applies");
    assert_eq!(ask(&envoy, "s2").await, 200);
    assert_eq!(ask(&envoy, "s2").await, 429);
}

/// A provider that streams its answer slowly: ten chat chunks 150 ms apart, then usage and
/// `[DONE]`, for every request.
async fn slow_stream_provider() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body its content-length says.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = |data: String| format!("{:x}\r\n{data}\r\n", data.len());
                for i in 0..10 {
                    let event = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                        "choices": [{"index": 0, "delta": {"content": format!(" word{i}")}, "finish_reason": null}]});
                    if socket.write_all(chunk(format!("data: {event}\n\n")).as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
                    "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}});
                let tail = chunk(format!("data: {usage}\n\ndata: [DONE]\n\n")) + "0\r\n\r\n";
                let _ = socket.write_all(tail.as_bytes()).await;
            });
        }
    });
    port
}

/// A stream open across an update finishes under the policy it started with: its record names
/// the budget of the old policy, settled when the stream ended after the update; the next
/// request is counted by the new policy's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_open_across_an_update_finishes_under_its_own_policy() {
    use warden_integration_tests::audit;
    let dir = tempfile::tempdir().unwrap();
    let named = |id: &str| policy(100).replace("id: session-requests", &format!("id: {id}"));
    assert!(render(dir.path(), &named("budget-a")).status.success());
    let port = slow_stream_provider().await;
    let config = dir.path().join("envoy.json");
    let envoy = Envoy::builder(config.to_str().unwrap()).cluster("llm", port).start().await.unwrap();
    wait_for_reloads(&envoy, 1).await;

    let stream = |session: &'static str| {
        let url = format!("{}/v1/chat/completions", envoy.url("agents"));
        async move {
            let body = json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
            reqwest::Client::new()
                .post(url)
                .header("x-api-key", PLANNER_KEY)
                .header("x-agent-session", session)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let mut open = stream("s1").await;
    assert_eq!(open.status(), 200);
    let first = open.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("word0"));

    // The update lands while the stream is open.
    assert!(render(dir.path(), &named("budget-b")).status.success());
    wait_for_reloads(&envoy, 2).await;
    let mut rest = Vec::new();
    while let Some(chunk) = open.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"), "the stream finished");
    let next = stream("s2").await;
    assert_eq!(next.status(), 200);
    next.bytes().await.unwrap();

    let records = envoy.wait_for_access_log(2).await;
    let rule = |session: &str| {
        let record = records
            .iter()
            .find(|r| audit::part(r, "principal").is_some_and(|p| p["session"] == session))
            .unwrap_or_else(|| panic!("no record of {session}: {records:#?}"));
        let budget = audit::part(record, "token_budget").unwrap();
        (budget["rule"].as_str().unwrap_or_default().to_string(), budget["tokens"]["output"].as_u64())
    };
    assert_eq!(rule("s1"), ("budget-a".to_string(), Some(10)), "settled at its end, under the old policy");
    assert_eq!(rule("s2").0, "budget-b");
}
