//! Budgets without a proxy: policy checks, prices, reservations and settles in shared data,
//! the overshoot bound under random interleavings, and usage read from answers and streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::sync::OnceLock;
use warden_policy::budget::compile::CompiledTokenBudget;
use warden_policy::budget::config::{Encoding, Unit};
use warden_policy::budget::plan::{amount, Outcome, Plan, PlanError, Planner, Usage};
use warden_policy::budget::tokenizer::Tokenizers;
use warden_policy::budget::usage::{self, StreamMeter};
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::testing::MemoryHost;
use warden_policy::tool_acl::llm::Api;

const NOW: u64 = 1_795_614_330; // 2026-11-25T13:45:30Z

fn policy(budgets: &str) -> CompiledTokenBudget {
    let yaml = format!(
        "tokenBudget:\n  models:\n    - {{name: 'gpt-4o-mini*', price: {{input: 0.15, cachedInput: 0.075, output: 0.6}}}}\n    - {{name: 'gpt-4o*', price: {{input: 2.5, output: 10}}}}\n  budgets:\n{budgets}"
    );
    CompiledTokenBudget::compile(parse_document(yaml.as_bytes()).unwrap().token_budget.as_ref().unwrap()).unwrap()
}

fn policy_error(section: &str) -> String {
    let document = parse_document(section.as_bytes()).map_err(|e| e.to_string());
    match document {
        Err(e) => e,
        Ok(d) => CompiledTokenBudget::compile(d.token_budget.as_ref().unwrap()).unwrap_err().to_string(),
    }
}

fn caller(session: &str) -> Caller {
    Caller {
        agent: Some("planner".into()),
        tenant: Some("acme".into()),
        session: Some(session.into()),
        ..Caller::default()
    }
}

fn reserve(p: &CompiledTokenBudget, host: &MemoryHost, who: &Caller, model: &str, estimate: Usage) -> Outcome {
    let planner = Planner { policy: p, host, caller: who, now: host.now_secs.get() };
    planner.reserve(model, estimate, Some("r")).unwrap().unwrap()
}

fn settle(p: &CompiledTokenBudget, host: &MemoryHost, who: &Caller, plan: &Plan, usage: Usage) {
    Planner { policy: p, host, caller: who, now: host.now_secs.get() }.settle_local(plan, usage).unwrap();
}

fn held(outcome: Outcome) -> Plan {
    match outcome {
        Outcome::Held(plan) => plan,
        Outcome::Refused(r) => panic!("refused: {r:?}"),
    }
}

fn usage(input: u64, output: u64) -> Usage {
    Usage { input, cached_input: 0, output }
}

#[test]
fn mistakes_in_the_policy_are_named_by_path() {
    let base = "tokenBudget:\n  budgets:\n    - {id: b, scope: [tenant], unit: totalTokens, limit: 10, window: day";
    assert!(policy_error(&format!("{base}, windw: day}}\n")).contains("tokenBudget.budgets[0].windw"));
    assert!(policy_error(&format!("{base}, store: global}}\n")).contains("needs `tokenBudget.rateLimitService`"));
    let session =
        "tokenBudget:\n  budgets:\n    - {id: b, scope: [tenant], unit: totalTokens, limit: 10, window: session}\n";
    assert!(policy_error(session).contains("tokenBudget.budgets[0].window"));
    let cost = "tokenBudget:\n  budgets:\n    - {id: b, scope: [tenant], unit: costUsd, limit: 1, window: day}\n";
    assert!(policy_error(cost).contains("needs prices"));
    let fraction =
        "tokenBudget:\n  budgets:\n    - {id: b, scope: [tenant], unit: totalTokens, limit: 1.5, window: day}\n";
    assert!(policy_error(fraction).contains("whole numbers"));
    let twice = format!("{base}}}\n    - {{id: b, scope: [agent], unit: requests, limit: 1, window: day}}\n");
    assert!(policy_error(&twice).contains("tokenBudget.budgets[1].id"));
    let unit = "tokenBudget:\n  budgets:\n    - {id: b, scope: [tenant], unit: tokens, limit: 1, window: day}\n";
    assert!(policy_error(unit).contains("tokenBudget.budgets[0].unit"), "{}", policy_error(unit));
}

#[test]
fn costs_come_from_the_price_table_in_micro_usd() {
    let p = policy("    - {id: c, scope: [tenant], unit: costUsd, limit: 1, window: day}\n");
    let mini = p.model("gpt-4o-mini-2024-07-18");
    assert_eq!(mini.encoding, Encoding::O200k);
    // 1,000 input (400 cached) + 500 output on gpt-4o-mini: 600×0.15 + 400×0.075 + 500×0.6 = 420 µ$.
    let u = Usage { input: 1000, cached_input: 400, output: 500 };
    assert_eq!(amount(Unit::CostUsd, mini.price, u), 420);
    assert_eq!(amount(Unit::CostUsd, p.model("gpt-4o").price, usage(1, 1)), 13); // 2.5 + 10 → 12.5 rounds up
    assert_eq!(p.budgets[0].limit, 1_000_000);
    assert_eq!(p.model("claude-3-5-sonnet").encoding, Encoding::Estimate);
    assert_eq!(p.model("gpt-4-turbo").encoding, Encoding::Cl100k);
}

#[test]
fn reservations_take_settles_give_back_and_windows_roll() {
    let p = policy("    - {id: day, scope: [tenant], unit: totalTokens, limit: 1000, window: day}\n");
    let host = MemoryHost::default();
    host.now_secs.set(NOW);
    let who = caller("s1");
    let a = held(reserve(&p, &host, &who, "gpt-4o", usage(100, 500)));
    let b = held(reserve(&p, &host, &who, "gpt-4o", usage(100, 300)));
    // 600 + 400 = 1000 reserved: nothing more fits.
    let Outcome::Refused(refusal) = reserve(&p, &host, &who, "gpt-4o", usage(1, 0)) else { panic!("overspent") };
    assert_eq!((refusal.used, refusal.limit), (1000, 1000));
    assert_eq!(refusal.reset_at, Some(NOW - NOW % 86_400 + 86_400));
    // `a` used 100 + 50: 450 come back.
    settle(&p, &host, &who, &a, usage(100, 50));
    let c = held(reserve(&p, &host, &who, "gpt-4o", usage(50, 400)));
    // A request that failed (no usage) gives everything back.
    settle(&p, &host, &who, &b, Usage::default());
    settle(&p, &host, &who, &c, usage(50, 400));
    let d = held(reserve(&p, &host, &who, "gpt-4o", usage(100, 300)));
    assert_eq!(d.charges[0].local.as_ref().unwrap().used_after, 150 + 450 + 400);
    // Another tenant has its own counter.
    let other = Caller { tenant: Some("globex".into()), ..caller("s9") };
    held(reserve(&p, &host, &other, "gpt-4o", usage(500, 500)));
    // The next day starts from zero; a late settle of yesterday's request cannot reach it.
    host.now_secs.set(NOW + 86_400);
    let e = held(reserve(&p, &host, &who, "gpt-4o", usage(900, 100)));
    settle(&p, &host, &who, &d, usage(100, 300));
    assert_eq!(e.charges[0].local.as_ref().unwrap().used_after, 1000);
}

#[test]
fn every_applying_budget_must_agree_or_none_is_charged() {
    let p = policy(concat!(
        "    - {id: tenant, scope: [tenant], unit: totalTokens, limit: 10000, window: day}\n",
        "    - {id: session, scope: [session], unit: totalTokens, limit: 300, window: session}\n",
        "    - {id: per-request, scope: [request], unit: totalTokens, limit: 250, window: request}\n",
        "    - {id: mini-only, scope: [agent], unit: requests, limit: 1, window: minute, when: {models: ['gpt-4o-mini']}}\n",
    ));
    let host = MemoryHost::default();
    host.now_secs.set(NOW);
    let who = caller("s1");
    let Outcome::Refused(r) = reserve(&p, &host, &who, "gpt-4o", usage(200, 100)) else { panic!() };
    assert_eq!(p.budgets[r.budget].id, "per-request");
    let first = held(reserve(&p, &host, &who, "gpt-4o", usage(100, 100)));
    assert_eq!(first.charges.len(), 3, "the mini-only budget does not apply to gpt-4o");
    // The session has 100 left: refused there, and the tenant budget is given back.
    let Outcome::Refused(r) = reserve(&p, &host, &who, "gpt-4o", usage(100, 100)) else { panic!() };
    assert_eq!(p.budgets[r.budget].id, "session");
    assert_eq!(r.reset_at, None, "a session budget never resets by time");
    let t = held(reserve(&p, &host, &caller("s2"), "gpt-4o", usage(1, 1)));
    assert_eq!(t.charges[0].local.as_ref().unwrap().used_after, 202, "the refused request left nothing behind");
    // Uncapped, the per-request maximum caps it at the 249 it leaves: that is what is reserved.
    let u = held(reserve(&p, &host, &caller("s5"), "gpt-4o", usage(1, 0)));
    assert_eq!((u.request_cap, u.estimate.output), (Some(249), 249));
    assert_eq!(u.charges[0].local.as_ref().unwrap().used_after, 202 + 250);
    // The model-specific request budget: one request a minute.
    held(reserve(&p, &host, &caller("s3"), "gpt-4o-mini", usage(1, 0)));
    let Outcome::Refused(r) = reserve(&p, &host, &caller("s4"), "gpt-4o-mini", usage(1, 0)) else { panic!() };
    assert_eq!(p.budgets[r.budget].id, "mini-only");
    // A session budget cannot count a request without a session.
    let anonymous = Caller { session: None, ..caller("x") };
    let planner = Planner { policy: &p, host: &host, caller: &anonymous, now: NOW };
    assert!(matches!(
        planner.reserve("gpt-4o", usage(1, 0), None).unwrap(),
        Err(PlanError::NoScope { part: "session", .. })
    ));
}

/// A tiny deterministic generator, so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Requests reserve their estimate and cap, then settle what the provider billed: the prompt
/// plus an underestimate, and at most the cap. Whatever the interleaving, what was spent never
/// exceeds the limit by more than the underestimates of the requests still in flight when
/// the last one was admitted; one at a time, by more than one request's underestimate.
#[test]
fn overshoot_is_bounded_by_the_underestimates_in_flight() {
    let p = policy("    - {id: day, scope: [tenant], unit: totalTokens, limit: 5000, window: day}\n");
    for seed in 1..=200u64 {
        let host = MemoryHost::default();
        host.now_secs.set(NOW);
        let who = caller("s");
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let concurrency = 1 + rng.next(12) as usize;
        let mut in_flight: Vec<(Plan, Usage)> = Vec::new();
        let (mut spent, mut bound_at_last_admission, mut max_under) = (0u64, 0u64, 0u64);
        for _ in 0..400 {
            let admit = in_flight.len() < concurrency && (in_flight.is_empty() || rng.next(2) == 0);
            if admit {
                let estimate = usage(20 + rng.next(200), 10 + rng.next(300));
                let under = rng.next(30);
                let billed = usage(estimate.input + under, rng.next(estimate.output + 1));
                if let Outcome::Held(plan) = reserve(&p, &host, &who, "gpt-4o", estimate) {
                    max_under = max_under.max(under);
                    in_flight.push((plan, billed));
                    bound_at_last_admission = in_flight.iter().map(|(pl, b)| b.input - pl.estimate.input).sum();
                }
            } else {
                let (plan, billed) = in_flight.remove(rng.next(in_flight.len() as u64) as usize);
                settle(&p, &host, &who, &plan, billed);
                spent += billed.input + billed.output;
            }
        }
        for (plan, billed) in in_flight.drain(..) {
            settle(&p, &host, &who, &plan, billed);
            spent += billed.input + billed.output;
        }
        assert!(spent <= 5000 + bound_at_last_admission, "seed {seed}: spent {spent}");
        if concurrency == 1 {
            assert!(spent <= 5000 + max_under, "seed {seed}: one at a time, spent {spent}");
        }
    }
}

fn tokenizers() -> &'static Tokenizers {
    static T: OnceLock<Tokenizers> = OnceLock::new();
    T.get_or_init(Tokenizers::default)
}

fn chat_stream(words: usize, with_usage: bool) -> String {
    let mut s =
        String::from("data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
    for _ in 0..words {
        s.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" tok\"}}]}\n\n");
    }
    s.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    if with_usage {
        s.push_str("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n");
    }
    s.push_str("data: [DONE]\n\n");
    s
}

/// Streams `text` through a meter in two chunks split at `split`; returns what passed.
fn meter(api: Api, text: &str, split: usize, strip: bool, allowance: Option<u64>) -> (String, StreamMeter) {
    let mut m = StreamMeter::new(api, Encoding::O200k, strip, allowance, 1 << 20);
    let mut out = m.push(&text.as_bytes()[..split], tokenizers(), &|| "spent".to_string());
    out.extend(m.push(&text.as_bytes()[split..], tokenizers(), &|| "spent".to_string()));
    out.extend(m.finish(tokenizers(), &|| "spent".to_string()));
    (String::from_utf8(out).unwrap(), m)
}

#[test]
fn openai_usage_chunks_are_read_and_the_one_warden_asked_for_is_removed() {
    let text = chat_stream(5, true);
    for split in 0..=text.len() {
        let (passed, m) = meter(Api::ChatCompletions, &text, split, true, None);
        assert_eq!(passed, chat_stream(5, false), "split at {split}");
        assert_eq!(usage::settled(m.reported, 0, m.counted_output), Usage { input: 12, cached_input: 4, output: 5 });
        assert_eq!(m.counted_output, 5);
    }
    // The client asked for it itself: it stays.
    assert_eq!(meter(Api::ChatCompletions, &text, 7, false, None).0, text);
}

#[test]
fn a_stream_without_usage_is_settled_from_what_was_counted() {
    let text = chat_stream(9, false);
    let (passed, m) = meter(Api::ChatCompletions, &text, 40, true, None);
    assert_eq!(passed, text);
    assert_eq!(usage::settled(m.reported, 30, m.counted_output), usage(30, 9));
}

#[test]
fn a_stream_past_its_allowance_ends_with_an_error_event() {
    let text = chat_stream(50, false);
    for split in [0, 100, text.len() / 2, text.len()] {
        let (passed, m) = meter(Api::ChatCompletions, &text, split, true, Some(10));
        assert!(m.cut);
        assert_eq!(passed.matches("\" tok\"").count(), 11, "the event that crossed is the last passed");
        assert!(passed.ends_with("data: {\"error\":{\"code\":\"budget_exhausted\",\"message\":\"spent\",\"type\":\"tokens\"}}\n\ndata: [DONE]\n\n"), "{passed}");
    }
    let anthropic = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\" tok tok tok\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\" tok tok tok\"}}\n\n",
    );
    let (passed, m) = meter(Api::AnthropicMessages, anthropic, 33, false, Some(4));
    assert!(m.cut && passed.ends_with("event: error\ndata: {\"error\":{\"message\":\"spent\",\"type\":\"rate_limit_error\"},\"type\":\"error\"}\n\n"), "{passed}");
}

#[test]
fn anthropic_and_responses_usage_is_read_from_json_and_streams() {
    let anthropic = json!({"usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 7}});
    let (reported, _) = usage::from_json(Api::AnthropicMessages, anthropic.to_string().as_bytes());
    assert_eq!(usage::settled(reported, 0, 0), Usage { input: 100, cached_input: 90, output: 7 });
    let responses = json!({"model": "gpt-4o", "usage": {"input_tokens": 33, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 3}}});
    let (reported, model) = usage::from_json(Api::Responses, responses.to_string().as_bytes());
    assert_eq!(
        (usage::settled(reported, 0, 0), model.as_deref()),
        (Usage { input: 33, cached_input: 3, output: 4 }, Some("gpt-4o"))
    );
    let stream = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":21,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\" tok tok\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\n",
    );
    for split in 0..=stream.len() {
        let (passed, m) = meter(Api::AnthropicMessages, stream, split, true, None);
        assert_eq!(passed, stream);
        assert_eq!(usage::settled(m.reported, 0, m.counted_output), usage(21, 2), "split at {split}");
    }
    let completed = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\" tok\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":8,\"output_tokens\":1}}}\n\n";
    let (_, m) = meter(Api::Responses, completed, 10, true, None);
    assert_eq!(usage::settled(m.reported, 0, m.counted_output), usage(8, 1));
}

/// An event too large to read is never passed on unread: the stream is cut there, in the API's
/// error shape, and what follows is dropped without being held.
#[test]
fn an_event_too_large_to_meter_cuts_the_stream() {
    let mut m = StreamMeter::new(Api::ChatCompletions, Encoding::O200k, false, None, 64);
    let first = m.push(b"data: {\"choices\":[]}\n\n", tokenizers(), &|| "spent".to_string());
    assert_eq!(first, b"data: {\"choices\":[]}\n\n");
    let cut = String::from_utf8(m.push(&[b'x'; 100], tokenizers(), &|| "spent".to_string())).unwrap();
    assert!(cut.contains("cannot be metered") && cut.ends_with("data: [DONE]\n\n"), "{cut}");
    assert!(m.cut && m.oversized);
    assert!(m.push(b"\n\ndata: {\"choices\":[]}\n\n", tokenizers(), &|| "spent".to_string()).is_empty());
    assert!(m.finish(tokenizers(), &|| "spent".to_string()).is_empty());
}

/// Session ids and model names are the client's to choose: one agent churning through them
/// runs into its own cap (and only it), never fills a slot another tenant's counters need, and
/// drops nobody's live counter.
#[test]
fn a_churn_of_sessions_and_models_is_capped_per_agent() {
    let p = policy(concat!(
        "    - {id: session, scope: [session], unit: totalTokens, limit: 1000, window: session}\n",
        "    - {id: per-model, scope: [tenant, model], unit: totalTokens, limit: 100000, window: day}\n",
        "    - {id: tenant, scope: [tenant], unit: totalTokens, limit: 100000, window: day}\n",
    ));
    let host = MemoryHost::default();
    host.now_secs.set(NOW);
    let victim = Caller { agent: Some("victim".into()), tenant: Some("globex".into()), ..caller("v1") };
    held(reserve(&p, &host, &victim, "gpt-4o", usage(10, 10)));
    let churner =
        |i: usize| Caller { agent: Some("churner".into()), tenant: Some("acme".into()), ..caller(&format!("s{i}")) };
    let mut refused = 0;
    for i in 0..300 {
        let planner = Planner { policy: &p, host: &host, caller: &churner(i), now: NOW };
        match planner.reserve(&format!("model-{i}"), usage(1, 1), None).unwrap() {
            Ok(Outcome::Held(_)) => {}
            Err(PlanError::TooManyCounters { .. }) => refused += 1,
            Ok(Outcome::Refused(r)) => panic!("refused by {}", p.budgets[r.budget].id),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(refused, 300 - 64);
    // The victim's counters are whole and its requests go on, in its session and a new one.
    let again = held(reserve(&p, &host, &victim, "gpt-4o", usage(10, 10)));
    assert_eq!(again.charges[0].local.as_ref().unwrap().used_after, 40, "session counter kept: {again:?}");
    held(reserve(
        &p,
        &host,
        &Caller { agent: Some("victim".into()), tenant: Some("globex".into()), ..caller("v2") },
        "gpt-4o",
        usage(1, 1),
    ));
}
