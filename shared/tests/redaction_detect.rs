//! The redaction engine without a host: every built-in detector on true and false cases, the
//! actions, placeholders restored, policy detectors, and the split property of streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::redactor::{Direction, Redactor, TextKind};
use warden_policy::redaction::stream::TextStream;

const HASH_KEY: &str = "test-hash-key-0123456789";

fn compile(section: &str) -> Rc<CompiledRedaction> {
    let yaml = format!("redaction:\n{section}");
    let doc = parse_document(yaml.as_bytes()).expect("parses");
    let env = |name: &str| (name == "WARDEN_HASH_KEY").then(|| HASH_KEY.to_string());
    Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &env).expect("compiles"))
}

fn refused(section: &str) -> String {
    let yaml = format!("redaction:\n{section}");
    let doc = parse_document(yaml.as_bytes()).expect("parses");
    CompiledRedaction::compile(doc.redaction.as_ref().unwrap(), &|_| None).expect_err("refused").to_string()
}

fn caller(tenant: &str) -> Caller {
    Caller { agent: Some("planner".into()), tenant: Some(tenant.into()), ..Caller::default() }
}

fn masked(policy: &Rc<CompiledRedaction>, text: &str) -> String {
    let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/chat/completions", false);
    redactor.rewrite(text, Direction::Request, TextKind::Plain).unwrap_or_else(|| text.to_string())
}

fn default_policy() -> Rc<CompiledRedaction> {
    compile("  defaultAction: mask\n")
}

#[test]
fn each_builtin_finds_its_format_and_leaves_lookalikes() {
    let policy = default_policy();
    let found = [
        ("write to jane.doe+work@example.co.uk today", "write to [EMAIL] today"),
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("US (415) 555-2671.", "US [PHONE]."),
        ("Paris 01 42 68 53 00 ok", "Paris [PHONE] ok"),
        ("Berlin 030 12345678 ok", "Berlin [PHONE] ok"),
        ("mobile 98765 43210 ok", "mobile [PHONE] ok"),
        ("Tel: 4155552671.", "Tel: [PHONE]."),
        ("card 4111 1111 1111 1111 exp", "card [PAYMENT_CARD] exp"),
        ("amex 3782 822463 10005.", "amex [PAYMENT_CARD]."),
        ("iban GB82 WEST 1234 5698 7654 32 thanks", "iban [IBAN] thanks"),
        ("ssn 123-45-6789.", "ssn [US_SSN]."),
        ("host 192.168.10.20:8080", "host [IPV4]:8080"),
        ("v6 2001:db8:85a3::8a2e:370:7334 up", "v6 [IPV6] up"),
        ("key AKIAIOSFODNN7EXAMPLE in", "key [AWS_ACCESS_KEY] in"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [AWS_SECRET_KEY]",
        ),
        ("AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "[GCP_API_KEY]"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 x", "token [GITHUB_TOKEN] x"),
        ("glpat-abcdefghij0123456789 x", "[GITLAB_TOKEN] x"),
        ("xoxb-123456789012-abcdefghijkl", "[SLACK_TOKEN]"),
        ("sk_live_abcdefghijklmnopqrstuvwx", "[STRIPE_KEY]"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV0123456789 x", "[OPENAI_KEY] x"),
        (&format!("sk-ant-api03-{} x", "a1B2c3D4e5".repeat(9)), "[ANTHROPIC_KEY] x"),
        (
            "auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
            "auth [JWT] end",
        ),
        ("Authorization: Bearer q8Zr2LmX7vPk4Ns9Tb1W\n", "Authorization: Bearer [BEARER_TOKEN]\n"),
        ("api_key=\"q8Zr2LmX7vPk4Ns9Tb1W\"", "api_key=\"[GENERIC_SECRET]\""),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nrest",
            "[PEM_PRIVATE_KEY]\nrest",
        ),
    ];
    for (text, expected) in found {
        assert_eq!(masked(&policy, text), expected, "{text}");
    }
    let clean = [
        "uuid 550e8400-e29b-41d4-a716-446655440000 and sha 3f786850e387550fdab836ed7e6dc881de23001b",
        "version 1.2.3.4.5 and std::vector<int> a::b at 12:30:45",
        "card-like 4111 1111 1111 1112 and order 12345678",
        "password=changeme and token=${TOKEN} and api_key: <your key here>",
        "base64 aGVsbG8gd29ybGQgdGhpcyBpcyBub3QgYSBrZXk= is data",
        "email-ish user@localhost and @handle and a@b",
        "timestamp 1700000000 and 2024-01-15T10:00:00Z",
        "{\"id\": 7978819758, \"request\": \"54133666-5302-4716-a27d-70ca5ebc7f12\"}",
    ];
    for text in clean {
        assert_eq!(masked(&policy, text), text, "{text}");
    }
}

#[test]
fn actions_apply_per_class_and_category_and_rules_override_them() {
    let policy = compile(
        "  actions: { pii: placeholder, email: hash, secret: block, ipv4: record }\n  hashKey: { env: WARDEN_HASH_KEY }\n  rules:\n    - name: bank\n      when: { tenants: [bank] }\n      actions: { email: block }\n",
    );
    let text = "mail bob@example.com, call +1 415 555 2671, host 10.0.0.1";
    let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/chat/completions", false);
    let out = redactor.rewrite(text, Direction::Request, TextKind::Plain).unwrap();
    assert!(
        out.starts_with("mail [EMAIL:") && out.contains("call ⟦PHONE_1⟧") && out.ends_with("host 10.0.0.1"),
        "{out}"
    );
    // The same value hashes the same within a tenant, and differently in another.
    let again = Redactor::new(policy.clone(), caller("acme"), "/v1/x", false)
        .rewrite("bob@example.com", Direction::Request, TextKind::Plain)
        .unwrap();
    let other = Redactor::new(policy.clone(), caller("globex"), "/v1/x", false)
        .rewrite("bob@example.com", Direction::Request, TextKind::Plain)
        .unwrap();
    assert!(out.contains(&again) && again != other, "{again} {other}");
    assert!(!out.contains("bob") && !again.contains("example"));
    assert_eq!(redactor.blocked, None);
    assert!(redactor.classes.contains("ipv4") && redactor.classes.contains("pii"));

    let mut secret = Redactor::new(policy.clone(), caller("acme"), "/v1/x", false);
    let out = secret.rewrite("key AKIAIOSFODNN7EXAMPLE", Direction::Request, TextKind::Plain).unwrap();
    assert_eq!((out.as_str(), secret.blocked.as_deref()), ("key [AWS_ACCESS_KEY]", Some("aws_access_key")));

    let mut bank = Redactor::new(policy, caller("bank"), "/v1/x", false);
    bank.rewrite("bob@example.com", Direction::Request, TextKind::Plain);
    assert_eq!((bank.blocked.as_deref(), bank.rule()), (Some("email"), Some("bank")));
}

#[test]
fn placeholders_are_stable_within_a_request_and_restored_in_its_answer() {
    let policy = compile("  defaultAction: placeholder\n");
    let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/chat/completions", false);
    let sent = redactor
        .rewrite("from ann@example.com to bob@example.com, cc ann@example.com", Direction::Request, TextKind::Plain)
        .unwrap();
    assert_eq!(sent, "from ⟦EMAIL_1⟧ to ⟦EMAIL_2⟧, cc ⟦EMAIL_1⟧");
    let answer = redactor.rewrite("Wrote to ⟦EMAIL_2⟧ (not ⟦EMAIL_9⟧).", Direction::Answer, TextKind::Plain).unwrap();
    assert_eq!(answer, "Wrote to bob@example.com (not ⟦EMAIL_9⟧).");
    // In a tool call's arguments the value goes back as JSON source.
    let mut quoted = Redactor::new(policy.clone(), caller("acme"), "/v1/x", false);
    let sent = quoted.rewrite("name \"o\"brien@example.com", Direction::Request, TextKind::Plain).unwrap();
    assert!(sent.contains("⟦EMAIL_1⟧"), "{sent}");
    // Another request's placeholders mean nothing here.
    let mut other = Redactor::new(policy, caller("acme"), "/v1/x", false);
    assert_eq!(other.rewrite("⟦EMAIL_2⟧", Direction::Answer, TextKind::Plain), None);
}

#[test]
fn policy_detectors_words_and_per_tenant_additions() {
    let policy = compile(
        "  detectors:\n    - class: employee_id\n      regex: 'EMP-[0-9]{6}'\n    - class: codename\n      words: [Bluebird, night jar]\n      when: { tenants: [acme] }\n",
    );
    assert_eq!(
        masked(&policy, "EMP-123456 on BLUEBIRD and Night Jar, not bluebirds"),
        "[EMPLOYEE_ID] on [CODENAME] and [CODENAME], not bluebirds"
    );
    let mut globex = Redactor::new(policy, caller("globex"), "/v1/x", false);
    assert_eq!(globex.rewrite("BLUEBIRD", Direction::Request, TextKind::Plain), None, "acme's words only");
}

#[test]
fn a_bad_policy_is_refused_naming_the_field() {
    assert!(refused("  detectors:\n    - class: x\n      regex: 'a+'\n").starts_with("redaction.detectors[0].regex:"));
    assert!(refused("  detectors:\n    - class: x\n      regex: '(unclosed'\n")
        .starts_with("redaction.detectors[0].regex:"));
    assert!(
        refused("  detectors:\n    - class: email\n      words: [a]\n").starts_with("redaction.detectors[0].class:")
    );
    assert!(refused("  actions: { emial: mask }\n").starts_with("redaction.actions.emial:"));
    assert!(refused("  actions: { email: hash }\n").starts_with("redaction.hashKey:"));
    assert!(refused("  hashKey: { env: NOT_SET }\n").starts_with("redaction.hashKey.env:"));
    assert!(refused("  disabled: [emails]\n").starts_with("redaction.disabled[0]:"));
    let doc = parse_document(b"redaction:\n  defaultActoin: mask\n");
    assert!(doc.unwrap_err().to_string().contains("defaultActoin"));
}

#[test]
fn shadow_and_record_only_change_nothing_but_count() {
    let policy = default_policy();
    let mut redactor = Redactor::new(policy, caller("acme"), "/mcp/files", true);
    assert_eq!(redactor.rewrite("bob@example.com", Direction::Request, TextKind::Plain), None);
    assert_eq!(redactor.counts.get(&("email".to_string(), "mask")), Some(&1));
}

/// Texts for the split property: every kind of finding, placeholders, open values and text
/// around them, and multi-byte characters.
fn split_corpus() -> Vec<String> {
    vec![
        "Mail ann@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111.".to_string(),
        "über ⟦EMAIL_1⟧ and ⟦PHONE_1⟧ then ⟦EMAIL_2⟧ — fin".to_string(),
        "key=AKIAIOSFODNN7EXAMPLE\n-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBg\n-----END PRIVATE KEY-----\nafter"
            .to_string(),
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P and 10.1.2.3.4 v"
            .to_string(),
        format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY----- tail ann@example.com", "A".repeat(17000)),
        "no findings at all, just prose with numbers 12 345 and dates 2024-01-15.".to_string(),
        "a long way before: please call 4155552671 today, but order 7978819758 is an id".to_string(),
        // Found by fuzzing: a stream cut between an escape's two bytes found the address one
        // letter earlier than the whole text did.
        r#"{"ct":"cal\nn@xample.com, 1 1111 222211111 1ODNN7 11}"#.to_string(),
        // And a stream cut just after an escape, or at its letter, before a number or an address
        // the escape leaves standing alone.
        r#"call +44 55"55\n0555555555555}"#.to_string(),
        r#"0u +4an49.7.744 2.9.7.9. r\n2.9.7.9. +4an"#.to_string(),
        // A JWT past its cap with a full stop after it: judged over the cap before the stop is
        // trimmed, as a stream must.
        format!("x eyJhbGciOiJub25lIn0.{}. ok", "A".repeat(16400)),
    ]
}

fn through_stream(policy: &Rc<CompiledRedaction>, seed: &Redactor, text: &str, cuts: &[usize]) -> String {
    let _ = seed;
    let mut redactor = answer_redactor(policy);
    let mut stream = TextStream::new(Direction::Answer, TextKind::Plain);
    let mut out = String::new();
    let mut from = 0;
    for &cut in cuts {
        out.push_str(&stream.push(&mut redactor, &text[from..cut]));
        from = cut;
    }
    out.push_str(&stream.push(&mut redactor, &text[from..]));
    out.push_str(&stream.finish(&mut redactor));
    out
}

/// A redactor that handed out ⟦EMAIL_1⟧, ⟦EMAIL_2⟧ and ⟦PHONE_1⟧ in its request.
fn answer_redactor(policy: &Rc<CompiledRedaction>) -> Redactor {
    let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/chat/completions", false);
    redactor.rewrite("a@example.com b@example.com +1 415 555 2671", Direction::Request, TextKind::Plain).unwrap();
    redactor
}

/// A secret split over two deltas is the real leak: at every cut (and every pair of cuts on
/// the shorter texts) the released text equals the whole text's rewrite.
#[test]
fn a_stream_releases_the_same_text_wherever_it_is_split() {
    let policy = compile("  defaultAction: placeholder\n  actions: { secret: mask }\n");
    for text in split_corpus() {
        let expected =
            answer_redactor(&policy).rewrite(&text, Direction::Answer, TextKind::Plain).unwrap_or(text.clone());
        assert!(!expected.contains("AKIA") && !expected.contains("MIIB") && !expected.contains("AAAA"), "{expected}");
        let boundaries: Vec<usize> = (1..text.len()).filter(|&i| text.is_char_boundary(i)).collect();
        let seed = answer_redactor(&policy);
        let step = if text.len() > 2000 { 97 } else { 1 };
        for &cut in boundaries.iter().step_by(step) {
            assert_eq!(through_stream(&policy, &seed, &text, &[cut]), expected, "cut at {cut} of {text:?}");
        }
        if text.len() < 200 {
            for (i, &a) in boundaries.iter().enumerate() {
                for &b in &boundaries[i + 1..] {
                    assert_eq!(through_stream(&policy, &seed, &text, &[a, b]), expected, "cuts {a},{b}");
                }
            }
        }
        // One character at a time: the way a model streams.
        assert_eq!(through_stream(&policy, &seed, &text, &boundaries), expected);
    }
}

/// Text before a possible match is released at once; what is held is bounded.
#[test]
fn a_stream_holds_back_only_what_could_still_become_a_match() {
    let policy = default_policy();
    let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/x", false);
    let mut stream = TextStream::new(Direction::Answer, TextKind::Plain);
    assert_eq!(stream.push(&mut redactor, "Hello there, "), "Hello there, ");
    let released = stream.push(&mut redactor, "write to ann@exam");
    assert_eq!(released, "write to ");
    assert_eq!(stream.push(&mut redactor, "ple.com and then"), "[EMAIL] and ");
    assert!(stream.held() <= "then".len());
    let long = "word ".repeat(1000);
    let out = stream.push(&mut redactor, &long);
    assert!(stream.held() <= policy.answers.horizon, "held {}", stream.held());
    assert!(out.len() + stream.held() >= long.len());
}

/// Found in review: what an attacker or an ordinary payload does that the first version missed.
#[test]
fn tokens_after_escapes_and_inside_urls_are_found_as_secrets() {
    let policy = default_policy();
    // JSON held in a string: the `n` of `\n` is not a letter before the token.
    assert_eq!(masked(&policy, r"x\nghp_abcdefghijklmnopqrstuvwxyz0123456789\n"), r"x\n[GITHUB_TOKEN]\n");
    // A token in a URL's credentials is a token, not an e-mail address.
    let url = "git clone https://oauth2:glpat-abcdefghij0123456789@gitlab.com/g/r.git";
    assert_eq!(masked(&policy, url), "git clone https://oauth2:[GITLAB_TOKEN]@gitlab.com/g/r.git");
}

/// A long run that starts many candidates costs each of them a bounded window: linear, not
/// quadratic (a 256 KB run would take minutes otherwise).
#[test]
fn long_runs_of_digits_or_address_characters_are_scanned_in_linear_time() {
    let policy = default_policy();
    for text in [
        "5".repeat(256 * 1024),
        format!("{}@b.co", "a".repeat(256 * 1024)),
        format!("({}", "2".repeat(256 * 1024)),
        "1.".repeat(128 * 1024),
    ] {
        let mut redactor = Redactor::new(policy.clone(), caller("acme"), "/v1/x", false);
        redactor.rewrite(&text, Direction::Request, TextKind::Plain);
        assert!(redactor.counts.is_empty(), "{:?}", redactor.counts);
    }
}

/// A value past its cap that is only recorded passes once, whole, however it is streamed.
#[test]
fn an_over_cap_value_that_is_recorded_passes_through_unchanged() {
    let policy = compile("  actions: { secret: record }\n");
    let text = format!("before -----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY----- after", "QUJD".repeat(6000));
    let mut redactor = Redactor::new(policy, caller("acme"), "/v1/x", false);
    let mut stream = TextStream::new(Direction::Answer, TextKind::Plain);
    let mut out = String::new();
    for piece in text.as_bytes().chunks(700) {
        out.push_str(&stream.push(&mut redactor, std::str::from_utf8(piece).unwrap()));
    }
    out.push_str(&stream.finish(&mut redactor));
    assert_eq!(out, text);
}
