//! The request's audit record: one value under [`attributes::AUDIT`], with a section per filter
//! (and the principal), for the access log.
//!
//! Each filter keeps its section while it works on a request and writes it whenever it learns
//! something (its decision; later, what the answer cost): it reads the record, puts its section
//! in and writes it back, two host calls. The policy's `auditFormat` says how it is stored: JSON
//! text (the default), which the access log prints as a JSON string at next to no cost, or a
//! `google.protobuf.Struct`, which `%FILTER_STATE(wasm.warden.audit:TYPED)%` prints as nested
//! JSON at 50-65 µs of Envoy's CPU per request (measured on the chain). The schema is versioned (`v`) and documented
//! once, in `docs/audit.md`.

pub mod wire;

use crate::attributes;
use crate::decision::Decision;
use crate::host::{Host, HostError};
pub use crate::policy::AuditFormat;
use serde_json::{Map, Value};

/// The version the record carries as `v`. A field's meaning never changes within a version;
/// fields may be added.
pub const SCHEMA_VERSION: u64 = 1;

/// The record's sections, one per writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Principal,
    Identity,
    ToolAcl,
    TokenBudget,
    Router,
    Redaction,
}

impl Section {
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Principal => "principal",
            Section::Identity => "identity",
            Section::ToolAcl => "tool_acl",
            Section::TokenBudget => "token_budget",
            Section::Router => "router",
            Section::Redaction => "redaction",
        }
    }
}

/// One filter's section being built: a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    fields: Map<String, Value>,
}

impl Record {
    pub fn new() -> Record {
        Record::default()
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

    /// Puts this section, whole, into the request's record.
    pub fn write(&self, host: &dyn Host, format: AuditFormat, section: Section) -> Result<(), HostError> {
        write(host, format, &[(section, &self.fields)])
    }
}

/// Puts `sections` into the request's record (read, merged, written back: two host calls).
/// The record keeps the format its first writer gave it (the type Envoy stores it as was fixed
/// then), whatever `format` this filter's policy names. A record that cannot be read is started
/// again rather than lost with the new sections.
pub fn write(
    host: &dyn Host,
    format: AuditFormat,
    sections: &[(Section, &Map<String, Value>)],
) -> Result<(), HostError> {
    let stored = host.property(&[attributes::AUDIT])?;
    let format = match stored.as_deref().and_then(<[u8]>::first) {
        Some(b'{') => AuditFormat::Json,
        Some(_) => AuditFormat::Struct,
        None => format,
    };
    let mut record = stored.and_then(|bytes| decode(&bytes)).unwrap_or_default();
    record.insert("v".to_string(), SCHEMA_VERSION.into());
    for (section, fields) in sections {
        record.insert(section.as_str().to_string(), Value::Object((*fields).clone()));
    }
    host.set_property(&[attributes::AUDIT], &encode(&record, format))
}

/// The request's record so far, when there is one.
pub fn read(host: &dyn Host) -> Result<Option<Map<String, Value>>, HostError> {
    Ok(host.property(&[attributes::AUDIT])?.and_then(|bytes| decode(&bytes)))
}

/// A record (or the principal) in `format`.
pub fn encode(object: &Map<String, Value>, format: AuditFormat) -> Vec<u8> {
    match format {
        AuditFormat::Json => serde_json::to_vec(object).unwrap_or_default(),
        AuditFormat::Struct => wire::encode(object),
    }
}

/// A record in either format: JSON text is an object, so it starts with `{`; a serialized
/// `Struct` starts with its field 1 (`0x0a`).
pub fn decode(bytes: &[u8]) -> Option<Map<String, Value>> {
    match bytes.first() {
        Some(b'{') => serde_json::from_slice(bytes).ok(),
        _ => wire::decode(bytes),
    }
}

/// Tells Envoy what `key` holds, so that the access log can print it: text for JSON, a
/// `Struct` for `TYPED`. Called once per plugin at configure time: the declaration lives with
/// the plugin's root context, and whichever filter writes a key first on a request fixes its
/// type, so every writer declares it. `readonly` makes every write after the first fail, so no
/// later filter can replace it.
pub fn declare(host: &dyn Host, key: &str, readonly: bool, format: AuditFormat) -> Result<(), HostError> {
    let arguments = match format {
        AuditFormat::Json => wire::declare_text(key, readonly),
        AuditFormat::Struct => wire::declare_struct(key, readonly),
    };
    host.declare_property(&arguments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn sections_from_several_writers_make_one_record_in_either_format() {
        for format in [AuditFormat::Json, AuditFormat::Struct] {
            let host = MemoryHost::default();
            let identity = Record::new().decision(&Decision::allow("api", "authenticated")).clone();
            identity.write(&host, format, Section::Identity).unwrap();
            let mut budget = Record::new();
            budget.set("model_served", "gpt-4o").set_in("tokens", "input", 13);
            budget.write(&host, format, Section::TokenBudget).unwrap();
            budget.set_in("tokens", "output", 40).write(&host, format, Section::TokenBudget).unwrap();
            let stored = host.properties.borrow()[attributes::AUDIT].clone();
            assert_eq!(stored.first() == Some(&b'{'), format == AuditFormat::Json);
            let record = Value::Object(read(&host).unwrap().unwrap());
            assert_eq!(record["v"], 1);
            assert_eq!(record["identity"]["verdict"], "allow");
            assert_eq!(record["token_budget"]["tokens"], serde_json::json!({"input": 13, "output": 40}));
        }
    }

    #[test]
    fn a_later_writer_keeps_the_format_the_first_one_chose() {
        let host = MemoryHost::default();
        Record::new().set("verdict", "allow").write(&host, AuditFormat::Json, Section::Identity).unwrap();
        Record::new().set("verdict", "deny").write(&host, AuditFormat::Struct, Section::ToolAcl).unwrap();
        assert_eq!(host.properties.borrow()[attributes::AUDIT].first(), Some(&b'{'));
        let record = read(&host).unwrap().unwrap();
        let verdicts = (record["identity"]["verdict"].as_str(), record["tool_acl"]["verdict"].as_str());
        assert_eq!(verdicts, (Some("allow"), Some("deny")));
    }
}
