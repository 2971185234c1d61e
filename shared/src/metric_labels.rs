//! Label values carried in metric names, and a bound on how many a VM defines.
//!
//! Envoy's Wasm metrics have no labels; their names do. Warden puts a label's value after a
//! fixed name part (`….tenant.<tenant>.model.<model>`) and the shipped configs' `stats_tags`
//! (see `docs/metrics.md`) turn those parts back into Prometheus labels. A value is kept to
//! characters those regular expressions can delimit, and every distinct name is a metric Envoy
//! keeps for the life of the VM, so a VM defines at most `max` label sets per family: the rest
//! are counted under `other`.

use std::cell::RefCell;
use std::collections::HashSet;

/// A value as it may stand in a metric name: letters, digits, `-` and `_` (and `.` where the
/// value ends the name), anything else `_`; an empty value is `none`.
pub fn value(raw: &str, dots: bool) -> String {
    if raw.is_empty() {
        return "none".into();
    }
    raw.chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.') { c } else { '_' })
        .collect()
}

/// The label sets a VM has given a metric family, up to `max`.
#[derive(Debug, Default)]
pub struct LabelSets {
    seen: RefCell<HashSet<String>>,
    max: usize,
}

/// The label value a set past the bound is counted under.
pub const OTHER: &str = "other";

impl LabelSets {
    pub fn new(max: usize) -> LabelSets {
        LabelSets { seen: RefCell::new(HashSet::new()), max }
    }

    /// Whether `key` may have metrics of its own: already seen, or room is left.
    pub fn admit(&self, key: &str) -> bool {
        let mut seen = self.seen.borrow_mut();
        if seen.contains(key) {
            return true;
        }
        if seen.len() >= self.max {
            return false;
        }
        seen.insert(key.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_to_what_the_tag_expressions_delimit() {
        assert_eq!(value("acme", false), "acme");
        assert_eq!(value("acme.eu/1", false), "acme_eu_1");
        assert_eq!(value("gpt-4.1", true), "gpt-4.1");
        assert_eq!(value("", true), "none");
        assert_eq!(value(&"x".repeat(100), false).len(), 64);
    }

    #[test]
    fn past_the_bound_new_sets_are_refused_and_known_ones_kept() {
        let sets = LabelSets::new(2);
        assert!(sets.admit("a") && sets.admit("b") && sets.admit("a"));
        assert!(!sets.admit("c"));
        assert!(sets.admit("b"));
    }
}
