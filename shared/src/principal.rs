//! The principal: who is calling. The identity filter verifies it and writes it once, as one
//! structured, read-only attribute ([`attributes::PRINCIPAL`]); every later filter reads it back
//! with one host call, and the access log prints it whole.

use crate::attributes;
use crate::audit;
use crate::host::{Host, HostError};
use serde_json::{Map, Value};

/// How the agent proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Mtls,
    Jwt,
    ApiKey,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Mtls => "mtls",
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
        }
    }
}

/// The principal as the identity filter verified it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub agent: String,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub session: Option<String>,
    pub methods: Vec<AuthMethod>,
    pub scopes: Vec<String>,
    /// RFC 8693 actor chain, current actor first.
    pub actors: Vec<String>,
    /// The agent token's `acr`, when it has one.
    pub acr: Option<String>,
}

impl Principal {
    /// How the agent proved who it is, e.g. `mtls+jwt`.
    pub fn auth_method(&self) -> String {
        self.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("+")
    }

    /// The principal as a record (`docs/audit.md`); absent parts are left out.
    pub fn record(&self) -> Map<String, Value> {
        let mut record = audit::Record::new();
        record.set("agent", self.agent.as_str());
        record.set("auth_methods", self.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>());
        let optional = [("user", &self.user), ("tenant", &self.tenant), ("session", &self.session), ("acr", &self.acr)];
        for (key, value) in optional {
            if let Some(value) = value {
                record.set(key, value.as_str());
            }
        }
        if !self.scopes.is_empty() {
            record.set("scopes", self.scopes.clone());
        }
        if !self.actors.is_empty() {
            record.set("actor_chain", self.actors.clone());
        }
        record.into_fields()
    }

    /// Writes the principal for the filters after identity (JSON; read-only once written), and
    /// returns the record written, for the audit record's `principal` section.
    pub fn write(&self, host: &dyn Host) -> Result<Map<String, Value>, HostError> {
        let record = self.record();
        host.set_property(&[attributes::PRINCIPAL], &audit::encode(&record, audit::AuditFormat::Json))?;
        Ok(record)
    }
}

/// Who is calling, as a later filter reads it back. Every part comes from filter state, which
/// no client can set; all are empty when no identity filter ran before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub session: Option<String>,
    pub scopes: Vec<String>,
    pub acr: Option<String>,
}

impl Caller {
    /// Reads the principal (one host call). A value that is not a principal record is an error,
    /// not an anonymous caller: something other than the identity filter wrote it.
    pub fn read(host: &dyn Host) -> Result<Caller, HostError> {
        let Some(bytes) = host.property(&[attributes::PRINCIPAL])? else {
            return Ok(Caller::default());
        };
        let record = audit::decode(&bytes).ok_or(HostError::Failed {
            call: "get_property(warden.principal)",
            status: "not a principal record".to_string(),
        })?;
        let text = |key: &str| record.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
        let scopes = record.get("scopes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        Ok(Caller {
            agent: text("agent"),
            user: text("user"),
            tenant: text("tenant"),
            session: text("session"),
            scopes: scopes.iter().filter_map(Value::as_str).map(String::from).collect(),
            acr: text("acr"),
        })
    }

    pub fn has_scopes(&self, wanted: &[String]) -> bool {
        wanted.iter().all(|w| self.scopes.contains(w))
    }

    /// The key session limits are counted under: the session, or the agent when there is none.
    pub fn limit_key(&self) -> Option<String> {
        match (&self.session, &self.agent) {
            (Some(session), Some(agent)) => Some(format!("s:{agent}:{session}")),
            (None, Some(agent)) => Some(format!("a:{agent}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryHost;

    #[test]
    fn a_written_principal_reads_back_whole() {
        let host = MemoryHost::default();
        let principal = crate::testing::principal::example();
        principal.write(&host).unwrap();
        let caller = Caller::read(&host).unwrap();
        assert_eq!(caller.agent.as_deref(), Some(principal.agent.as_str()));
        assert_eq!(caller.user.as_deref(), Some("alice"));
        assert_eq!(caller.tenant.as_deref(), Some("acme"));
        assert_eq!(caller.session.as_deref(), Some("sess-1"));
        assert_eq!(caller.scopes, ["tools:call"]);
        assert_eq!(principal.record()["auth_methods"], serde_json::json!(["jwt"]));
    }

    #[test]
    fn no_principal_is_an_anonymous_caller_and_a_foreign_value_an_error() {
        let host = MemoryHost::default();
        assert_eq!(Caller::read(&host).unwrap(), Caller::default());
        host.set_property(&[attributes::PRINCIPAL], b"\xffnot a record").unwrap();
        assert!(Caller::read(&host).is_err());
    }
}
