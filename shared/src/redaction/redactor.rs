//! One request's redaction: the actions that apply to its caller, the placeholders it handed
//! out (restored in its answer, dropped with it), and what was found, per class and action.
//! Values never leave this struct: the record holds classes and counts only.

use super::compile::{Actions, CompiledRedaction};
use super::config::Action;
use super::scanner::{CompiledShape, Finding, Scanner};
use crate::principal::Caller;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

/// Which way the text goes: to a provider or server, or back to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Answer,
}

/// How the text is written where it sits: plain, or the source of a JSON document (a streamed
/// tool call's arguments), where a restored value must be escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    JsonSource,
}

pub struct Redactor {
    pub policy: Rc<CompiledRedaction>,
    actions: Actions,
    caller: Caller,
    /// Detect and count only: shadow mode, or an MCP server scanned in `record`.
    record_only: bool,
    /// Placeholder label → the value it stands for, and value → label.
    placeholders: HashMap<String, String>,
    labels: HashMap<(usize, String), String>,
    per_class_count: HashMap<usize, usize>,
    /// (class, action) → findings.
    pub counts: BTreeMap<(String, &'static str), u64>,
    pub classes: BTreeSet<String>,
    /// The first class whose action is `block`, found in this direction's text.
    pub blocked: Option<String>,
    /// Findings are not counted: a summary event repeats text already counted as it streamed.
    pub quiet: bool,
}

impl Redactor {
    pub fn new(policy: Rc<CompiledRedaction>, caller: Caller, path: &str, record_only: bool) -> Redactor {
        let actions = policy.actions_for(&caller, path);
        Redactor {
            policy,
            actions,
            caller,
            record_only,
            placeholders: HashMap::new(),
            labels: HashMap::new(),
            per_class_count: HashMap::new(),
            counts: BTreeMap::new(),
            classes: BTreeSet::new(),
            blocked: None,
            quiet: false,
        }
    }

    pub fn rule(&self) -> Option<&str> {
        self.actions.rule.as_deref()
    }

    pub fn record_only(&self) -> bool {
        self.record_only
    }

    pub fn scanner(&self, direction: Direction) -> &Scanner {
        self.policy.scanner(direction)
    }

    /// Whether detector `index` applies to this request's caller.
    pub fn active(&self, direction: Direction, index: usize) -> bool {
        let Some(detector) = self.scanner(direction).detectors.get(index) else { return false };
        if direction == Direction::Answer && !self.policy.scan_answers {
            // Answers are not scanned; this request's placeholders are still restored.
            return matches!(detector.shape, CompiledShape::Placeholder);
        }
        detector.who.as_ref().is_none_or(|w| w.matches(&self.caller))
    }

    /// The whole of a text, rewritten; `None` when nothing in it changes.
    pub fn rewrite(&mut self, text: &str, direction: Direction, kind: TextKind) -> Option<String> {
        let policy = self.policy.clone();
        let findings = policy.scanner(direction).find_all(text, &|i| self.active(direction, i));
        let mut out = String::new();
        let mut copied = 0;
        for finding in findings {
            if let Some(replacement) = self.replace(finding, text, direction, kind) {
                out.push_str(&text[copied..finding.value_start]);
                out.push_str(&replacement);
                copied = finding.value_end;
            }
        }
        if copied == 0 && out.is_empty() {
            return None;
        }
        out.push_str(&text[copied..]);
        Some(out)
    }

    /// What replaces a finding's value, counting it; `None`: the text stays.
    pub fn replace(&mut self, finding: Finding, hay: &str, direction: Direction, kind: TextKind) -> Option<String> {
        let value = &hay[finding.value_start..finding.value_end];
        let policy = self.policy.clone();
        let scanner = policy.scanner(direction);
        let detector = &scanner.detectors[finding.detector];
        if matches!(detector.shape, CompiledShape::Placeholder) {
            let original = self.placeholders.get(value)?;
            return Some(match kind {
                TextKind::Plain => original.clone(),
                TextKind::JsonSource => json_escaped(original),
            });
        }
        let class = detector.class.clone();
        let over_cap = finding.value_end - finding.value_start > scanner.cap(finding.detector);
        let mut action = self.actions.per_detector[finding.detector];
        if direction == Direction::Answer && action == Action::Placeholder {
            // The agent never held a placeholder for a value it did not send.
            action = Action::Mask;
        }
        if over_cap && matches!(action, Action::Placeholder | Action::Hash) {
            // Past its cap a value was never seen whole: masked, never stood in for.
            action = Action::Mask;
        }
        if !self.quiet {
            *self.counts.entry((class.clone(), action.as_str())).or_default() += 1;
        }
        self.classes.insert(class.clone());
        self.classes.insert(detector.category.as_str().to_string());
        if action == Action::Private {
            self.classes.insert("private".to_string());
        }
        if action == Action::Block && self.blocked.is_none() && !self.quiet {
            self.blocked = Some(class.clone());
        }
        if self.record_only {
            return None;
        }
        let label = class.to_ascii_uppercase();
        match action {
            Action::Record | Action::Private => None,
            Action::Mask | Action::Block => Some(format!("[{label}]")),
            Action::Hash => Some(format!("[{label}:{}]", self.keyed_hash(&class, value))),
            Action::Placeholder => {
                let key = (finding.detector, value.to_string());
                if let Some(existing) = self.labels.get(&key) {
                    return Some(existing.clone());
                }
                let n = self.per_class_count.entry(finding.detector).or_default();
                *n += 1;
                let placeholder = format!("⟦{label}_{n}⟧");
                self.labels.insert(key, placeholder.clone());
                self.placeholders.insert(placeholder.clone(), value.to_string());
                Some(placeholder)
            }
        }
    }

    /// HMAC-SHA256 over tenant, class and value: the same within a tenant, unrelated across
    /// tenants, and not reversible without the key.
    fn keyed_hash(&self, class: &str, value: &str) -> String {
        let key = self.policy.hash_key.as_deref().unwrap_or_default();
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return "0".repeat(12) };
        mac.update(self.caller.tenant.as_deref().unwrap_or("").as_bytes());
        mac.update(b"\0");
        mac.update(class.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..6])
    }

    /// Whether anything was found that the data-class record should carry.
    /// `text` with each value this request's placeholders were restored to put back as its
    /// placeholder: what a capture may keep of an answer.
    pub fn unrestore(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (placeholder, value) in &self.placeholders {
            if !value.is_empty() && out.contains(value.as_str()) {
                out = out.replace(value.as_str(), placeholder);
            }
        }
        out
    }

    pub fn found_any(&self) -> bool {
        !self.counts.is_empty()
    }

    /// The classes and categories found, as the router reads them (`warden.data_classes`).
    pub fn data_classes_json(&self) -> String {
        serde_json::to_string(&self.classes).unwrap_or_else(|_| "[]".to_string())
    }
}

fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_string()
}
