//! The command as an operator runs it: exit codes, messages naming the field, `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wardenctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wardenctl")).args(args).current_dir(root()).output().unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CHAIN: &str = "examples/warden/policy.yaml";

#[test]
fn every_shipped_policy_and_config_validates() {
    let out = wardenctl(&[
        "validate",
        CHAIN,
        "examples/router/policy.yaml",
        "--envoy",
        "envoy/warden.yaml",
        "--envoy",
        "examples/istio/warden-envoyfilter.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("examples/warden/policy.yaml: valid (identity, toolAcl, redaction, tokenBudget, router)"),
        "{stdout}"
    );
    assert!(stdout.contains("ANTHROPIC_API_KEY, OPENAI_API_KEY"), "the keys the proxy must expose are named: {stdout}");
}

#[test]
fn a_policy_with_a_typo_exits_1_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(root().join(CHAIN)).unwrap().replacen("  providers:", "  provdiers:", 1);
    assert!(policy.contains("provdiers"), "the example's router names its providers");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let out = wardenctl(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("router.provdiers") && stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn an_envoy_config_that_would_hang_exits_1_naming_the_filter() {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(root().join("envoy/warden.yaml")).unwrap();
    let broken = config.replace("allow_on_headers_stop_iteration: true", "allow_on_headers_stop_iteration: false");
    assert_ne!(config, broken);
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = wardenctl(&["validate", "--envoy", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("allow_on_headers_stop_iteration") && stderr.contains("warden.tool_acl"), "{stderr}");
}

#[test]
fn usage_errors_and_unreadable_files_exit_2() {
    assert_eq!(wardenctl(&["validate"]).status.code(), Some(2));
    assert_eq!(wardenctl(&["validate", "no/such/policy.yaml"]).status.code(), Some(2));
    assert_eq!(wardenctl(&["explain", CHAIN]).status.code(), Some(2), "--route is required");
    assert_eq!(wardenctl(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn every_command_has_help() {
    let commands = [
        &["--help"][..],
        &["validate", "--help"],
        &["explain", "--help"],
        &["audit", "--help"],
        &["render", "ecds", "--help"],
        &["render", "istio", "--help"],
        &["oci", "--help"],
        &["push", "--help"],
    ];
    for command in commands {
        let out = wardenctl(command);
        assert!(out.status.success(), "{command:?}");
        assert!(text(&out.stdout).contains("Usage: wardenctl"), "{command:?}");
    }
}

fn explain(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["explain", CHAIN, "--output", "json"];
    all.extend_from_slice(args);
    let out = wardenctl(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn decision<'a>(answers: &'a [Value], filter: &str) -> (&'a str, &'a str, &'a str) {
    let a = answers.iter().find(|a| a["filter"] == filter).unwrap_or_else(|| panic!("no {filter} in {answers:?}"));
    (a["decision"].as_str().unwrap(), a["rule"].as_str().unwrap(), a["reason"].as_str().unwrap())
}

const PLANNER: [&str; 8] = ["--agent", "planner", "--tenant", "acme", "--session", "s1", "--scope", "tools:call"];

#[test]
fn explain_names_each_filters_rule_and_reason() {
    let mut mcp = PLANNER.to_vec();
    mcp.extend(["--route", "/mcp/files", "--tool", "read_file"]);
    let answers = explain(&mcp);
    assert_eq!(decision(&answers, "identity"), ("allow", "mcp", "authenticated"));
    assert_eq!(decision(&answers, "tool-acl"), ("allow", "acme-agents-use-files", "allowed"));

    let mut destructive = PLANNER.to_vec();
    destructive.extend(["--route", "/mcp/files", "--tool", "delete_file"]);
    assert_eq!(
        decision(&explain(&destructive), "tool-acl"),
        ("approval", "acme-agents-use-files", "approval_required")
    );

    let mut chat = PLANNER.to_vec();
    chat.extend(["--scope", "models:call", "--route", "/v1/chat/completions", "--model", "gpt-4o"]);
    let answers = explain(&chat);
    assert_eq!(decision(&answers, "router"), ("allow", "router", "routed"));
    assert_eq!(decision(&answers, "token-budget").0, "allow");

    chat.extend(["--data-class", "private"]);
    assert_eq!(decision(&explain(&chat), "router"), ("deny", "sensitive-data", "provider_not_permitted"));

    // A refusal ends the chain: later filters never see the request.
    let answers = explain(&[
        "--agent",
        "globex-agent",
        "--tenant",
        "globex",
        "--route",
        "/v1/chat/completions",
        "--model",
        "gpt-4o",
    ]);
    assert_eq!(decision(&answers, "identity"), ("deny", "openai", "insufficient_scope"));
    assert_eq!(answers.len(), 1, "{answers:?}");
}

#[test]
fn audit_reports_spend_denials_tools_and_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let record = |session: &str, extra: Value| {
        let mut r =
            serde_json::json!({"v": 1, "principal": {"agent": "planner", "tenant": "acme", "session": session}});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::json!({"time": "2026-11-30T10:00:00.000Z", "request_id": "r1", "path": "/v1/chat/completions",
            "status": 200, "warden": r.to_string()})
        .to_string()
    };
    let log = [
        record(
            "s1",
            serde_json::json!({"token_budget": {"verdict": "allow", "model_served": "gpt-4o",
            "tokens": {"input": 10, "output": 20}, "cost_usd": 0.25}}),
        ),
        record(
            "s1",
            serde_json::json!({"tool_acl": {"verdict": "deny", "reason": "denied_by_rule",
            "calls": [{"method": "tools/call", "tool": "refund", "verdict": "deny"}]}}),
        ),
        record(
            "s2",
            serde_json::json!({"token_budget": {"verdict": "allow", "model_served": "gpt-4o",
            "tokens": {"input": 1, "output": 2}, "cost_usd": 0.5}}),
        ),
        "[2026-11-30 10:00:00.000][1][info][main] an Envoy log line".to_string(),
    ]
    .join("\n");
    let path = dir.path().join("access.log");
    std::fs::write(&path, log).unwrap();
    let out = wardenctl(&["audit", path.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 3);
    assert_eq!(report["skipped_lines"], 1);
    assert_eq!(report["spend"][0]["requests"], 2);
    assert_eq!(report["spend"][0]["cost_usd"], 0.75);
    assert_eq!(report["denials"][0]["filter"], "tool_acl");
    assert_eq!(report["tools"][0]["tool"], "refund");

    let out = wardenctl(&["audit", path.to_str().unwrap(), "--session", "s1"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("SESSION STORY"), "{table}");
    assert!(table.contains("tools/call refund") && table.contains("2 records"), "{table}");
}

fn yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn render_istio(args: &[&str]) -> Output {
    let mut all = vec!["render", "istio"];
    all.extend_from_slice(args);
    wardenctl(&all)
}

#[test]
fn render_istio_makes_a_namespaces_manifests_from_one_policy() {
    let out = render_istio(&[
        CHAIN,
        "--namespace",
        "team-a",
        "--selector",
        "app=agent-gw",
        "--gateway-workload",
        "--model-route",
        "models",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let documents = yaml_documents(&text(&out.stdout));
    let kinds: Vec<&str> = documents.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..2], ["WasmPlugin", "EnvoyFilter"], "{kinds:?}");
    assert!(documents.iter().all(|d| d["metadata"]["namespace"] == "team-a"));

    // identity reads no body: a WasmPlugin, fail closed, the policy as its pluginConfig, typed
    // as the policy file types it.
    let plugin = &documents[0];
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(plugin["spec"]["selector"]["matchLabels"]["app"], "agent-gw");
    let policy: Value = yaml_documents(&std::fs::read_to_string(root().join(CHAIN)).unwrap()).remove(0);
    assert_eq!(plugin["spec"]["pluginConfig"], policy);

    // The body readers: one EnvoyFilter, each holding the headers, in chain order, on the
    // gateway, under names and a VM of this namespace's own.
    let filter = &documents[1];
    assert_eq!(filter["spec"]["workloadSelector"]["labels"]["app"], "agent-gw");
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let inserted: Vec<&str> = patches
        .iter()
        .filter(|p| p["applyTo"] == "HTTP_FILTER")
        .map(|p| {
            assert_eq!(p["match"]["context"], "GATEWAY");
            assert_eq!(p["patch"]["operation"], "INSERT_BEFORE");
            p["patch"]["value"]["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        inserted,
        ["team-a.warden.tool_acl", "team-a.warden.redaction", "team-a.warden.token_budget", "team-a.warden.router"]
    );
    let extension = |name: &str| {
        let found = patches.iter().find(|p| p["applyTo"] == "EXTENSION_CONFIG" && p["patch"]["value"]["name"] == name);
        found.unwrap_or_else(|| panic!("no EXTENSION_CONFIG {name}"))["patch"]["value"]["typed_config"]["config"]
            .clone()
    };
    for name in &inserted {
        let config = extension(name);
        assert_eq!(config["allow_on_headers_stop_iteration"], true, "{config}");
        assert_eq!(config["fail_open"], false);
        assert_eq!(config["vm_config"]["vm_id"], "warden.team-a");
        assert!(config["vm_config"]["environment_variables"].is_null(), "no key reaches the chain's VM: {config}");
    }
    // The router's hop: the attempt plugin, over ECDS (Istio's agent fetches oci:// modules only
    // there), alone sees the provider keys; the model route retries.
    let cluster = patches.iter().find(|p| p["applyTo"] == "CLUSTER").unwrap();
    let upstream = &cluster["patch"]["value"]["typed_extension_protocol_options"]
        ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0];
    assert!(upstream["typed_config"].is_null(), "no inline module in a cluster: {upstream}");
    let attempt = extension(upstream["name"].as_str().unwrap());
    assert_eq!(attempt["root_id"], "warden.router_attempt");
    assert_eq!(
        attempt["vm_config"]["environment_variables"]["host_env_keys"],
        serde_json::json!(["OPENAI_API_KEY", "ANTHROPIC_API_KEY"])
    );
    let route = patches.iter().find(|p| p["applyTo"] == "HTTP_ROUTE").unwrap();
    assert_eq!(route["match"]["routeConfiguration"]["vhost"]["route"]["name"], "models");

    // What the output says it is, `validate --envoy` agrees with.
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("warden.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let check = wardenctl(&["validate", "--envoy", rendered.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stderr));
}

#[test]
fn render_istio_attaches_to_a_gateway_by_target_ref() {
    let out = render_istio(&["examples/tool-acl/policy.yaml", "--namespace", "edge", "--gateway", "agents"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let documents = yaml_documents(&text(&out.stdout));
    for document in &documents[..2] {
        assert_eq!(document["spec"]["targetRefs"][0]["kind"], "Gateway", "{document}");
        assert_eq!(document["spec"]["targetRefs"][0]["name"], "agents");
        assert!(document["spec"]["selector"].is_null() && document["spec"]["workloadSelector"].is_null());
    }
    let patch =
        documents[1]["spec"]["configPatches"].as_array().unwrap().iter().find(|p| p["applyTo"] == "HTTP_FILTER");
    assert_eq!(patch.unwrap()["match"]["context"], "GATEWAY");
}

#[test]
fn render_istio_refuses_what_it_cannot_render_faithfully() {
    // A router without the route it serves, or on sidecars (whose inbound routes all share one name).
    let out = render_istio(&[CHAIN, "--namespace", "team-a", "--gateway", "agents"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--model-route"), "{}", text(&out.stderr));
    let out = render_istio(&[CHAIN, "--namespace", "team-a", "--selector", "app=a", "--model-route", "models"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("render it for a gateway"), "{}", text(&out.stderr));
    // A gateway's context without a selector would put identity on every workload.
    let out = render_istio(&["examples/tool-acl/policy.yaml", "--namespace", "a", "--gateway-workload"]);
    assert_eq!(out.status.code(), Some(2));
    // An external host on port 443 would take over a sidecar's own outbound HTTPS port.
    let out = render_istio(&["examples/istio/namespaces/istio-system/policy.yaml", "--namespace", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let team = std::fs::read_to_string(root().join("examples/istio/namespaces/team-support/policy.yaml")).unwrap();
    let on_443 = dir.path().join("on-443.yaml");
    std::fs::write(&on_443, team.replace("outbound|8443||idp.example.com", "outbound|443||idp.example.com")).unwrap();
    let out = render_istio(&[on_443.to_str().unwrap(), "--namespace", "a", "--selector", "app=b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("outbound|8443||idp.example.com"), "{}", text(&out.stderr));
    // A cluster name that would carry YAML of its own into the manifests.
    let injected = dir.path().join("injected.yaml");
    let bent = "outbound|8443||idp.example.com\\n---\\nkind: ClusterRoleBinding";
    std::fs::write(&injected, team.replace("outbound|8443||idp.example.com", bent)).unwrap();
    let out = render_istio(&[injected.to_str().unwrap(), "--namespace", "a", "--selector", "app=b"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(out.stdout.is_empty() && text(&out.stderr).contains("is not a DNS name"), "{}", text(&out.stderr));
    // Both a selector and a Gateway.
    let out =
        render_istio(&["examples/tool-acl/policy.yaml", "--namespace", "a", "--gateway", "g", "--selector", "a=b"]);
    assert_eq!(out.status.code(), Some(2));
    // A policy the filters would refuse: nothing is printed.
    let path = dir.path().join("policy.yaml");
    let policy = std::fs::read_to_string(root().join("examples/tool-acl/policy.yaml")).unwrap();
    std::fs::write(&path, policy.replacen("toolAcl:", "toolAcl:\n  maxBodyByts: 5", 1)).unwrap();
    let out = render_istio(&[path.to_str().unwrap(), "--namespace", "a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr).contains("maxBodyByts"), "{}", text(&out.stderr));
}

#[test]
fn explain_names_the_tool_call_budgets_a_call_draws_on() {
    let dir = tempfile::tempdir().unwrap();
    let budgets = "  tools:
    - { name: write_file, price: 0.002 }
  budgets:
    - { id: writes-per-session, scope: [session, agent], unit: toolCalls, limit: 3, window: session, when: { tools: [write_file] } }
    - { id: tenant-tool-spend, scope: [tenant], unit: costUsd, limit: 1, window: day, when: { servers: [files] } }
";
    let policy = std::fs::read_to_string(root().join(CHAIN)).unwrap().replacen("  budgets:\n", budgets, 1);
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let mut args = vec!["explain", path.to_str().unwrap(), "--output", "json", "--route", "/mcp/files"];
    args.extend_from_slice(&PLANNER);
    let run = |tool: &str| {
        let mut args = args.clone();
        args.extend_from_slice(&["--tool", tool]);
        let out = wardenctl(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let answers = run("write_file");
    assert_eq!(decision(&answers, "token-budget"), ("allow", "writes-per-session,tenant-tool-spend", "budgets_apply"));
    let detail = answers.iter().find(|a| a["filter"] == "token-budget").unwrap()["detail"].to_string();
    assert!(detail.contains("1 of 3 calls") && detail.contains("$0.0020 of $1.0000"), "{detail}");
    // A read is neither a write nor priced.
    assert_eq!(decision(&run("read_file"), "token-budget"), ("allow", "-", "no_budget_applies"));
}
