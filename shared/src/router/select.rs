//! Which targets may serve a request, in the order they are tried.

use super::compile::{CompiledRouter, Target};
use crate::principal::Caller;

/// Why no target may serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The alias names no model of the policy.
    UnknownModel,
    /// Rules left no permitted target; `rule` is the first rule that removed one.
    NotPermitted { rule: String },
}

/// The targets of `alias` that the rules about this request permit, in the order to try them:
/// by priority, and within a priority in a weighted random order drawn from `seed` (so a
/// request's attempts never try one target twice, and traffic splits by weight).
pub fn select<'r>(
    router: &'r CompiledRouter,
    alias: &str,
    caller: &Caller,
    data_classes: &[String],
    seed: u64,
) -> Result<Vec<&'r Target>, Refusal> {
    let model = router.model(alias).ok_or(Refusal::UnknownModel)?;
    let applying: Vec<_> = router
        .rules
        .iter()
        .filter(|r| r.who.matches(caller) && caller.has_scopes(&r.scopes))
        .filter(|r| r.data_classes.is_empty() || r.data_classes.iter().any(|c| data_classes.contains(c)))
        .collect();
    let mut first_refusing: Option<&str> = None;
    let permitted: Vec<&Target> = model
        .targets
        .iter()
        .filter(|t| {
            let provider = &router.providers[t.provider];
            let refusing = applying.iter().find(|r| {
                (r.private_only && !provider.private) || (!r.providers.is_empty() && !r.providers.contains(&t.provider))
            });
            if let Some(rule) = refusing {
                first_refusing.get_or_insert(rule.id.as_str());
            }
            refusing.is_none()
        })
        .collect();
    if permitted.is_empty() {
        return Err(Refusal::NotPermitted { rule: first_refusing.unwrap_or("default").to_string() });
    }
    Ok(weighted_order(permitted, seed))
}

/// Orders targets by priority and, within one, by a weighted draw without replacement.
fn weighted_order(mut targets: Vec<&Target>, seed: u64) -> Vec<&Target> {
    let mut rng = SplitMix64(seed);
    let mut ordered = Vec::with_capacity(targets.len());
    while !targets.is_empty() {
        let priority = targets.iter().map(|t| t.priority).min().unwrap_or(0);
        let tier: Vec<usize> = (0..targets.len()).filter(|&i| targets[i].priority == priority).collect();
        let total: u64 = tier.iter().map(|&i| u64::from(targets[i].weight)).sum();
        let mut draw = rng.next() % total.max(1);
        let mut chosen = tier[0];
        for &i in &tier {
            let weight = u64::from(targets[i].weight);
            if draw < weight {
                chosen = i;
                break;
            }
            draw -= weight;
        }
        ordered.push(targets.remove(chosen));
    }
    ordered
}

/// A small, seeded generator: the order must be reproducible in tests, not secret.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
