//! JSON-RPC ids compared the way the official MCP SDKs compare them.
//!
//! A client matches a response to its pending request by the id's *value*, not its text:
//! - TypeScript SDK: `Number(response.id)` is looked up among pending ids (numbers from 0), so
//!   `"1"`, `" 1"`, `"1.0"`, `"1e0"`, `"0x1"`, `"+1"` and `1` all answer request 1, and `""`
//!   answers request 0;
//! - Python SDK: a string id that `int()` parses is taken as that integer (`"1"`, `" 1"`,
//!   `"+1"`, `"01"`, `"1_0"` is 10; Unicode digits count too).
//!
//! Pending requests are global to a session, whatever stream a response comes on. So Warden
//! treats two ids as the same request when any of those rules makes them equal, and a string
//! whose digits it cannot read (non-ASCII digits) as possibly equal to anything.

use serde_json::value::RawValue;

/// The forms an id can be compared in.
#[derive(Debug, Clone, PartialEq)]
pub struct IdKey {
    /// `s:<text>` for a string, `i:<decimal>` for an integer.
    exact: String,
    /// What JavaScript's `Number()` makes of it (`None`: NaN).
    js: Option<f64>,
    /// What Python's `int()` makes of it, as a canonical decimal.
    py: Option<String>,
    /// Its value cannot be worked out here: it may equal any id.
    unknown: bool,
}

impl IdKey {
    /// The key of a raw JSON id; `None` for an id no SDK accepts (null, booleans, fractions,
    /// objects, arrays): such a response answers nothing.
    pub fn of(raw: &RawValue) -> Option<IdKey> {
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'"') => {
                let s: String = serde_json::from_str(text).ok()?;
                let unknown = s.chars().any(|c| c.is_numeric() && !c.is_ascii_digit());
                Some(IdKey { js: js_number(&s), py: py_int(&s), exact: format!("s:{s}"), unknown })
            }
            Some(b'-' | b'0'..=b'9') => {
                // Integers only; `1.0` or `1e0` are numbers JavaScript reads as 1, but no SDK
                // sends them and the TypeScript schema would refuse them.
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let canonical = canonical_decimal(text.starts_with('-'), digits);
                Some(IdKey {
                    js: text.parse::<f64>().ok(),
                    py: Some(canonical.clone()),
                    exact: format!("i:{canonical}"),
                    unknown: false,
                })
            }
            _ => None,
        }
    }

    /// Whether a client could take a response carrying `self` as the answer to `other`.
    pub fn aliases(&self, other: &IdKey) -> bool {
        self.unknown
            || other.unknown
            || self.exact == other.exact
            || matches!((self.js, other.js), (Some(a), Some(b)) if a == b)
            || matches!((&self.py, &other.py), (Some(a), Some(b)) if a == b)
    }
}

fn canonical_decimal(negative: bool, digits: &str) -> String {
    let digits = digits.trim_start_matches('0');
    match (digits.is_empty(), negative) {
        (true, _) => "0".to_string(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_string(),
    }
}

/// ECMAScript `StringToNumber`.
fn js_number(s: &str) -> Option<f64> {
    const JS_SPACE: [char; 10] = [
        '\u{a0}', '\u{1680}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}', '\u{3000}', '\u{feff}', '\u{b}', '\u{c}',
    ];
    let t = s.trim_matches(|c: char| {
        c == ' '
            || c == '\t'
            || c == '\n'
            || c == '\r'
            || JS_SPACE.contains(&c)
            || ('\u{2000}'..='\u{200a}').contains(&c)
    });
    if t.is_empty() {
        return Some(0.0);
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(rest) = t.strip_prefix(prefix) {
            if rest.is_empty() {
                return None;
            }
            let mut value = 0f64;
            for c in rest.chars() {
                value = value * f64::from(radix) + f64::from(c.to_digit(radix)?);
            }
            return Some(value);
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return Some(if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    // StrUnsignedDecimalLiteral: digits, an optional fraction, an optional exponent.
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) || !exponent_ok {
        return None;
    }
    let normal = if whole.is_empty() { format!("0{t}") } else { t.to_string() };
    let normal = normal.replacen("+.", "+0.", 1).replacen("-.", "-0.", 1);
    normal.parse::<f64>().ok().map(|v| if v == 0.0 { 0.0 } else { v })
}

/// Python's `int(str)`, for ASCII digits (other digits make the key unknown).
fn py_int(s: &str) -> Option<String> {
    let t = s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
    let negative = t.starts_with('-');
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    // Digits, with single underscores between them.
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(canonical_decimal(negative, &digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(json: &str) -> Option<IdKey> {
        IdKey::of(&RawValue::from_string(json.to_string()).unwrap())
    }

    #[test]
    fn ids_the_typescript_and_python_sdks_take_for_one_another() {
        let one = key("1").unwrap();
        for alias in [
            r#""1""#,
            r#"" 1""#,
            r#""1 ""#,
            r#""1.0""#,
            r#""1e0""#,
            r#""0x1""#,
            r#""0b1""#,
            r#""+1""#,
            r#""01""#,
            r#""\ufeff1""#,
            r#""\u00a01""#,
            "1",
        ] {
            assert!(key(alias).unwrap().aliases(&one), "{alias}");
        }
        let zero = key("0").unwrap();
        for alias in [r#""""#, r#"" ""#, r#""-0""#, "-0", r#""0x0""#] {
            assert!(key(alias).unwrap().aliases(&zero), "{alias}");
        }
        assert!(key(r#""1_0""#).unwrap().aliases(&key("10").unwrap()), "Python reads 1_0 as 10");
        assert!(key(r#""١""#).unwrap().aliases(&one), "digits Warden cannot read may be anything");
        for other in [r#""2""#, r#""1n""#, r#""one""#, "2"] {
            assert!(!key(other).unwrap().aliases(&one), "{other}");
        }
        assert!(key(r#""abc""#).unwrap().aliases(&key(r#""abc""#).unwrap()));
        for invalid in ["null", "true", "1.5", "1.0", "{}", "[1]"] {
            assert_eq!(key(invalid), None, "{invalid}");
        }
    }
}
