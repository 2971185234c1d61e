//! The verified principal: the agent, the user it acts for, tenant and session.

use crate::attributes;

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
    pub fn auth_method(&self) -> String {
        self.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join("+")
    }

    /// The principal as (attribute key, value) pairs for filter state; absent parts are skipped.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(attributes::AGENT, self.agent.clone()), (attributes::AUTH_METHOD, self.auth_method())];
        if let Some(user) = &self.user {
            out.push((attributes::USER, user.clone()));
        }
        if let Some(tenant) = &self.tenant {
            out.push((attributes::TENANT, tenant.clone()));
        }
        if let Some(session) = &self.session {
            out.push((attributes::SESSION, session.clone()));
        }
        if !self.scopes.is_empty() {
            out.push((attributes::SCOPES, self.scopes.join(" ")));
        }
        if !self.actors.is_empty() {
            out.push((attributes::ACTOR_CHAIN, self.actors.join(",")));
        }
        if let Some(acr) = &self.acr {
            out.push((attributes::ACR, acr.clone()));
        }
        out
    }
}
