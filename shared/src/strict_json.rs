//! A JSON object read strictly: duplicate keys are an error, values stay borrowed.
//!
//! `serde_json` keeps the last of two equal keys. For a token header or payload that is an
//! attack surface (one parser sees `"alg":"RS256"`, another `"alg":"none"`), so Warden
//! refuses such objects outright. Values are kept as borrowed [`RawValue`]s and decoded only
//! when asked for, so no `Value` tree is built on the request path.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The key serde_json reserves for `RawValue`: a `serde_json::Value` read from a text with an
/// object member of this name is not the document (it is the parse of that member's string),
/// so a peer could show Warden one document and its client another. Found by fuzzing.
const RESERVED_KEY: &str = "$serde_json::private::RawValue";

/// A `serde_json::Value` of `text`, or `None` when it is not JSON or holds serde_json's
/// reserved key anywhere (written plainly or with escapes): such a text is never read as a tree.
pub fn value(text: &str) -> Option<serde_json::Value> {
    // The key can only be written with `serde_json` in it, or with escapes.
    if (text.contains("serde_json") || text.contains("\\u")) && holds_reserved_key(text) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Whether any object in `text` (at any depth) has the reserved key. Malformed text counts.
fn holds_reserved_key(text: &str) -> bool {
    fn walk(raw: &RawValue, depth: usize) -> bool {
        if depth > 128 {
            return true;
        }
        match raw.get().trim_start().as_bytes().first() {
            Some(b'{') => match StrictObject::parse(raw.get().as_bytes()) {
                Ok(object) => object.members().iter().any(|(k, v)| k == RESERVED_KEY || walk(v, depth + 1)),
                Err(_) => true,
            },
            Some(b'[') => match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                Ok(items) => items.iter().any(|v| walk(v, depth + 1)),
                Err(_) => true,
            },
            _ => false,
        }
    }
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => walk(raw, 0),
        Err(_) => true,
    }
}

/// Objects with more members than this are refused: tokens never need them, and a cap keeps
/// the duplicate check linear in practice.
pub const MAX_MEMBERS: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrictJsonError {
    #[error("not a JSON object: {0}")]
    Malformed(String),
    #[error("member {member:?} has the wrong type: {detail}")]
    WrongType { member: String, detail: String },
}

/// The members of one JSON object, in document order, with no key twice.
#[derive(Debug)]
pub struct StrictObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> StrictObject<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StrictJsonError> {
        serde_json::from_slice(bytes).map_err(|e| StrictJsonError::Malformed(e.to_string()))
    }

    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Every member, in document order.
    pub fn members(&self) -> &[(Cow<'a, str>, &'a RawValue)] {
        &self.members
    }

    pub fn contains(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// The object written again, members in document order, each value as `value` gives it
    /// (`None` leaves the member out). Names are written as JSON strings; no whitespace.
    pub fn rewritten<'v>(&self, mut value: impl FnMut(&str, &'a RawValue) -> Option<Cow<'v, str>>) -> String {
        let mut out = String::from("{");
        for (name, raw) in &self.members {
            let Some(written) = value(name, raw) else { continue };
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String(name.to_string()).to_string());
            out.push(':');
            out.push_str(&written);
        }
        out.push('}');
        out
    }

    /// Decodes one member; `Ok(None)` when it is absent.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StrictJsonError> {
        match self.raw(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| StrictJsonError::WrongType { member: key.to_string(), detail: e.to_string() }),
        }
    }
}

struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for StrictObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    if members.len() == MAX_MEMBERS {
                        return Err(de::Error::custom(format!("more than {MAX_MEMBERS} members")));
                    }
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(StrictObject { members })
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_members_lazily() {
        let obj = StrictObject::parse(br#"{"a":"x","n":3,"o":{"k":[1,2]}}"#).unwrap();
        assert_eq!(obj.get::<String>("a").unwrap().as_deref(), Some("x"));
        assert_eq!(obj.get::<u64>("n").unwrap(), Some(3));
        assert_eq!(obj.raw("o").unwrap().get(), r#"{"k":[1,2]}"#);
        assert_eq!(obj.get::<u64>("missing").unwrap(), None);
    }

    #[test]
    fn refuses_duplicate_keys_even_when_escaped() {
        let err = StrictObject::parse(br#"{"alg":"RS256","alg":"none"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"alg\""), "{err}");
        // "\u0061lg" is "alg" spelled with an escape: still the same key.
        let err = StrictObject::parse(br#"{"alg":"RS256","\u0061lg":"none"}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn serde_jsons_reserved_key_is_never_read_as_a_tree() {
        // serde_json reads this one-member object as the document in its string.
        let smuggled = r#"{"$serde_json::private::RawValue":"{\"choices\":[]}"}"#;
        assert!(
            serde_json::from_str::<serde_json::Value>(smuggled).is_ok_and(|v| v["choices"] == serde_json::json!([])),
            "the differential"
        );
        assert_eq!(value(smuggled), None);
        let escaped = r#"{"a":[{"\u0024serde_json::private::RawValue":"1"}]}"#;
        assert_eq!(value(escaped), None);
        assert_eq!(value(r#"{"a":"caf\u00e9"}"#), Some(serde_json::json!({"a": "café"})));
    }

    #[test]
    fn refuses_non_objects_and_wrong_types() {
        assert!(StrictObject::parse(b"[1]").is_err());
        assert!(StrictObject::parse(b"{\"a\":").is_err());
        let obj = StrictObject::parse(br#"{"n":"3"}"#).unwrap();
        assert!(matches!(obj.get::<u64>("n"), Err(StrictJsonError::WrongType { .. })));
    }
}
