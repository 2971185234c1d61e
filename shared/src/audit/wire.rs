//! The protobuf messages an audit record travels in: `google.protobuf.Struct`, which Envoy's
//! access log prints as nested JSON, and the `declare_property` foreign call's arguments that
//! tell Envoy a filter-state value holds one.

use serde_json::{Map, Number, Value as Json};
use std::collections::BTreeMap;

/// The type URL Envoy's access log resolves to print a record as JSON.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// `google.protobuf.Struct`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, Value>,
}

/// `google.protobuf.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Value {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(int32, tag = "1")]
    Null(i32),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(string, tag = "3")]
    String(String),
    #[prost(bool, tag = "4")]
    Bool(bool),
    #[prost(message, tag = "5")]
    Struct(Struct),
    #[prost(message, tag = "6")]
    List(ListValue),
}

/// `google.protobuf.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
}

/// Envoy's `envoy.source.extensions.common.wasm.DeclarePropertyArguments`
/// (`source/extensions/common/wasm/ext/declare_property.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeclarePropertyArguments {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bool, tag = "2")]
    pub readonly: bool,
    /// `WasmType`: 3 is `Protobuf`, whose schema is the type URL.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub schema: Vec<u8>,
    /// `LifeSpan`: 0 is `FilterChain`, the request's.
    #[prost(int32, tag = "5")]
    pub span: i32,
}

const WASM_TYPE_STRING: i32 = 1;
const WASM_TYPE_PROTOBUF: i32 = 3;

/// The arguments declaring `name` as a `Struct` for the rest of this plugin's life.
pub fn declare_struct(name: &str, readonly: bool) -> Vec<u8> {
    prost::Message::encode_to_vec(&DeclarePropertyArguments {
        name: name.to_string(),
        readonly,
        r#type: WASM_TYPE_PROTOBUF,
        schema: STRUCT_TYPE_URL.as_bytes().to_vec(),
        span: 0,
    })
}

/// The arguments declaring `name` as text (here: JSON).
pub fn declare_text(name: &str, readonly: bool) -> Vec<u8> {
    prost::Message::encode_to_vec(&DeclarePropertyArguments {
        name: name.to_string(),
        readonly,
        r#type: WASM_TYPE_STRING,
        schema: Vec::new(),
        span: 0,
    })
}

/// A JSON object as a serialized `Struct`. Numbers become doubles, as `Struct` has no other
/// kind: every count Warden records is far below 2^53, so none is rounded.
pub fn encode(object: &Map<String, Json>) -> Vec<u8> {
    prost::Message::encode_to_vec(&to_struct(object))
}

/// A serialized `Struct` as a JSON object; `None` when the bytes are not one.
pub fn decode(bytes: &[u8]) -> Option<Map<String, Json>> {
    let message: Struct = prost::Message::decode(bytes).ok()?;
    Some(from_struct(message))
}

fn to_struct(object: &Map<String, Json>) -> Struct {
    Struct { fields: object.iter().map(|(k, v)| (k.clone(), to_value(v))).collect() }
}

fn to_value(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::Null(0),
        Json::Bool(b) => Kind::Bool(*b),
        Json::Number(n) => Kind::Number(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::String(s.clone()),
        Json::Array(items) => Kind::List(ListValue { values: items.iter().map(to_value).collect() }),
        Json::Object(object) => Kind::Struct(to_struct(object)),
    };
    Value { kind: Some(kind) }
}

fn from_struct(message: Struct) -> Map<String, Json> {
    message.fields.into_iter().map(|(k, v)| (k, from_value(v))).collect()
}

fn from_value(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::Null(_)) => Json::Null,
        Some(Kind::Bool(b)) => Json::Bool(b),
        // Whole numbers come back as integers, as they were written.
        Some(Kind::Number(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => Json::from(n as i64),
        Some(Kind::Number(n)) => Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null),
        Some(Kind::String(s)) => Json::String(s),
        Some(Kind::List(list)) => Json::Array(list.values.into_iter().map(from_value).collect()),
        Some(Kind::Struct(object)) => Json::Object(from_struct(object)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_survives_the_round_trip() {
        let record = json!({"v": 1, "agent": "a", "scopes": ["x", "y"], "tokens": {"input": 600, "cost": 0.000415},
                            "pin_changed": true, "none": null});
        let object = record.as_object().unwrap();
        assert_eq!(decode(&encode(object)).as_ref(), Some(object));
    }

    #[test]
    fn bytes_that_are_not_a_struct_are_refused() {
        assert_eq!(decode(b"agent-planner"), None);
    }

    #[test]
    fn the_declaration_is_envoys_message() {
        // name = "k" (field 1), readonly (2), type Protobuf (3), schema (4); span 0 is omitted.
        let bytes = declare_struct("k", true);
        assert_eq!(&bytes[..7], &[0x0a, 1, b'k', 0x10, 1, 0x18, 3]);
        assert_eq!(&bytes[7..9], &[0x22, STRUCT_TYPE_URL.len() as u8]);
        assert_eq!(&bytes[9..], STRUCT_TYPE_URL.as_bytes());
    }
}
