//! Local budgets: counters in Envoy shared data, exact across the workers of one Envoy.
//!
//! A counter holds everything consumed in its window: settled usage plus the reservations of
//! requests still in flight. Reserving adds only if the result stays within the limit, under
//! CAS, so two workers can never both take the last tokens. Settling replaces a reservation
//! with the real usage. Counters live in bounded slots (`shared_slot`): per budget `slots`
//! keys of at most [`LINES_PER_SLOT`] counters; counters of a past window are dropped when
//! their slot is next written, idle session counters after `sessionIdle`.

use super::compile::Budget;
use super::config::Window;
use super::window::Span;
use crate::host::{Host, HostError};
use crate::shared_slot::{self, Change};

pub const LINES_PER_SLOT: usize = 8;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Held(Held),
    /// The budget cannot take `amount`: `used` of `limit` is gone until `reset_at`.
    Refused {
        used: u64,
        reset_at: u64,
    },
}

/// One counter line: `<scope digest> <window id> <consumed> <last touched, unix secs>`.
struct Line<'a> {
    digest: &'a str,
    window: u64,
    used: u64,
    touched: u64,
}

fn parse(line: &str) -> Option<Line<'_>> {
    let mut parts = line.split(' ');
    let digest = parts.next()?;
    let window = parts.next()?.parse().ok()?;
    let used = parts.next()?.parse().ok()?;
    let touched = parts.next()?.parse().ok()?;
    Some(Line { digest, window, used, touched })
}

fn format(digest: &str, window: u64, used: u64, touched: u64) -> String {
    format!("{digest} {window} {used} {touched}")
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
}

impl Counter<'_> {
    fn key(&self) -> String {
        format!("warden.budget.{}.{}", self.budget.id, shared_slot::slot_of(&self.digest, self.slots))
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
        let outcome = shared_slot::update(host, &key, |lines| {
            let mut kept = Vec::with_capacity(lines.len() + 1);
            let mut used = 0;
            for raw in &lines {
                let Some(line) = parse(raw) else { continue };
                if line.digest == self.digest && line.window == self.span.id {
                    used = line.used;
                } else if !self.is_stale(&line, now) {
                    kept.push(raw.to_string());
                }
            }
            if used.saturating_add(amount) > limit {
                return Change::Keep(Ok(Reserved::Refused { used, reset_at: self.span.end }));
            }
            if kept.len() >= LINES_PER_SLOT {
                return Change::Keep(Err(HostError::Failed {
                    call: "budget slot",
                    status: format!("slot {key} is full of live counters; raise tokenBudget.slots"),
                }));
            }
            kept.push(format(&self.digest, self.span.id, used + amount, now));
            Change::Write(
                kept,
                Ok(Reserved::Held(Held {
                    budget: self.index,
                    key: key.clone(),
                    digest: self.digest.clone(),
                    window: self.span.id,
                    amount,
                    used_after: used + amount,
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
                    out.push(format(line.digest, line.window, used, now));
                    found = true;
                }
                Some(line) if line.digest == held.digest && line.window == current.id && actual > held.amount => {
                    out.push(format(line.digest, line.window, line.used + (actual - held.amount), now));
                    found = true;
                }
                _ => out.push(raw.to_string()),
            }
        }
        if !found {
            if actual > held.amount && out.len() < LINES_PER_SLOT {
                out.push(format(&held.digest, current.id, actual - held.amount, now));
            } else {
                return Change::Keep(());
            }
        }
        Change::Write(out, ())
    })
}
