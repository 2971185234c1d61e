//! The `when` matcher of tool-acl rules and budgets: globs on the principal's agent, user and
//! tenant. An empty list matches anyone; a condition on a part of the principal that is absent
//! never holds (a rule for tenant `acme` is not about a caller without a tenant).

use crate::glob::GlobSet;
use crate::principal::Caller;

#[derive(Debug, Clone)]
pub struct PrincipalMatch {
    agents: GlobSet,
    users: GlobSet,
    tenants: GlobSet,
}

impl PrincipalMatch {
    pub fn new(agents: &[String], users: &[String], tenants: &[String]) -> PrincipalMatch {
        PrincipalMatch { agents: GlobSet::new(agents), users: GlobSet::new(users), tenants: GlobSet::new(tenants) }
    }

    pub fn matches(&self, caller: &Caller) -> bool {
        let holds = |globs: &GlobSet, value: &Option<String>| {
            globs.is_any() || value.as_deref().is_some_and(|v| globs.matches(v))
        };
        holds(&self.agents, &caller.agent) && holds(&self.users, &caller.user) && holds(&self.tenants, &caller.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_part_never_matches_a_condition_on_it() {
        let who = PrincipalMatch::new(&["planner*".into()], &[], &["acme".into()]);
        let caller = Caller { agent: Some("planner-2".into()), tenant: Some("acme".into()), ..Caller::default() };
        assert!(who.matches(&caller));
        assert!(!who.matches(&Caller { tenant: None, ..caller.clone() }));
        assert!(!who.matches(&Caller { agent: Some("admin".into()), ..caller }));
        assert!(PrincipalMatch::new(&[], &[], &[]).matches(&Caller::default()), "no condition: anyone");
    }
}
