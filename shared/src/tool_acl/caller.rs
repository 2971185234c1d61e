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

impl Caller {
    pub fn read(host: &dyn Host) -> Result<Caller, HostError> {
        let text = |key: &str| -> Result<Option<String>, HostError> {
            Ok(host.property(&[key])?.map(|v| String::from_utf8_lossy(&v).into_owned()).filter(|s| !s.is_empty()))
        };
        Ok(Caller {
            agent: text(attributes::AGENT)?,
            user: text(attributes::USER)?,
            tenant: text(attributes::TENANT)?,
            session: text(attributes::SESSION)?,
            scopes: text(attributes::SCOPES)?.map(|s| s.split(' ').map(String::from).collect()).unwrap_or_default(),
            acr: text(attributes::ACR)?,
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
