//! The principal as the identity filter recorded it, read back from filter state.

use crate::attributes;
use crate::host::{Host, HostError};

/// Who is calling. Every part comes from filter state, which no client can set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub session: Option<String>,
    pub scopes: Vec<String>,
    pub acr: Option<String>,
}

/// Which parts of the principal a policy ever looks at; the others are not read (each read is
/// a host call on every request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub agent: bool,
    pub user: bool,
    pub tenant: bool,
    pub session: bool,
    pub scopes: bool,
    pub acr: bool,
}

impl Caller {
    pub fn read(host: &dyn Host, needs: Needs) -> Result<Caller, HostError> {
        let text = |needed: bool, key: &str| -> Result<Option<String>, HostError> {
            if !needed {
                return Ok(None);
            }
            Ok(host.property(&[key])?.map(|v| String::from_utf8_lossy(&v).into_owned()).filter(|s| !s.is_empty()))
        };
        Ok(Caller {
            agent: text(needs.agent, attributes::AGENT)?,
            user: text(needs.user, attributes::USER)?,
            tenant: text(needs.tenant, attributes::TENANT)?,
            session: text(needs.session, attributes::SESSION)?,
            scopes: text(needs.scopes, attributes::SCOPES)?
                .map(|s| s.split(' ').map(String::from).collect())
                .unwrap_or_default(),
            acr: text(needs.acr, attributes::ACR)?,
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
