//! Canonical JSON, written straight from the text: no whitespace, object members sorted by
//! key (byte order), strings re-escaped as serde_json writes them, numbers as serde_json reads
//! and writes them. Two texts that mean the same JSON give the same bytes, so their hashes can
//! be compared (tool pins, approved argument sets). A member twice is an error: such a text has
//! no single meaning.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("not JSON: {0}")]
    Malformed(String),
    #[error("an object has the member {0:?} twice")]
    DuplicateMember(String),
}

/// Writes the canonical form of `text` into `out`; `skip` names top-level members to leave out.
pub fn write(text: &str, skip: &[&str], out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let malformed = |e: serde_json::Error| CanonicalError::Malformed(e.to_string());
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {
            let Members(mut members) = serde_json::from_str(text).map_err(malformed)?;
            members.retain(|(k, _)| !skip.contains(&k.as_ref()));
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if let Some(pair) = members.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(CanonicalError::DuplicateMember(pair[0].0.to_string()));
            }
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key.as_ref()).map_err(malformed)?;
                out.push(b':');
                write(value.get(), &[], out)?;
            }
            out.push(b'}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(malformed)?;
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item.get(), &[], out)?;
            }
            out.push(b']');
        }
        Some(b'"') => {
            let s: Cow<str> = serde_json::from_str(text).map_err(malformed)?;
            serde_json::to_writer(&mut *out, s.as_ref()).map_err(malformed)?;
        }
        _ => {
            // Numbers, booleans and null, through serde_json's own reading and writing.
            let scalar: serde_json::Value = serde_json::from_str(text).map_err(malformed)?;
            serde_json::to_writer(&mut *out, &scalar).map_err(malformed)?;
        }
    }
    Ok(())
}

/// An object's members in document order, values left as text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        let mut out = Vec::new();
        write(text, &[], &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn same_meaning_same_bytes() {
        assert_eq!(
            canon(r#" { "b" : [1, 2.5, "x"], "a": {"d": null, "c": true} } "#),
            r#"{"a":{"c":true,"d":null},"b":[1,2.5,"x"]}"#
        );
        assert_eq!(canon(r#"{"s":"\u00e9\/"}"#), canon(r#"{"s":"é/"}"#));
        assert_eq!(canon(r#"{"n":1e2}"#), r#"{"n":100.0}"#);
    }

    #[test]
    fn duplicate_members_and_skipped_members() {
        assert!(matches!(write(r#"{"a":1,"a":2}"#, &[], &mut Vec::new()), Err(CanonicalError::DuplicateMember(_))));
        let mut out = Vec::new();
        write(r#"{"_meta":{"x":1},"name":"t"}"#, &["_meta"], &mut out).unwrap();
        assert_eq!(out, br#"{"name":"t"}"#);
    }

    /// Found by fuzzing (`canonical`): numbers read without exact rounding did not come back
    /// to the same text, so one argument set could hash two ways. serde_json's
    /// `float_roundtrip` reads them exactly.
    #[test]
    fn canonical_form_is_idempotent_for_large_and_inexact_numbers() {
        for text in ["[1.0, 100000000000010000000000]", "[0.1, 1e-7, 123456789012345678901234567890e-20, 5e-324]"] {
            let once = canon(text);
            assert_eq!(canon(&once), once, "{text}");
        }
    }

    #[test]
    fn agrees_with_a_value_round_trip() {
        let text = r#"{"z":[{"y":1,"x":[true,false,null]}],"a":"multi\nline","m":-0.5,"u":18446744073709551615}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let sorted = serde_json::to_string(&value).unwrap(); // BTreeMap: sorted keys
        assert_eq!(canon(text), sorted);
    }
}
