//! Redaction: a text streamed in three pieces cut anywhere is released exactly as the whole is
//! rewritten (no half value, no value that depends on where a chunk ended); a JSON document
//! rewritten is still JSON, with its structure kept.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::rc::Rc;
use warden_policy::policy::parse_document;
use warden_policy::principal::Caller;
use warden_policy::redaction::compile::CompiledRedaction;
use warden_policy::redaction::json_text;
use warden_policy::redaction::redactor::{Direction, Redactor, TextKind};
use warden_policy::redaction::stream::TextStream;

fn policy() -> Rc<CompiledRedaction> {
    // Compiled once per process (a VM compiles once too); Rc is fine: libFuzzer runs one thread.
    thread_local! {
        static POLICY: Rc<CompiledRedaction> = {
            let doc = parse_document(b"redaction:\n  defaultAction: placeholder\n  actions: { secret: mask }\n").expect("parses");
            Rc::new(CompiledRedaction::compile(doc.redaction.as_ref().expect("section"), &|_| None).expect("compiles"))
        };
    }
    POLICY.with(Rc::clone)
}

fn redactor() -> Redactor {
    let mut redactor = Redactor::new(policy(), Caller::default(), "/v1/chat/completions", false);
    redactor.rewrite("ann@example.com bob@example.org", Direction::Request, TextKind::Plain);
    redactor
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let whole = redactor().rewrite(text, Direction::Answer, TextKind::Plain).unwrap_or_else(|| text.to_string());
    let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
    let a = boundaries[usize::from(cut) % boundaries.len()];
    let b = boundaries[(usize::from(cut) * 7 + 3) % boundaries.len()];
    let (a, b) = (a.min(b), a.max(b));
    let mut redactor = redactor();
    let mut stream = TextStream::new(Direction::Answer, TextKind::Plain);
    let mut out = String::new();
    for piece in [&text[..a], &text[a..b], &text[b..]] {
        out.push_str(&stream.push(&mut redactor, piece));
    }
    out.push_str(&stream.finish(&mut redactor));
    assert_eq!(out, whole, "cut at {a} and {b}");

    if let Ok(Some(rewritten)) = json_text::rewrite(text, &mut |t| redactor.rewrite(t, Direction::Request, TextKind::Plain)) {
        // A tree cannot hold some valid documents (a number beyond f64); those keep only the
        // check that the rewrite is still JSON.
        serde_json::from_str::<&serde_json::value::RawValue>(&rewritten).expect("still JSON");
        if let Ok(before) = serde_json::from_str::<serde_json::Value>(text) {
            let after: serde_json::Value = serde_json::from_str(&rewritten).expect("still a tree");
            assert_eq!(shape(&before), shape(&after), "{text} -> {rewritten}");
        }
    }
});

/// The document's structure: its keys and the kinds of its values, strings and numbers alike
/// (a number found to be a card becomes the string standing in for it).
fn shape(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) | Value::Number(_) => Value::String("scalar".into()),
        other => other.clone(),
    }
}
