//! YAML for manifests that Kubernetes' YAML 1.1 reader takes exactly as written.
//!
//! A general serializer writes `2023-06-01`, `on` or `0777` unquoted when it means the string,
//! and a YAML 1.1 reader (kubectl's, PyYAML) then makes it a date, a boolean or an octal number:
//! a policy field would change type on its way into a `pluginConfig`. Here a string is plain only
//! when it cannot be read as anything else; otherwise it is quoted (JSON's quoting is YAML's
//! double-quoted style), and a multi-line string is a literal block, readable as the policy it is.

use serde_json::Value;

/// `value` as a YAML document body (no `---`).
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    node(value, 0, &mut out);
    out
}

fn node(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&" ".repeat(indent));
                out.push_str(&scalar_string(key, indent));
                out.push(':');
                child(item, indent + 2, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                // A map item starts on the dash's line, its other keys under the first.
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        let mut nested = String::new();
                        node(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(&nested[indent + 2..]);
                    }
                    _ => child(item, indent + 2, out),
                }
            }
        }
        _ => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&inline(value, indent));
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a nested block on the next lines, or a scalar on this one.
fn child(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            node(value, indent, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            node(value, indent, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(value, indent));
            out.push('\n');
        }
    }
}

fn inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => scalar_string(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

fn scalar_string(s: &str, indent: usize) -> String {
    if is_plain(s) {
        return s.to_string();
    }
    if let Some(block) = literal_block(s, indent) {
        return block;
    }
    quoted(s)
}

/// Characters a YAML reader takes as a line break, a byte-order mark, or refuses raw.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// Double-quoted: JSON's escapes (YAML's double-quoted style has them all), and `\uXXXX` for
/// what JSON leaves raw but YAML does not take raw (DEL, C1 controls, NEL, line separators).
fn quoted(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_default();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A YAML 1.1 reader takes a float only with a `.` and a signed exponent (`1.0e-7`, not `1e-7`).
fn number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_string(), Some(e.to_string())),
        None => (text.clone(), None),
    };
    let mantissa = if mantissa.contains('.') { mantissa } else { format!("{mantissa}.0") };
    match exponent {
        Some(e) if e.starts_with(['-', '+']) => format!("{mantissa}e{e}"),
        Some(e) => format!("{mantissa}e+{e}"),
        None => mantissa,
    }
}

/// Plain only when no YAML 1.1 or 1.2 reader can take it for anything but this string.
fn is_plain(s: &str) -> bool {
    // YAML 1.1's booleans and null in any case, and 1.2's special floats.
    const WORDS: [&str; 11] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf"];
    let Some(first) = s.chars().next() else { return false };
    first.is_ascii_alphabetic()
        && !WORDS.contains(&s.to_ascii_lowercase().as_str())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A multi-line string as `|` (or `|-` without a final newline), when it round-trips: no tabs
/// or carriage returns, no line with leading spaces first (the indentation would be misread),
/// no trailing blank lines.
fn literal_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n')
        || s.starts_with('\n')
        || s.contains('\r')
        || s.contains('\t')
        || s.starts_with(' ')
        || s.ends_with("\n\n")
    {
        return None;
    }
    if s.chars().any(|c| needs_escape(c) && c != '\n') || s.lines().any(|l| l.ends_with(' ')) {
        return None;
    }
    let body = s.strip_suffix('\n');
    let header = if body.is_some() { "|" } else { "|-" };
    let pad = " ".repeat(indent);
    let mut out = header.to_string();
    for line in body.unwrap_or(s).split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let text = to_string(value);
        Value::deserialize(serde_norway::Deserializer::from_str(&text)).expect(&text)
    }

    #[test]
    fn strings_a_yaml_1_1_reader_would_retype_are_quoted() {
        let value = json!({"date": "2023-06-01", "on": "on", "octal": "0777", "n": "n", "num": "1.5",
                           "empty": "", "colon": "a: b", "star": "gpt-4o*", "plain": "outbound"});
        let text = to_string(&value);
        for quoted in ["\"2023-06-01\"", "\"on\"", "\"0777\"", "\"n\"", "\"1.5\"", "\"\"", "\"a: b\"", "\"gpt-4o*\""] {
            assert!(text.contains(quoted), "{quoted} in {text}");
        }
        assert!(text.contains("plain: outbound\n"), "{text}");
        assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn line_breaks_controls_and_floats_are_written_for_a_yaml_1_1_reader() {
        let value = json!({"nel": "a\u{85}b", "ls": "a\u{2028}b\nc\n", "del": "x\u{7f}", "tiny": 1e-7, "big": 1.5e16,
                           "price": 0.15, "count": 3, "trailing": "a \nb\n"});
        let text = to_string(&value);
        for raw in ['\u{85}', '\u{2028}', '\u{7f}'] {
            assert!(!text.contains(raw), "{raw:?} written raw: {text}");
        }
        assert!(text.contains("tiny: 1.0e-7\n") && text.contains("big: 1.5e+16\n"), "{text}");
        assert!(text.contains("price: 0.15\n") && text.contains("count: 3\n"), "{text}");
        assert_eq!(round_trip(&value), value);
    }

    #[test]
    fn nested_maps_lists_and_blocks_round_trip() {
        let patch = json!({"value": {"list": [1, true, null, [], {}, [2, [3]], [{"a": 1, "b": [4]}]],
            "policy": "a: 1\nb:\n  - c\n\nd: \"e\"\n", "nofinal": "x\ny"}});
        let value = json!({"spec": {"configPatches": [{"applyTo": "X", "patch": patch}], "empty": {}, "none": []}});
        assert_eq!(round_trip(&value), value);
        assert!(to_string(&value).contains("policy: |\n"), "{}", to_string(&value));
    }
}
