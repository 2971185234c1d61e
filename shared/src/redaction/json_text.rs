//! The text of a JSON document rewritten in place: every string value (and number: a card
//! number sent as a JSON number is still a card number) goes to the redactor, except under
//! the protocol's structural keys (`model`, `role`, ids, tool names); everything else in the
//! document is kept byte for byte. A string that holds a JSON document itself (a tool call's
//! `arguments`) is rewritten as a document, so its values stay values.

use serde::de::IgnoredAny;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body is not valid JSON: {0}")]
pub struct NotJson(pub String);

/// Keys whose values are the protocol's own words, never user text: changing them would break
/// the request (a model name, a tool's name, a call id, a base64 image).
pub const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "object",
    "name",
    "tool_call_id",
    "tool_use_id",
    "call_id",
    "item_id",
    "previous_response_id",
    "finish_reason",
    "stop_reason",
    "media_type",
    "mime_type",
    "mimeType",
    "detail",
    "format",
    "service_tier",
    "reasoning_effort",
    "url",
    "data",
    "signature",
    "encrypted_content",
    "jsonrpc",
    "method",
    "uri",
    "status",
];

/// Keys whose string value is itself a JSON document.
const JSON_IN_STRING: &[&str] = &["arguments"];

/// Rewrites `doc`; `edit` gets each text and returns its replacement (`None`: unchanged).
/// `Ok(None)` when nothing changed.
pub fn rewrite(doc: &str, edit: &mut dyn FnMut(&str) -> Option<String>) -> Result<Option<String>, NotJson> {
    serde_json::from_str::<IgnoredAny>(doc).map_err(|e| NotJson(e.to_string()))?;
    let mut walker = Walker { doc, bytes: doc.as_bytes(), pos: 0, out: String::new(), copied: 0 };
    walker.value(None, edit);
    if walker.copied == 0 {
        return Ok(None);
    }
    walker.out.push_str(&doc[walker.copied..]);
    Ok(Some(walker.out))
}

struct Walker<'a> {
    doc: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: String,
    copied: usize,
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
    fn value(&mut self, key: Option<&str>, edit: &mut dyn FnMut(&str) -> Option<String>) {
        self.skip_space();
        let structural = key.is_some_and(|k| STRUCTURAL.contains(&k));
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
                            let name: String = serde_json::from_str(&self.doc[start..end]).unwrap_or_default();
                            self.skip_space();
                            self.pos += 1; // ':'
                            self.value(Some(&name), edit);
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
                        Some(_) => self.value(key, edit),
                        None => return,
                    }
                }
            }
            Some(b'"') => {
                let (start, end) = self.string_token();
                if structural {
                    return;
                }
                let text: String = serde_json::from_str(&self.doc[start..end]).unwrap_or_default();
                let replaced = if key.is_some_and(|k| JSON_IN_STRING.contains(&k)) {
                    match rewrite(&text, edit) {
                        Ok(inner) => inner,
                        Err(_) => edit(&text),
                    }
                } else {
                    edit(&text)
                };
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
    fn only_text_values_change_and_the_rest_is_kept_byte_for_byte() {
        let doc = r#"{"model":"ann", "messages":[{"role":"user","name":"ann","content":"hi ann"},
            {"role":"tool","tool_call_id":"ann","content":[{"type":"text","text":"ann\"s"}]}],
            "tools":[{"function":{"name":"ann","arguments":"{\"to\": \"ann\", \"n\": 4}"}}], "n": 1}"#;
        let out = rewrite(doc, &mut upper_ann).unwrap().unwrap();
        let expected = doc
            .replace(r#""content":"hi ann""#, r#""content":"hi [X]""#)
            .replace(r#""text":"ann\"s""#, r#""text":"[X]\"s""#)
            .replace(r#""arguments":"{\"to\": \"ann\", \"n\": 4}""#, r#""arguments":"{\"to\": \"[X]\", \"n\": 4}""#);
        assert_eq!(out, expected);
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
        assert_eq!(rewrite(r#"{"a":"b"}"#, &mut upper_ann).unwrap(), None);
        assert!(rewrite(r#"{"a":"b""#, &mut upper_ann).is_err());
    }

    #[test]
    fn a_number_found_becomes_the_string_standing_in_for_it() {
        let mut card = |t: &str| (t == "4111111111111111").then(|| "[CARD]".to_string());
        let out = rewrite(r#"{"x":{"card":4111111111111111,"n":2}}"#, &mut card).unwrap().unwrap();
        assert_eq!(out, r#"{"x":{"card":"[CARD]","n":2}}"#);
    }
}
