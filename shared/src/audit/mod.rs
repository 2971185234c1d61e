//! One structured record per filter, for the filters after it and the access log.
//!
//! Each filter keeps its record while it works on a request and writes it whole, as one
//! `google.protobuf.Struct`, whenever it learns something (its decision; later, what the
//! answer cost): one host call each time instead of one per fact. Envoy's access log prints a
//! record as nested JSON with `%FILTER_STATE(wasm.<key>:TYPED)%`. The schema is versioned
//! (`v`) and documented once, in `docs/audit.md`.

pub mod wire;

use crate::decision::Decision;
use crate::host::{Host, HostError};
use serde_json::{Map, Value};

/// The version every record carries as `v`. A field's meaning never changes within a version;
/// fields may be added.
pub const SCHEMA_VERSION: u64 = 1;

/// A record being built: a JSON object that starts with `v`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    fields: Map<String, Value>,
}

impl Default for Record {
    fn default() -> Self {
        Record::new()
    }
}

impl Record {
    pub fn new() -> Record {
        let mut fields = Map::new();
        fields.insert("v".to_string(), SCHEMA_VERSION.into());
        Record { fields }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// Sets `key` inside the object `group`, e.g. `tokens.input`.
    pub fn set_in(&mut self, group: &str, key: &str, value: impl Into<Value>) -> &mut Self {
        let entry = self.fields.entry(group.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(object) = entry {
            object.insert(key.to_string(), value.into());
        }
        self
    }

    /// The decision's `verdict` (`allow`, `deny` or `shadow_deny`), `rule` and `reason`.
    pub fn decision(&mut self, decision: &Decision) -> &mut Self {
        self.set("verdict", decision.verdict_str()).set("rule", decision.rule.as_str()).set("reason", decision.reason)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    pub fn into_fields(self) -> Map<String, Value> {
        self.fields
    }

    /// Writes the record, whole, under `key` (one host call).
    pub fn write(&self, host: &dyn Host, key: &str) -> Result<(), HostError> {
        host.set_property(&[key], &wire::encode(&self.fields))
    }
}

/// Tells Envoy that `key` holds a `Struct`, so that the access log can print it as JSON. Called
/// once per plugin at configure time (the declaration lives with the plugin's root context);
/// `readonly` makes every write after the first fail, so no later filter can replace it.
pub fn declare(host: &dyn Host, key: &str, readonly: bool) -> Result<(), HostError> {
    host.declare_property(&wire::declare_struct(key, readonly))
}

/// A record as written under `key`, when there is one (for tests and tools).
pub fn read(host: &dyn Host, key: &str) -> Result<Option<Map<String, Value>>, HostError> {
    Ok(host.property(&[key])?.and_then(|bytes| wire::decode(&bytes)))
}
