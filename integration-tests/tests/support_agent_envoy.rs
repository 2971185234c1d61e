//! The support-agent example as `make demo` runs it (`examples/support-agent/run.sh --demo`), on
//! ports of its own: the official `openai`, `anthropic` and `mcp` SDKs through Envoy and the
//! whole chain. `agent.py` checks every step as the agent sees it and fails the run otherwise;
//! this test checks what the operator sees afterwards, the session's audit story.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warden_integration_tests::{ports, repo};

/// The first of `n` consecutive free ports on 127.0.0.1 (the script numbers its services from it).
fn free_port_run(n: u16) -> u16 {
    for _ in 0..50 {
        let base = ports::free_port().unwrap();
        let all_free = (base..base.saturating_add(n))
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_free && base.checked_add(n).is_some() {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// The demo's process group: unless the script ended by itself (its trap stops what it
/// started), everything in it is stopped with the test, TERM first for that trap, then KILL.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let group = format!("-{}", self.0.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = self.0.wait();
    }
}

/// Runs the demo; returns its output once it has ended (stopped after 5 minutes).
fn run_demo() -> String {
    let root = repo::root();
    let out = tempfile_path("support-agent-demo.out");
    let file = std::fs::File::create(&out).unwrap();
    let mut demo = Demo(
        Command::new(root.join("examples/support-agent/run.sh"))
            .arg("--demo")
            .process_group(0)
            .current_dir(&root)
            .env("WARDEN_PORT_BASE", free_port_run(10).to_string())
            .env("WARDEN_ENVOY_VERSION", repo::envoy_version())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            drop(demo);
            panic!("the demo did not end in 5 minutes:\n{}", std::fs::read_to_string(&out).unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(status.success(), "the demo failed ({status}):\n{text}");
    text
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("warden-{}-{name}", repo::envoy_version()))
}

#[test]
fn the_support_agent_works_its_ticket_and_the_audit_tells_the_story() {
    let text = run_demo();
    let (agent, story) = text.split_once("### The ticket's story").expect("the audit story is printed");
    // The agent's view (agent.py stops the run on any other outcome).
    assert!(agent.contains("the provider read: …refund it to my card [PAYMENT_CARD]"), "{agent}");
    // The operator's view: one line per filter decision, request by request.
    for expected in [
        "redaction: payment_card mask x1",
        "tools/call get_order [read]: allow (allowed)",
        "tools/call issue_refund [write]: deny (approval_required)",
        "tools/call issue_refund [write]: allow (approved)",
        "tools/call issue_refund [write]: deny (approval_reused)",
        "token_budget: deny refunds-per-session (budget_exhausted)",
        "served by anthropic/claude-sonnet-4",
        "failover openai>backup (server_error)",
        "token_budget: allow tenant-daily-spend (fallback_model)",
        "moved from gpt-4o to gpt-4o-mini: budget ticket-gpt-4o had no room",
        "served by local/gpt-4o-mini",
    ] {
        assert!(story.contains(expected), "{expected:?} missing from the story:\n{story}");
    }
    // Three refunds at $0.50 each, on the tenant's bill with the model calls.
    let fees = story.lines().find(|l| l.contains("(tool calls)")).expect("a spend row for the tool calls");
    assert!(fees.split_whitespace().collect::<Vec<_>>().ends_with(&["3", "0", "0", "1.500000"]), "{fees}");
    // The card number and the approvals never reached an upstream (redaction would have found
    // an approval forwarded to the orders server: a JWT).
    assert!(!story.contains("4111") && !story.contains("jwt"), "{story}");
}
