//! One streamed text (a choice's content, a tool call's arguments, a content block) rewritten
//! as it flows, with a bounded hold-back: text is held only from the earliest place where a
//! match could still begin and need what has not arrived; everything before it is released at
//! once. An open value (a PEM block, a JWT, an assigned secret) is held from its marker up to
//! its class's cap; past the cap it is redacted unseen and the rest of it dropped until it
//! ends, so no part of it is ever released. Whatever the deltas, the text released equals
//! [`Redactor::rewrite`] of the whole.

use super::redactor::{Direction, Redactor, TextKind};
use super::scanner::{floor_char, Step};

/// Bytes of released text kept in front of the pending text: what the checks look back at (a
/// phone number's context word, a number's joining character).
const LOOK_BEHIND: usize = super::checks::CONTEXT_BEFORE + 4;
/// Bytes of a dropped value kept to find its closing marker across deltas.
const END_TAIL: usize = 128;

#[derive(Debug)]
pub struct TextStream {
    /// The last released bytes (up to `LOOK_BEHIND`), then the text not released yet.
    pending: String,
    /// Where the unreleased part of `pending` begins.
    released: usize,
    /// An open value past its cap: its detector, and whether it passes (recorded only) rather
    /// than being dropped.
    dropping: Option<(usize, bool)>,
    direction: Direction,
    kind: TextKind,
}

impl TextStream {
    pub fn new(direction: Direction, kind: TextKind) -> TextStream {
        TextStream { pending: String::new(), released: 0, dropping: None, direction, kind }
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.pending.len() - self.released
    }

    /// Adds a delta; returns the text that may be released now, rewritten.
    pub fn push(&mut self, redactor: &mut Redactor, delta: &str) -> String {
        self.pending.push_str(delta);
        self.advance(redactor, false)
    }

    /// The text ended: everything held is decided and released.
    pub fn finish(&mut self, redactor: &mut Redactor) -> String {
        self.advance(redactor, true)
    }

    fn advance(&mut self, redactor: &mut Redactor, ended: bool) -> String {
        let (direction, kind) = (self.direction, self.kind);
        let mut out = String::new();
        if let Some((detector, passes)) = self.dropping {
            // `pending` holds the last bytes of the value seen (to find its end across deltas)
            // and then the new text; only what follows `released` is new.
            let scanner = redactor.scanner(direction);
            match scanner.open_end_in(detector, &self.pending) {
                Some(end) if end >= self.released => {
                    // The dropped value ended: the text after it is read as usual.
                    if passes {
                        out.push_str(&self.pending[self.released..end]);
                    }
                    self.released = end;
                    self.dropping = None;
                }
                _ => {
                    if passes {
                        out.push_str(&self.pending[self.released..]);
                    }
                    self.keep_value_tail();
                    return out;
                }
            }
        }
        let policy = redactor.policy.clone();
        let scanner = policy.scanner(direction);
        let text = self.pending.as_str();
        let mut limit = if ended { text.len() } else { scanner.undecided_from(text, self.released) };
        let mut copied = self.released;
        let mut pos = self.released;
        loop {
            let step = scanner.next(text, pos, limit, ended, &|i| redactor.active(direction, i));
            match step {
                Step::Found(finding) => {
                    if let Some(replacement) = redactor.replace(finding, text, direction, kind) {
                        out.push_str(&text[copied..finding.value_start]);
                        out.push_str(&replacement);
                        copied = finding.value_end;
                    }
                    pos = finding.end.max(pos + 1);
                    while pos < text.len() && !text.is_char_boundary(pos) {
                        pos += 1;
                    }
                    limit = limit.max(pos);
                }
                Step::Open { detector, start, value_start } => {
                    if text.len() - value_start > scanner.cap(detector) {
                        // Over its cap and still going: redacted now, the rest dropped.
                        let finding = super::scanner::Finding {
                            detector,
                            start,
                            end: text.len(),
                            value_start,
                            value_end: text.len(),
                        };
                        let replacement = redactor.replace(finding, text, direction, kind);
                        out.push_str(&text[copied..value_start]);
                        let passes = replacement.is_none();
                        match replacement {
                            Some(replacement) => out.push_str(&replacement),
                            // Recorded only: the value passes as it is.
                            None => out.push_str(&text[value_start..]),
                        }
                        copied = text.len();
                        limit = text.len();
                        self.dropping = Some((detector, passes));
                    } else {
                        limit = start;
                    }
                    break;
                }
                Step::Done => break,
            }
        }
        let release = limit.max(copied);
        out.push_str(&text[copied..release]);
        if self.dropping.is_some() {
            self.keep_value_tail();
            return out;
        }
        let keep_from = floor_char(&self.pending, release.saturating_sub(LOOK_BEHIND));
        self.pending.drain(..keep_from);
        self.released = release - keep_from;
        out
    }
}

impl TextStream {
    /// While a value past its cap is dropped, only its last bytes are kept (to find its end
    /// across deltas); all of them have been dealt with.
    fn keep_value_tail(&mut self) {
        let keep_from = floor_char(&self.pending, self.pending.len().saturating_sub(END_TAIL));
        self.pending.drain(..keep_from);
        self.released = self.pending.len();
    }
}
