//! End to end through the real Envoy binary (`WARDEN_ENVOY_VERSION`) with
//! `envoy/token-budget.yaml`: `async-openai` as the client, a mock provider that bills like a
//! real one, Warden's rate-limit service and a real Redis. Two Envoy instances draw on one
//! global budget; Redis is stopped mid-run; a spent budget falls back to a cheaper model; a
//! stream that crosses a session cap ends with an error event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
};
use futures::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};
use warden_integration_tests::audit;
use warden_integration_tests::envoy::{config_policy, Envoy};
use warden_integration_tests::fixtures::{ChatProvider, Script};
use warden_integration_tests::repo;
use warden_integration_tests::services::{RateLimitService, Redis, RedisCluster};

const CONFIG: &str = "envoy/token-budget.yaml";
const PLANNER_KEY: &str = "wk-planner-7f3a9c1e5b2d4068";
const ADMIN_KEY: &str = "wk-admin-2b8e6d4a1c9f3057";
const GLOBEX_KEY: &str = "wk-globex-5d1c8a3f7e2b9046";

/// The example's identity section with `budget_section` (the body of `tokenBudget:`) after it.
fn policy(budget_section: &str) -> String {
    let example = std::fs::read_to_string(repo::root().join("examples/token-budget/policy.yaml")).unwrap();
    let identity = &example[..example.find("tokenBudget:").unwrap()];
    format!("{identity}tokenBudget:\n{budget_section}")
}

async fn envoy(policy: &str, provider: &ChatProvider, rls: Option<&RateLimitService>) -> Envoy {
    let mut builder = Envoy::builder(CONFIG)
        .policy("warden.identity", policy)
        .policy("warden.token_budget", policy)
        .cluster("llm", provider.port());
    if let Some(rls) = rls {
        builder = builder.cluster("ratelimit", rls.port);
    }
    builder.start().await.unwrap()
}

fn client(envoy: &Envoy, key: &str, session: &str) -> async_openai::Client<OpenAIConfig> {
    let config = OpenAIConfig::new().with_api_base(format!("{}/v1", envoy.url("agents"))).with_api_key("unused");
    let headers = [
        ("x-api-key".parse().unwrap(), key.parse().unwrap()),
        ("x-agent-session".parse().unwrap(), session.parse().unwrap()),
    ];
    let http = reqwest::Client::builder().default_headers(headers.into_iter().collect()).build().unwrap();
    async_openai::Client::with_config(config).with_http_client(http)
}

fn request(model: &str, prompt: &str, stream: bool) -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .messages([ChatCompletionRequestUserMessage::from(prompt).into()])
        .stream(stream)
        .build()
        .unwrap()
}

/// What an API error says: its `code`, or the whole error. A 5xx answer (which the client
/// retried first) arrives with its body as the message: the code is read from that JSON.
fn error_code(e: &OpenAIError) -> String {
    let text = match e {
        OpenAIError::ApiError(api) => api.api_error.code.clone().unwrap_or_else(|| api.api_error.message.clone()),
        other => other.to_string(),
    };
    let json = text.find('{').and_then(|i| serde_json::from_str::<Value>(&text[i..]).ok());
    json.and_then(|v| v["error"]["code"].as_str().map(String::from)).unwrap_or(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_agents_on_two_envoys_never_overspend_one_global_budget() {
    let redis = Redis::start().unwrap();
    let rls = RateLimitService::start(Some(&redis.url())).unwrap();
    let provider = ChatProvider::start(Script { output_tokens: 60, ..Script::default() }).await.unwrap();
    let budget = 4000u64;
    let policy = policy(&format!(
        "  defaultMaxOutputTokens: 60\n  rateLimitService: {{ cluster: ratelimit, timeout: 500ms }}\n  budgets:\n    - {{ id: tenant-day, scope: [tenant], unit: totalTokens, limit: {budget}, window: day, store: global }}\n"
    ));
    let envoys = [envoy(&policy, &provider, Some(&rls)).await, envoy(&policy, &provider, Some(&rls)).await];

    // 64 agents of tenant acme at once, half through each Envoy.
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let client = client(&envoys[i % 2], PLANNER_KEY, &format!("agent-{i}"));
            tokio::spawn(async move {
                client
                    .chat()
                    .create(request("gpt-4o", &format!("Agent {i}: plan the next step of the migration."), false))
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(answer) => {
                ok += 1;
                assert_eq!(answer.usage.unwrap().completion_tokens, 60);
            }
            Err(e) if error_code(&e) == "budget_exhausted" => refused += 1,
            Err(e) => panic!("unexpected error {e}\n{}", envoys[0].log()),
        }
    }
    let billed = provider.billed_total();
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(billed <= budget, "billed {billed} of {budget}");
    assert_eq!(provider.seen().len(), ok, "a refused request never reached the provider");

    // One at a time, with every prompt billed 7 tokens above the gateway's count, through both
    // Envoys: the overshoot is at most one request's underestimate.
    provider.set_script(Script { output_tokens: 40, underestimate: 7, report_usage: true, echo: false });
    let before = provider.seen().len();
    for i in 0.. {
        let client = client(&envoys[i % 2], GLOBEX_KEY, "globex-1");
        match client.chat().create(request("gpt-4o", "Summarise the incident report.", false)).await {
            Ok(_) => {}
            Err(e) if error_code(&e) == "budget_exhausted" => break,
            Err(e) => panic!("unexpected error {e}"),
        }
        // Settles reach the service on the filter's next tick.
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(i < 500, "the budget never ran out");
    }
    let globex: u64 = provider.seen()[before..].iter().map(|s| s.billed.0 + s.billed.1).sum();
    let per_request = provider.seen().last().map(|s| s.billed.0 + s.billed.1).unwrap();
    assert!(globex <= budget + 7, "globex billed {globex} of {budget}");
    assert!(globex + 2 * (per_request + 60) > budget, "globex billed only {globex}: settles did not give back");
    drop(redis);
}

/// Past one machine: two replicas of the service on one Redis Cluster (three masters, three
/// replicas, all on loopback), two Envoys each on its own replica, and two global budgets, so
/// every draw touches two counters (each under its own hash tag, usually on two masters; the
/// agent's is drawn first, so a refusal by the tenant's gives the agent's draw back). Mid-run
/// the master holding the tenant's counter is killed: until its replica takes over, draws on it
/// fail and the budget's failure mode (deny) refuses them; the tenant is never billed past its
/// budget, before, during or after the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_cluster_behind_two_service_replicas_never_overspends_when_a_master_dies() {
    let mut cluster = RedisCluster::start(3).unwrap();
    let urls = cluster.urls();
    let rls = [RateLimitService::start(Some(&urls)).unwrap(), RateLimitService::start(Some(&urls)).unwrap()];
    let provider = ChatProvider::start(Script { output_tokens: 60, ..Script::default() }).await.unwrap();
    let budget = 5000u64;
    let policy = policy(&format!(
        "  defaultMaxOutputTokens: 60\n  rateLimitService: {{ cluster: ratelimit, timeout: 500ms }}\n  budgets:\n    - {{ id: agent-day, scope: [agent], unit: requests, limit: 100000, window: day, store: global, failureMode: deny }}\n    - {{ id: tenant-day, scope: [tenant], unit: totalTokens, limit: {budget}, window: day, store: global, failureMode: deny }}\n"
    ));
    let envoys = [envoy(&policy, &provider, Some(&rls[0])).await, envoy(&policy, &provider, Some(&rls[1])).await];
    let master = cluster.master_of("{warden|warden_budget=tenant-day|tenant=acme}").unwrap();

    let (mut ok, mut refused, mut unavailable) = (0, 0, 0);
    for wave in 0..40 {
        if wave == 1 {
            cluster.kill(master);
        }
        if wave == 3 {
            // The replica has had time to take over (cluster-node-timeout 1 s).
            cluster.await_failover(master).unwrap();
        }
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let client = client(&envoys[i % 2], PLANNER_KEY, &format!("wave-{wave}-agent-{i}"));
                tokio::spawn(async move {
                    client.chat().create(request("gpt-4o", "Plan the next step of the migration.", false)).await
                })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) if error_code(&e) == "budget_exhausted" => refused += 1,
                Err(e) if error_code(&e) == "budget_unavailable" => unavailable += 1,
                Err(e) => panic!("unexpected error {e}\n{}", envoys[0].log()),
            }
        }
        if wave >= 3 && refused > 0 {
            break;
        }
    }
    let billed = provider.billed_total();
    println!("redis cluster: {ok} answered, {refused} over budget, {unavailable} refused while the master was down; billed {billed} of {budget}");
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}, unavailable {unavailable}");
    assert!(unavailable > 0, "a draw on the dead master was refused by the failure mode (deny)");
    assert!(billed <= budget, "billed {billed} of {budget}");
    assert_eq!(provider.seen().len(), ok, "no refused request reached the provider");
    // The agent's counter holds exactly the requests answered: draws the tenant's budget
    // refused were given back, and draws left behind by a failed call were settled at nothing
    // (settle calls that failed while the master was down are sent again).
    let day = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86400 * 86400;
    let key = format!("warden:{{warden|warden_budget=agent-day|agent=planner}}|{day}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted = cluster.get(&key).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        if counted == ok {
            break;
        }
        if Instant::now() > deadline {
            let mut stats = String::new();
            for e in &envoys {
                for name in ["rls_errors", "rls_settles", "failure_mode_applied", "allowed", "refused"] {
                    stats.push_str(&format!(
                        "{name}={} ",
                        e.stat(&format!("wasmcustom.warden.token_budget.{name}")).await
                    ));
                }
            }
            panic!(
                "the agent's counter holds {counted}, {ok} were answered; {stats}\n{}",
                cluster.scan("*agent=planner*")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_applies_each_budgets_failure_mode() {
    let mut redis = Redis::start().unwrap();
    let rls = RateLimitService::start(Some(&redis.url())).unwrap();
    let provider = ChatProvider::start(Script { output_tokens: 10, ..Script::default() }).await.unwrap();
    let budget = |id: &str, agent: &str, mode: &str| {
        format!("    - {{ id: {id}, scope: [agent], unit: totalTokens, limit: 300, window: day, store: global, failureMode: {mode}, when: {{ agents: [{agent}] }} }}\n")
    };
    let policy = policy(&format!(
        "  defaultMaxOutputTokens: 50\n  rateLimitService: {{ cluster: ratelimit, timeout: 200ms }}\n  budgets:\n{}{}{}",
        budget("planner-day", "planner", "deny"),
        budget("admin-day", "admin-bot", "allow"),
        budget("globex-day", "globex-agent", "local"),
    ));
    let envoy = envoy(&policy, &provider, Some(&rls)).await;
    let ask = |key: &'static str| {
        // Sessions are bound to the agent that opened them: one per agent.
        let client = client(&envoy, key, &key[3..12]);
        async move { client.chat().create(request("gpt-4o", "ping", false)).await.map(|_| ()).map_err(|e| error_code(&e)) }
    };
    for key in [PLANNER_KEY, ADMIN_KEY, GLOBEX_KEY] {
        assert_eq!(ask(key).await, Ok(()));
    }

    redis.stop();
    assert_eq!(ask(PLANNER_KEY).await, Err("budget_unavailable".to_string()), "deny: refused");
    for _ in 0..8 {
        assert_eq!(ask(ADMIN_KEY).await, Ok(()), "allow: let through, uncounted");
    }
    // local: this Envoy's own copy of the 300-token budget.
    let mut local_ok = 0;
    loop {
        match ask(GLOBEX_KEY).await {
            Ok(()) => local_ok += 1,
            Err(code) if code == "budget_exhausted" => break,
            Err(other) => panic!("{other}"),
        }
        assert!(local_ok < 20);
    }
    // Each request reserves ~60 tokens and settles ~20: about 300 / 20 fit.
    assert!((10..=16).contains(&local_ok), "the local budget admitted {local_ok}");
    assert!(envoy.stat("wasmcustom.warden.token_budget.failure_mode_applied").await >= 10);

    // Redis is back: the service answers again and the deny budget admits.
    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(PLANNER_KEY).await.is_err() {
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_falls_back_to_the_cheaper_model_seen_at_the_provider() {
    let provider = ChatProvider::start(Script { output_tokens: 20, ..Script::default() }).await.unwrap();
    let policy = policy(concat!(
        "  defaultMaxOutputTokens: 20\n",
        "  models:\n",
        "    - { name: 'gpt-4o-mini*', price: { input: 0.15, output: 0.6 } }\n",
        "    - { name: 'gpt-4o*', price: { input: 2.5, output: 10 } }\n",
        "  budgets:\n",
        "    - { id: gpt-4o-day, scope: [tenant, agent], unit: costUsd, limit: 0.001, window: day, fallbackModel: gpt-4o-mini, when: { models: [gpt-4o] } }\n",
    ));
    let envoy = envoy(&policy, &provider, None).await;
    let client = client(&envoy, PLANNER_KEY, "s");
    let mut served = Vec::new();
    for _ in 0..8 {
        let answer = client.chat().create(request("gpt-4o", "Hello", false)).await.unwrap();
        served.push(answer.model);
    }
    assert_eq!(served[0], "gpt-4o");
    assert_eq!(served.last().unwrap(), "gpt-4o-mini", "{served:?}");
    let seen: Vec<String> = provider.seen().iter().map(|s| s.body["model"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, served, "the provider saw the rewritten model");
    let records = envoy.wait_for_access_log(8).await;
    let last = records.last().unwrap();
    let budget = audit::part(last, "token_budget").unwrap_or_else(|| panic!("{last:#}"));
    assert_eq!(
        (budget["model_requested"].as_str(), budget["model_served"].as_str()),
        (Some("gpt-4o"), Some("gpt-4o-mini"))
    );
    assert_eq!(budget["reason"], "fallback_model", "{last}");
    audit::check_schema(&records).unwrap();
    assert!(envoy.stat("wasmcustom.warden.token_budget.fallback").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_crosses_the_session_cap_ends_with_an_error_event() {
    let provider = ChatProvider::start(Script { output_tokens: 300, ..Script::default() }).await.unwrap();
    let policy =
        policy("  budgets:\n    - { id: session, scope: [session], unit: totalTokens, limit: 120, window: session }\n");
    let envoy = envoy(&policy, &provider, None).await;
    let client = client(&envoy, PLANNER_KEY, "long-session");
    let mut stream = client.chat().create_stream(request("gpt-4o", "Write a long essay.", true)).await.unwrap();
    let (mut words, mut error) = (0, None);
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                words +=
                    chunk.choices.iter().filter_map(|c| c.delta.content.as_deref()).filter(|t| !t.is_empty()).count();
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let error = error.expect("the stream ended with an error event, not silently");
    assert!(error.contains("budget"), "{error}");
    assert!(words > 50 && words < 120, "{words} words passed before the cut");
    let records = envoy.wait_for_access_log(1).await;
    assert_eq!(records[0]["status"], 200);
    assert_eq!(envoy.stat("wasmcustom.warden.token_budget.stream_cut").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_settled_from_json_from_the_usage_chunk_warden_asked_for_and_from_counting() {
    let provider = ChatProvider::start(Script { output_tokens: 12, ..Script::default() }).await.unwrap();
    let policy = policy("  defaultMaxOutputTokens: 64\n  budgets:\n    - { id: tenant-day, scope: [tenant], unit: totalTokens, limit: 100000, window: day }\n");
    let envoy = envoy(&policy, &provider, None).await;
    let client = client(&envoy, PLANNER_KEY, "s");

    let answer = client.chat().create(request("gpt-4o", "Hello there", false)).await.unwrap();
    let usage = answer.usage.unwrap();

    // Streamed: the client did not ask for usage, so it gets none, while Warden read it.
    let mut stream = client.chat().create_stream(request("gpt-4o", "Hello there", true)).await.unwrap();
    let mut chunks_with_usage = 0;
    while let Some(chunk) = stream.next().await {
        chunks_with_usage += usize::from(chunk.unwrap().usage.is_some());
    }
    assert_eq!(chunks_with_usage, 0);
    let forwarded = &provider.seen()[1].body;
    assert_eq!(forwarded["stream_options"]["include_usage"], true);
    assert_eq!(forwarded["max_completion_tokens"], 64);

    // A provider that reports nothing: the streamed output is counted.
    provider.set_script(Script { output_tokens: 12, report_usage: false, ..Script::default() });
    let mut stream = client.chat().create_stream(request("gpt-4o", "Hello there", true)).await.unwrap();
    while let Some(chunk) = stream.next().await {
        chunk.unwrap();
    }
    let records = envoy.wait_for_access_log(3).await;
    let tokens = |r: &Value| {
        (
            audit::field(r, "token_budget", "tokens.estimated").unwrap(),
            audit::field(r, "token_budget", "tokens.input").unwrap(),
            audit::field(r, "token_budget", "tokens.output").unwrap(),
        )
    };
    // The prompt was reserved at its upper bound (it fit, so it was never counted exactly);
    // what the provider reported settles it, and without a report the reservation stands.
    let bound: u64 = audit::field(&records[0], "token_budget", "tokens.estimated").unwrap().parse().unwrap();
    assert!(bound >= u64::from(usage.prompt_tokens), "the bound is never below the count");
    let reported = usage.prompt_tokens.to_string();
    let settled = [reported.clone(), reported, bound.to_string()];
    for (record, input) in records.iter().zip(settled) {
        assert_eq!(tokens(record), (bound.to_string(), input, "12".to_string()), "{record}");
        assert_eq!(audit::field(record, "token_budget", "tokens.reserved"), Some((bound + 64).to_string()));
        assert_eq!(audit::field(record, "token_budget", "cost_usd"), None, "no price table: no cost");
    }
}

#[test]
fn the_envoy_config_carries_the_example_policy() {
    let example = std::fs::read_to_string(repo::root().join("examples/token-budget/policy.yaml")).unwrap();
    assert_eq!(config_policy(CONFIG, "warden.token_budget").unwrap(), example);
    assert_eq!(config_policy(CONFIG, "warden.identity").unwrap(), example);
}
