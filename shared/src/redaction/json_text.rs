//! The text of a JSON document rewritten in place: every string value (and number: a card
//! number sent as a JSON number is still a card number) goes to the redactor, except under the
//! protocol's few structural keys (a role, a type) and inline files; everything else in the
//! document is kept byte for byte. A string that holds a JSON document itself (a tool call's
//! `arguments`, a tool's output) is rewritten as a document, so its values stay values.

use serde::de::IgnoredAny;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not valid JSON: {0}")]
pub struct NotJson(pub String);

/// Keys whose values are the protocol's own words from a fixed set (a role, a type, a finish
/// reason) or opaque blobs the provider itself made (a thinking block's signature): nothing a
/// user writes. Everything else is scanned, ids and names included: a value the provider would
/// read is a value a secret can hide in. Inside a tool's arguments nothing is skipped.
pub const STRUCTURAL: &[&str] = &[
    "role",
    "type",
    "object",
    "finish_reason",
    "stop_reason",
    "media_type",
    "mime_type",
    "mimeType",
    "jsonrpc",
    "signature",
    "encrypted_content",
];

/// Keys whose values may be inline files (`data:` URIs, base64 images and documents): scanned
/// unless the value is such a blob, where a match would be noise and a change would break it.
const MAYBE_BLOB: &[&str] = &["url", "data", "image_url", "file_data"];

/// Keys whose value is what a tool receives: nothing under them is skipped.
const ARGUMENTS: &[&str] = &["arguments", "input", "params"];

/// Keys that name a secret: their value is scanned as the assignment `key=value` would be, so
/// `{"password": "Xk9v…"}` is found as `password=Xk9v…` is.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_token",
    "auth_token",
    "client_secret",
    "secret_key",
    "private_token",
    "aws_secret_access_key",
];

/// How deep a string holding JSON is read as a document within another (`arguments` holding a
/// document whose strings hold documents): enough for real payloads, bounded for crafted ones.
const MAX_EMBEDDED: usize = 3;

/// Rewrites `doc`; `edit` gets each text and returns its replacement (`None`: unchanged).
/// `Ok(None)` when nothing changed. A string that cannot be decoded as its reader will (an
/// unpaired `\ud800`, which JavaScript and Python readers accept) makes the document unreadable:
/// it is refused, never passed unscanned.
pub fn rewrite(doc: &str, edit: &mut dyn FnMut(&str) -> Option<String>) -> Result<Option<String>, NotJson> {
    rewrite_at(doc, edit, 0, false)
}

fn rewrite_at(
    doc: &str,
    edit: &mut dyn FnMut(&str) -> Option<String>,
    embedded: usize,
    in_arguments: bool,
) -> Result<Option<String>, NotJson> {
    serde_json::from_str::<IgnoredAny>(doc).map_err(|e| NotJson(e.to_string()))?;
    let mut walker =
        Walker { doc, bytes: doc.as_bytes(), pos: 0, out: String::new(), copied: 0, embedded, error: None };
    walker.value(None, in_arguments, edit);
    if let Some(error) = walker.error {
        return Err(error);
    }
    if walker.copied == 0 {
        return Ok(None);
    }
    walker.out.push_str(&doc[walker.copied..]);
    Ok(Some(walker.out))
}

/// A value with no spaces, all base64 or a `data:` URI, and long: an inline file.
fn is_blob(text: &str) -> bool {
    text.starts_with("data:")
        || (text.len() >= 256
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')))
}

struct Walker<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: String,
    copied: usize,
    embedded: usize,
    error: Option<NotJson>,
}

impl Walker<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.pos).is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn splice(&mut self, start: usize, end: usize, with: &str) {
        self.out.push_str(&self.doc[self.copied..start]);
        self.out.push_str(with);
        self.copied = end;
    }

    /// The document was validated before the walk: every branch here sees valid JSON, nested
    /// no deeper than serde_json's limit (128).
    fn value(&mut self, key: Option<&str>, in_arguments: bool, edit: &mut dyn FnMut(&str) -> Option<String>) {
        self.skip_space();
        let structural = !in_arguments && key.is_some_and(|k| STRUCTURAL.contains(&k));
        let inner_arguments = in_arguments || key.is_some_and(|k| ARGUMENTS.contains(&k));
        match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                loop {
                    self.skip_space();
                    match self.bytes.get(self.pos) {
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(b'"') => {
                            let (start, end) = self.string_token();
                            let Some(name) = self.decode(start, end) else { return };
                            self.skip_space();
                            self.pos += 1; // ':'
                            self.value(Some(&name), inner_arguments, edit);
                        }
                        _ => return,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                loop {
                    self.skip_space();
                    match self.bytes.get(self.pos) {
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => self.value(key, inner_arguments, edit),
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                let (start, end) = self.string_token();
                if structural {
                    return;
                }
                let Some(text) = self.decode(start, end) else { return };
                if !in_arguments && key.is_some_and(|k| MAYBE_BLOB.contains(&k)) && is_blob(&text) {
                    return;
                }
                let replaced = self.text(&text, key, inner_arguments, edit);
                if let Some(new_text) = replaced {
                    let encoded = serde_json::to_string(&new_text).unwrap_or_default();
                    self.splice(start, end, &encoded);
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    self.pos += 1;
                }
                if structural {
                    return;
                }
                let number = &self.doc[start..self.pos];
                if let Some(new_text) = edit(number) {
                    // A number found to be a card or a phone is sent as the string standing in for it.
                    let encoded = serde_json::to_string(&new_text).unwrap_or_default();
                    self.splice(start, self.pos, &encoded);
                }
            }
            Some(_) => {
                // true, false, null
                while self.bytes.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    /// A string token decoded as its reader will; a string no reader agrees on is an error.
    fn decode(&mut self, start: usize, end: usize) -> Option<String> {
        match serde_json::from_str::<String>(&self.doc[start..end]) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error.get_or_insert(NotJson(format!("a string cannot be decoded: {e}")));
                None
            }
        }
    }

    /// A text value rewritten: a document held in a string as a document (its values stay
    /// values), a value under a key that names a secret as that assignment, anything else as text.
    fn text(
        &mut self,
        text: &str,
        key: Option<&str>,
        in_arguments: bool,
        edit: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Option<String> {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('[')) && self.embedded < MAX_EMBEDDED {
            match rewrite_at(text, edit, self.embedded + 1, in_arguments) {
                Ok(inner) => return inner,
                Err(e) if e.0.starts_with("a string cannot be decoded") => {
                    self.error.get_or_insert(e);
                    return None;
                }
                Err(_) => {}
            }
        }
        if let Some(name) = key.filter(|k| SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str())) {
            let assignment = format!("{name}={text}");
            let rewritten = edit(&assignment)?;
            // The finding's value is after the `=`; the name before it is never changed.
            return rewritten.strip_prefix(&format!("{name}=")).map(String::from);
        }
        edit(text)
    }

    /// The string token at `pos` (quotes included); moves past it.
    fn string_token(&mut self) -> (usize, usize) {
        let start = self.pos;
        self.pos += 1;
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        (start, self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper_ann(text: &str) -> Option<String> {
        text.contains("ann").then(|| text.replace("ann", "[X]"))
    }

    #[test]
    fn text_values_change_and_the_rest_is_kept_byte_for_byte() {
        let doc = r#"{"model":"ann", "messages":[{"role":"ann","name":"ann","content":"hi ann"},
            {"role":"tool","tool_call_id":"ann","content":[{"type":"ann","text":"ann\"s"}]}],
            "tools":[{"function":{"name":"f","arguments":"{\"to\": \"ann\", \"type\": \"ann\", \"n\": 4}"}}], "n": 1}"#;
        let out = rewrite(doc, &mut upper_ann).unwrap().unwrap();
        let expected = doc
            .replace(r#""model":"ann""#, r#""model":"[X]""#)
            .replace(r#""name":"ann""#, r#""name":"[X]""#)
            .replace(r#""content":"hi ann""#, r#""content":"hi [X]""#)
            .replace(r#""tool_call_id":"ann""#, r#""tool_call_id":"[X]""#)
            .replace(r#""text":"ann\"s""#, r#""text":"[X]\"s""#)
            .replace(
                r#""arguments":"{\"to\": \"ann\", \"type\": \"ann\", \"n\": 4}""#,
                r#""arguments":"{\"to\": \"[X]\", \"type\": \"[X]\", \"n\": 4}""#,
            );
        assert_eq!(out, expected, "role and type stay, except inside a tool's arguments");
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
        assert_eq!(rewrite(r#"{"a":"b"}"#, &mut upper_ann).unwrap(), None);
        assert!(rewrite(r#"{"a":"b""#, &mut upper_ann).is_err());
    }

    #[test]
    fn what_a_reader_would_decode_differently_is_refused_and_inline_files_are_left_alone() {
        // serde_json validates an unpaired surrogate escape but cannot decode it; JavaScript and
        // Python readers accept it: scanned neither way, so refused.
        assert!(rewrite(r#"{"content":"\ud800 ann"}"#, &mut upper_ann).is_err());
        assert!(rewrite(r#"{"a":"{\"b\": \"\\ud800 ann\"}"}"#, &mut upper_ann).is_err());
        let blob = format!(
            r#"{{"source":{{"type":"base64","data":"{}ann"}}, "url":"data:image/png;base64,ann"}}"#,
            "QUJD".repeat(80)
        );
        assert_eq!(rewrite(&blob, &mut upper_ann).unwrap(), None);
        let text_doc = r#"{"source":{"type":"text","data":"plain ann"}}"#;
        assert!(rewrite(text_doc, &mut upper_ann).unwrap().unwrap().contains("plain [X]"));
    }

    #[test]
    fn a_value_under_a_secret_name_is_read_as_that_assignment() {
        let mut seen = Vec::new();
        let mut record = |t: &str| {
            seen.push(t.to_string());
            t.contains("=Xk9v").then(|| t.replace("Xk9v", "[SECRET]"))
        };
        let out = rewrite(r#"{"args":{"Password":"Xk9v","user":"bob"}}"#, &mut record).unwrap().unwrap();
        assert_eq!(out, r#"{"args":{"Password":"[SECRET]","user":"bob"}}"#);
        assert!(seen.contains(&"Password=Xk9v".to_string()), "{seen:?}");
    }

    #[test]
    fn a_number_found_becomes_the_string_standing_in_for_it() {
        let mut card = |t: &str| (t == "4111111111111111").then(|| "[CARD]".to_string());
        let out = rewrite(r#"{"x":{"card":4111111111111111,"n":2}}"#, &mut card).unwrap().unwrap();
        assert_eq!(out, r#"{"x":{"card":"[CARD]","n":2}}"#);
    }
}
