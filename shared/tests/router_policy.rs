//! The router's policy: the `router` section compiled (a typo or a dangling name refused with
//! its path), and the targets a request may reach chosen by alias, rules and weights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::router::compile::CompiledRouter;
use warden_policy::router::select::{select, Refusal};

const POLICY: &str = r#"
router:
  providers:
    - { name: openai, kind: openai, cluster: llm_openai, credential: { env: OPENAI_API_KEY } }
    - { name: azure, kind: azureOpenai, cluster: llm_azure, apiVersion: "2024-10-21", credential: { sds: azure-key } }
    - { name: anthropic, kind: anthropic, cluster: llm_anthropic, apiVersion: "2023-06-01" }
    - { name: local, kind: openaiCompatible, cluster: vllm, basePath: /v1, private: true }
  models:
    - alias: smart
      targets:
        - { provider: openai, model: gpt-4o, weight: 3 }
        - { provider: azure, model: gpt-4o-prod, weight: 1 }
        - { provider: local, model: llama-3.1-70b, priority: 1 }
    - alias: claude
      targets:
        - { provider: anthropic, model: claude-sonnet-4 }
  rules:
    - { id: bank-private, when: { tenants: [bank] }, allow: { privateOnly: true } }
    - { id: sensitive-data, dataClasses: [pii, secret], allow: { privateOnly: true } }
    - { id: contractors-azure, when: { agents: ["contractor-*"] }, allow: { providers: [azure, local] } }
"#;

fn router(text: &str) -> Result<CompiledRouter, String> {
    let document = parse_document(text.as_bytes()).map_err(|e| e.to_string())?;
    CompiledRouter::compile(document.router.as_ref().unwrap()).map_err(|e| e.to_string())
}

fn caller(agent: &str, tenant: &str) -> Caller {
    Caller { agent: Some(agent.into()), tenant: Some(tenant.into()), ..Caller::default() }
}

fn models<'r>(router: &'r CompiledRouter, alias: &str, who: &Caller, classes: &[&str], seed: u64) -> Vec<&'r str> {
    let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
    select(router, alias, who, &classes, seed).unwrap().iter().map(|t| t.model.as_str()).collect()
}

#[test]
fn a_policy_with_a_typo_or_a_dangling_name_is_refused_naming_the_field() {
    let typo = router(&POLICY.replace("apiVersion: \"2024", "apiVerison: \"2024")).unwrap_err();
    assert!(typo.contains("router.providers[1].apiVerison") && typo.contains("unknown field"), "{typo}");
    let dangling =
        router(&POLICY.replace("provider: local, model: llama", "provider: lcoal, model: llama")).unwrap_err();
    assert!(dangling.contains("router.models[0].targets[2].provider") && dangling.contains("lcoal"), "{dangling}");
    let no_allow = router(
        &POLICY.replace("allow: { privateOnly: true } }\n    - { id: sensitive", "allow: {} }\n    - { id: sensitive"),
    )
    .unwrap_err();
    assert!(no_allow.contains("router.rules[0].allow"), "{no_allow}");
    let azure = router(&POLICY.replace(", apiVersion: \"2024-10-21\"", "")).unwrap_err();
    assert!(azure.contains("router.providers[1].apiVersion"), "{azure}");
    let weight = router(&POLICY.replace("weight: 1 }", "weight: 0 }")).unwrap_err();
    assert!(weight.contains("router.models[0].targets[1].weight"), "{weight}");
}

#[test]
fn an_alias_is_tried_by_priority_and_split_by_weight_within_one() {
    let router = router(POLICY).unwrap();
    let anyone = caller("planner", "acme");
    let mut first_openai = 0;
    for seed in 0..1000 {
        let order = models(&router, "smart", &anyone, &[], seed);
        assert_eq!(order.len(), 3);
        assert_eq!(order[2], "llama-3.1-70b", "the lower priority comes last");
        first_openai += usize::from(order[0] == "gpt-4o");
    }
    assert!((700..800).contains(&first_openai), "3:1 weights: {first_openai} of 1000 went to openai first");
    assert_eq!(models(&router, "smart", &anyone, &[], 7), models(&router, "smart", &anyone, &[], 7), "reproducible");
    assert_eq!(select(&router, "dumb", &anyone, &[], 0), Err(Refusal::UnknownModel));
}

#[test]
fn rules_keep_tenants_and_sensitive_data_on_private_providers() {
    let router = router(POLICY).unwrap();
    assert_eq!(models(&router, "smart", &caller("planner", "bank"), &[], 1), ["llama-3.1-70b"]);
    assert_eq!(models(&router, "smart", &caller("planner", "acme"), &["pii"], 1), ["llama-3.1-70b"]);
    let contractor = models(&router, "smart", &caller("contractor-7", "acme"), &[], 1);
    assert_eq!(contractor, ["gpt-4o-prod", "llama-3.1-70b"]);
    // No private target for this alias: refused, naming the rule that removed the last one.
    let refused = select(&router, "claude", &caller("planner", "bank"), &[], 1);
    assert_eq!(refused, Err(Refusal::NotPermitted { rule: "bank-private".into() }));
    let secret = select(&router, "claude", &caller("planner", "acme"), &["secret".to_string()], 1);
    assert_eq!(secret, Err(Refusal::NotPermitted { rule: "sensitive-data".into() }));
    // A caller without a tenant is not the bank's.
    assert_eq!(models(&router, "claude", &Caller { agent: Some("a".into()), ..Caller::default() }, &[], 1).len(), 1);
}

#[test]
fn credentials_are_named_never_held() {
    let two = router_err(&POLICY.replace("{ sds: azure-key }", "{ sds: azure-key, env: AZURE_KEY }"));
    assert!(two.contains("router.providers[1].credential") && two.contains("one source"), "{two}");
    let router = router(POLICY).unwrap();
    let debug = format!("{router:?}");
    assert!(debug.contains("OPENAI_API_KEY") && debug.contains("azure-key"));
    let inline = router_err(&POLICY.replace("credential: { env: OPENAI_API_KEY }", "credential: { value: sk-live-1 }"));
    assert!(inline.contains("router.providers[0].credential") && inline.contains("unknown field `value`"), "{inline}");
}

fn router_err(text: &str) -> String {
    router(text).unwrap_err()
}
