//! Local budgets: counters in Envoy shared data, exact across the workers of one Envoy.
//!
//! A counter holds everything consumed in its window: settled usage plus the reservations of
//! requests still in flight. Reserving adds only if the result stays within the limit, under
//! CAS, so two workers can never both take the last tokens. Settling replaces a reservation
//! with the real usage. Counters live in bounded slots (`shared_slot`): per budget `slots`
//! keys of at most [`LINES_PER_SLOT`] counters; counters of a past window are dropped when
//! their slot is next written, idle session counters after `sessionIdle`.
//!
//! Counters whose scope a client can multiply (`session` ids, `model` and `tool` names are the
//! client's to choose) and that belong to one agent (a session is bound to its agent, or the
//! scope names the agent) are kept apart, in slots chosen by that agent, at most
//! [`COUNTERS_PER_AGENT`] live ones per agent: one agent's churn fills only its own share, never
//! a slot another tenant's counter needs, and no live counter is dropped. A counter shared by
//! several agents (`[tenant, model]`) is found by its scope alone.

use super::compile::Budget;
use super::config::Window;
use super::window::Span;
use crate::host::{Host, HostError};
use crate::shared_slot::{self, Change};

pub const LINES_PER_SLOT: usize = 8;
/// Live counters one agent may hold in a budget whose scope it can multiply.
pub const COUNTERS_PER_AGENT: usize = 64;

/// A reservation taken locally, kept by the request until it settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub budget: usize,
    pub key: String,
    pub digest: String,
    pub window: u64,
    pub amount: u64,
    /// What the counter held once this reservation was added.
    pub used_after: u64,
    /// The agent digest of a counter kept per agent (empty otherwise).
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Held(Held),
    /// The budget cannot take `amount`: `used` of `limit` is gone until `reset_at`.
    Refused {
        used: u64,
        reset_at: u64,
    },
    /// The agent already holds its [`COUNTERS_PER_AGENT`] live counters in this budget.
    TooManyCounters,
}

/// One counter line: `<scope digest> <window id> <consumed> <last touched, unix secs>
/// [<owner digest>]`.
struct Line<'a> {
    digest: &'a str,
    window: u64,
    used: u64,
    touched: u64,
    owner: &'a str,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let mut parts = line.split(' ');
    let digest = parts.next()?;
    let window = parts.next()?.parse().ok()?;
    let used = parts.next()?.parse().ok()?;
    let touched = parts.next()?.parse().ok()?;
    let owner = parts.next().unwrap_or("");
    Some(Line { digest, window, used, touched, owner })
}

fn format(digest: &str, window: u64, used: u64, touched: u64, owner: &str) -> String {
    if owner.is_empty() {
        format!("{digest} {window} {used} {touched}")
    } else {
        format!("{digest} {window} {used} {touched} {owner}")
    }
}

/// Where one budget's counter for one scope lives.
pub struct Counter<'a> {
    pub budget: &'a Budget,
    pub index: usize,
    /// Digest of the scope values (never the values themselves).
    pub digest: String,
    pub span: Span,
    pub slots: usize,
    pub session_idle: u64,
    /// For a scope the client can multiply: the digest of the agent the counter belongs to.
    pub owner: Option<String>,
}

impl Counter<'_> {
    fn key(&self) -> String {
        match &self.owner {
            Some(owner) => format!("warden.budget.{}.a{}", self.budget.id, shared_slot::slot_of(owner, self.slots)),
            None => format!("warden.budget.{}.{}", self.budget.id, shared_slot::slot_of(&self.digest, self.slots)),
        }
    }

    /// Whether a line of another counter may be dropped now.
    fn is_stale(&self, line: &Line, now: u64) -> bool {
        match self.budget.window {
            Window::Session => line.touched.saturating_add(self.session_idle) < now,
            _ => line.window < self.span.id,
        }
    }

    /// Adds `amount` if the budget allows it.
    pub fn reserve(&self, host: &dyn Host, amount: u64, now: u64) -> Result<Reserved, HostError> {
        let limit = self.budget.limit;
        let key = self.key();
        let owner = self.owner.as_deref().unwrap_or("");
        let outcome = shared_slot::update(host, &key, |lines| {
            let mut kept = Vec::with_capacity(lines.len() + 1);
            let mut used = None;
            let mut owned = 0;
            for raw in &lines {
                let Some(line) = parse(raw) else { continue };
                if line.digest == self.digest && line.window == self.span.id {
                    // A session's counter idle past `sessionIdle` is over: the id starts again.
                    if !self.is_stale(&line, now) {
                        used = Some(line.used);
                    }
                } else if !self.is_stale(&line, now) {
                    owned += usize::from(!owner.is_empty() && line.owner == owner);
                    kept.push(raw.to_string());
                }
            }
            let is_new = used.is_none();
            let used = used.unwrap_or(0);
            if used.saturating_add(amount) > limit {
                return Change::Keep(Ok(Reserved::Refused { used, reset_at: self.span.end }));
            }
            if is_new && !owner.is_empty() && owned >= COUNTERS_PER_AGENT {
                return Change::Keep(Ok(Reserved::TooManyCounters));
            }
            if owner.is_empty() && kept.len() >= LINES_PER_SLOT {
                return Change::Keep(Err(HostError::Failed {
                    call: "budget slot",
                    status: format!("slot {key} is full of live counters; raise tokenBudget.slots"),
                }));
            }
            kept.push(format(&self.digest, self.span.id, used + amount, now, owner));
            Change::Write(
                kept,
                Ok(Reserved::Held(Held {
                    budget: self.index,
                    key: key.clone(),
                    digest: self.digest.clone(),
                    window: self.span.id,
                    amount,
                    used_after: used + amount,
                    owner: owner.to_string(),
                })),
            )
        })?;
        outcome
    }
}

/// Replaces a reservation with what was really used. A counter whose window has rolled (or
/// that was dropped) keeps nothing of the reservation; an overrun beyond it is not lost but
/// charged to the counter's current window.
pub fn settle(host: &dyn Host, held: &Held, actual: u64, current: Span, now: u64) -> Result<(), HostError> {
    if actual == held.amount {
        return Ok(());
    }
    shared_slot::update(host, &held.key, |lines| {
        let mut out: Vec<String> = Vec::with_capacity(lines.len() + 1);
        let mut found = false;
        for raw in &lines {
            match parse(raw) {
                Some(line) if line.digest == held.digest && line.window == held.window => {
                    let used = line.used.saturating_sub(held.amount).saturating_add(actual);
                    out.push(format(line.digest, line.window, used, now, line.owner));
                    found = true;
                }
                Some(line) if line.digest == held.digest && line.window == current.id && actual > held.amount => {
                    out.push(format(line.digest, line.window, line.used + (actual - held.amount), now, line.owner));
                    found = true;
                }
                _ => out.push(raw.to_string()),
            }
        }
        if !found {
            // An overrun charged to a new window: per-agent slots are bounded by their owners'
            // caps, the others by `LINES_PER_SLOT`.
            let room = !held.owner.is_empty() || out.len() < LINES_PER_SLOT;
            if actual > held.amount && room {
                out.push(format(&held.digest, current.id, actual - held.amount, now, &held.owner));
            } else {
                return Change::Keep(());
            }
        }
        Change::Write(out, ())
    })
}
