//! Every detector compiled once per VM into three automata over the same patterns:
//! - `candidates` (leftmost-first) finds the next place any detector could match;
//! - `at_start` (all matches) says which detectors could match there, one search for all;
//!   both search the detectors' patterns *relaxed* (every counted repetition open: `{1,64}`
//!   becomes `+`, `{16}` becomes `{4,}`), a superset whose automaton stays small: counted repetitions of many patterns
//!   searched at once multiply a DFA's states until it gives up for a slow engine;
//! - `viability`, a lazy DFA, says how much of a stream's tail could still grow into a match:
//!   only that much is held back, everything before it is decided and released.
//!
//! Each detector keeps its own anchored regex for the end of its match (and its `v` group).

use super::catalogue::{Category, OpenEnd, Shape};
use super::checks::{self, Check};
use crate::when::PrincipalMatch;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::meta::Regex;
use regex_automata::util::start;
use regex_automata::{Anchored, Input, MatchKind, PatternSet};
use regex_syntax::hir::{Class, Hir, HirKind, Look, Repetition};
use std::cell::RefCell;

/// The letters of the JSON escapes that stand for white space (`\n` `\r` `\t` `\b` `\f`): after
/// one, a word starts as it would after the character it stands for.
const ESCAPE_LETTERS: [u8; 5] = [b'n', b'r', b't', b'b', b'f'];

/// Bytes after a match that its check may look at (`1.2.3.4` followed by `.5` is no address).
const LOOKAHEAD: usize = 3;

#[derive(Debug)]
pub struct Detector {
    pub class: String,
    pub category: Category,
    pub check: Check,
    pub shape: CompiledShape,
    /// Who it applies to (per-tenant additions); `None`: everyone.
    pub who: Option<PrincipalMatch>,
    regex: Regex,
    has_value_group: bool,
}

#[derive(Debug)]
pub enum CompiledShape {
    Bounded,
    Open {
        end: CompiledEnd,
        cap: usize,
        value_from_marker_end: bool,
    },
    /// A placeholder of this request's, restored in answers.
    Placeholder,
}

#[derive(Debug)]
pub enum CompiledEnd {
    WhileIn(Box<[bool; 256]>),
    Until(Regex),
}

/// A detector as the compile step hands it over.
#[derive(Clone)]
pub struct DetectorSpec {
    pub class: String,
    pub category: Category,
    pub pattern: String,
    pub check: Check,
    pub shape: Shape,
    pub placeholder: bool,
    pub who: Option<PrincipalMatch>,
}

/// Where a finding is: the whole match, and the part replaced (`value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub detector: usize,
    pub start: usize,
    pub end: usize,
    pub value_start: usize,
    pub value_end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Found(Finding),
    /// An open value (a PEM block, a JWT, an assigned secret) runs to the end of the text seen
    /// so far: it must be held from `start` (its value from `value_start`) until it ends.
    Open {
        detector: usize,
        start: usize,
        value_start: usize,
    },
    Done,
}

pub struct Scanner {
    pub detectors: Vec<Detector>,
    candidates: Regex,
    at_start: Regex,
    viability: DFA,
    cache: RefCell<Cache>,
    /// The longest bounded match (markers included) and its lookahead: a start further back
    /// than this from the end of the text is decided whatever comes next.
    pub horizon: usize,
    /// How far one candidate search looks ahead.
    window: usize,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner").field("detectors", &self.detectors.len()).field("horizon", &self.horizon).finish()
    }
}

/// Why a pattern was refused; the compile step adds the field's path.
#[derive(Debug)]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

impl Scanner {
    pub fn new(specs: Vec<DetectorSpec>) -> Result<Scanner, PatternError> {
        let mut detectors = Vec::with_capacity(specs.len());
        let mut horizon = 0;
        for (index, spec) in specs.iter().enumerate() {
            let fail = |message: String| PatternError { index, message };
            let hir = regex_syntax::ParserBuilder::new()
                .build()
                .parse(&spec.pattern)
                .map_err(|e| fail(format!("not a regular expression: {e}")))?;
            let longest = hir.properties().maximum_len().ok_or_else(|| {
                fail("its matches are unbounded: bound every repetition (`{1,64}`, not `+` or `*`)".to_string())
            })?;
            if longest > 1024 {
                return Err(fail(format!("its longest match is {longest} bytes; at most 1024")));
            }
            if hir.properties().minimum_len().unwrap_or(0) == 0 {
                return Err(fail("it matches the empty text".to_string()));
            }
            horizon = horizon.max(longest);
            let regex = Regex::new(&spec.pattern).map_err(|e| fail(e.to_string()))?;
            let has_value_group = regex.group_info().to_index(regex_automata::PatternID::ZERO, "v").is_some();
            let shape = match (spec.placeholder, spec.shape) {
                (true, _) => CompiledShape::Placeholder,
                (false, Shape::Bounded) => CompiledShape::Bounded,
                (false, Shape::Open { end, cap, value_from_marker_end }) => {
                    let end = match end {
                        OpenEnd::WhileIn(chars) => {
                            let mut set = Box::new([false; 256]);
                            for b in chars.bytes() {
                                set[usize::from(b)] = true;
                            }
                            CompiledEnd::WhileIn(set)
                        }
                        OpenEnd::Until(pattern) => {
                            CompiledEnd::Until(Regex::new(pattern).map_err(|e| fail(e.to_string()))?)
                        }
                    };
                    CompiledShape::Open { end, cap, value_from_marker_end }
                }
            };
            detectors.push(Detector {
                class: spec.class.clone(),
                category: spec.category,
                check: spec.check,
                shape,
                who: spec.who.clone(),
                regex,
                has_value_group,
            });
        }
        let patterns: Vec<&str> = specs.iter().map(|s| s.pattern.as_str()).collect();
        let whole = |e: regex_automata::meta::BuildError| PatternError { index: 0, message: e.to_string() };
        let mut relaxed_patterns = Vec::with_capacity(specs.len());
        let mut bounded_patterns = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let hir = regex_syntax::parse(&spec.pattern).map_err(|e| PatternError { index, message: e.to_string() })?;
            let open = relaxed(&hir);
            // Every check but the entropy rule's wants a start that no word character precedes
            // (or an escape's letter: `\n` in JSON held in a string): said in the pattern, a run
            // of digits or letters is one candidate, not one a byte.
            bounded_patterns.push(if spec.check == Check::Entropy {
                open.clone()
            } else {
                after_boundary(open.clone())
            });
            relaxed_patterns.push(open);
        }
        let candidates = Regex::builder().build_many_from_hir(&bounded_patterns).map_err(whole)?;
        let at_start = Regex::builder()
            .configure(Regex::config().match_kind(MatchKind::All))
            .build_many_from_hir(&relaxed_patterns)
            .map_err(whole)?;
        let viability = DFA::builder()
            .configure(DFA::config().match_kind(MatchKind::All))
            .build_many(&patterns)
            .map_err(|e| PatternError { index: 0, message: e.to_string() })?;
        let cache = RefCell::new(viability.create_cache());
        let horizon = horizon + LOOKAHEAD;
        Ok(Scanner { detectors, candidates, at_start, viability, cache, horizon, window: (4 * horizon).max(4096) })
    }

    /// The next finding in `hay` starting at or after `from` and before `limit`, among the
    /// detectors `active` allows. `ended`: no more text will follow `hay`.
    pub fn next(&self, hay: &str, from: usize, limit: usize, ended: bool, active: &dyn Fn(usize) -> bool) -> Step {
        let mut pos = from;
        let mut set = PatternSet::new(self.detectors.len());
        while pos < limit {
            // A bounded window: a search never runs further than a match could reach, so a
            // long run that starts many failed candidates costs each of them the window at most.
            let window_end = hay.len().min(pos.saturating_add(self.window));
            // At or just after an escape (`\n`), the search starts at its backslash: the candidate
            // automaton knows a start after an escape only by the escape.
            let bytes = hay.as_bytes();
            let escape_letter = |at: usize| at >= 1 && bytes[at - 1] == b'\\' && ESCAPE_LETTERS.contains(&bytes[at]);
            let search_from = if escape_letter(pos) {
                pos - 1
            } else if pos >= 1 && escape_letter(pos - 1) {
                pos - 2
            } else {
                pos
            };
            let Some(candidate) = self.candidates.search(&Input::new(hay).span(search_from..window_end)) else {
                if window_end == hay.len() {
                    return Step::Done;
                }
                // No match starts before `window_end - horizon`: any would have ended inside.
                pos = floor_char(hay, window_end - self.horizon).max(next_char(hay, pos));
                continue;
            };
            let mut start = candidate.start();
            if bytes[start] == b'\\' {
                // Found after an escape's two bytes (`\n`): the match starts past them.
                start = (start + 2).min(hay.len());
            } else if start > 0 && bytes[start - 1] == b'\\' && ESCAPE_LETTERS.contains(&bytes[start]) {
                // Found at an escape's letter (the search began between its two bytes): the
                // letter is not part of a match, wherever the search began.
                start += 1;
            }
            let start = start.max(pos);
            if start >= limit {
                return Step::Done;
            }
            set.clear();
            // No match is longer than the horizon: the search need not look further (the relaxed
            // patterns would otherwise run to the end of any long run of their characters).
            let at_start_end = hay.len().min(start.saturating_add(self.horizon));
            self.at_start.which_overlapping_matches(
                &Input::new(hay).span(start..at_start_end).anchored(Anchored::Yes),
                &mut set,
            );
            let mut best: Option<Finding> = None;
            for id in set.iter() {
                let index = id.as_usize();
                if !active(index) {
                    continue;
                }
                match self.confirm(index, hay, start, ended) {
                    Confirmed::Found(finding) => {
                        // A secret wins over personal data (`glpat-…@gitlab.com` is a token, not
                        // an address); then the longest; of two as long, the later detector, the
                        // more specific (an SSN over a phone number; a policy's own class).
                        let rank = |f: &Finding| (self.detectors[f.detector].category == Category::Secret, f.end);
                        if best.is_none_or(|b| rank(&finding) >= rank(&b)) {
                            best = Some(finding);
                        }
                    }
                    Confirmed::Open { value_start } => {
                        return Step::Open { detector: index, start, value_start };
                    }
                    Confirmed::No => {}
                }
            }
            if let Some(finding) = best {
                return Step::Found(finding);
            }
            pos = next_char(hay, start);
        }
        Step::Done
    }

    /// Every finding in a whole text, for the detectors `active` allows (what a request's
    /// rewrite acts on; also what the quality measurement scores).
    pub fn find_all(&self, hay: &str, active: &dyn Fn(usize) -> bool) -> Vec<Finding> {
        let mut found = Vec::new();
        let mut pos = 0;
        while let Step::Found(finding) = self.next(hay, pos, hay.len(), true, active) {
            found.push(finding);
            // A finding is never empty, so this always moves on.
            pos = finding.end.max(next_char(hay, pos));
        }
        found
    }

    fn confirm(&self, index: usize, hay: &str, start: usize, ended: bool) -> Confirmed {
        let detector = &self.detectors[index];
        let input = Input::new(hay).span(start..hay.len()).anchored(Anchored::Yes);
        let Some(matched) = detector.regex.search(&input) else { return Confirmed::No };
        let found = |end: usize, value_start: usize, value_end: usize| Finding {
            detector: index,
            start,
            end,
            value_start,
            value_end,
        };
        match &detector.shape {
            CompiledShape::Placeholder => Confirmed::Found(found(matched.end(), start, matched.end())),
            CompiledShape::Bounded => {
                for end in candidate_ends(detector.check, hay, start, matched.end()) {
                    if !checks::holds(detector.check, hay, start, end) {
                        continue;
                    }
                    let (value_start, value_end) = if detector.has_value_group {
                        self.value_group(index, hay, start, end).unwrap_or((start, end))
                    } else {
                        (start, end)
                    };
                    return Confirmed::Found(found(end, value_start, value_end));
                }
                Confirmed::No
            }
            CompiledShape::Open { end, cap, value_from_marker_end } => {
                let value_start = if *value_from_marker_end { matched.end() } else { start };
                let mut value_end = match open_end(end, hay, matched.end()) {
                    Some(value_end) => value_end,
                    None if ended => hay.len(),
                    None => return Confirmed::Open { value_start },
                };
                // Past its cap a value is redacted unseen, as a stream must (it cannot hold more),
                // to where its characters end: judged before any trimming, as a stream judges it.
                if value_end - value_start > *cap {
                    return Confirmed::Found(found(value_end, value_start, value_end));
                }
                if detector.check == Check::Jwt {
                    // A sentence's full stop after a token is not part of it.
                    while value_end > value_start + 1
                        && hay.as_bytes()[value_end - 1] == b'.'
                        && !checks::holds(Check::Jwt, hay, value_start, value_end)
                    {
                        value_end -= 1;
                    }
                }
                if value_end > value_start && checks::holds(detector.check, hay, value_start, value_end) {
                    Confirmed::Found(found(value_end, value_start, value_end))
                } else {
                    Confirmed::No
                }
            }
        }
    }

    fn value_group(&self, index: usize, hay: &str, start: usize, end: usize) -> Option<(usize, usize)> {
        let regex = &self.detectors[index].regex;
        let mut caps = regex.create_captures();
        regex.search_captures(&Input::new(hay).span(start..end).anchored(Anchored::Yes), &mut caps);
        caps.get_group_by_name("v").map(|span| (span.start, span.end))
    }

    /// Where an open value that reached the end of the text seen so far would end, searching
    /// `tail` (the last bytes seen, and what came after): the index in `tail` after its end.
    pub fn open_end_in(&self, index: usize, tail: &str) -> Option<usize> {
        match &self.detectors[index].shape {
            CompiledShape::Open { end, .. } => open_end(end, tail, 0),
            _ => Some(0),
        }
    }

    pub fn cap(&self, index: usize) -> usize {
        match &self.detectors[index].shape {
            CompiledShape::Open { cap, .. } => *cap,
            _ => usize::MAX,
        }
    }

    /// The earliest start at or after `from` where a match could still begin that the bytes
    /// seen so far do not decide; `hay.len()` when everything is decided.
    pub fn undecided_from(&self, hay: &str, from: usize) -> usize {
        let bytes = hay.as_bytes();
        let mut p = from.max(hay.len().saturating_sub(self.horizon));
        while p < bytes.len() && !hay.is_char_boundary(p) {
            p += 1;
        }
        let Ok(mut cache) = self.cache.try_borrow_mut() else { return p };
        while p < bytes.len() {
            if self.may_grow(&mut cache, bytes, p) {
                return p;
            }
            p = next_char(hay, p);
        }
        bytes.len()
    }

    /// Whether a match starting at `p` could still need bytes not seen yet.
    fn may_grow(&self, cache: &mut Cache, bytes: &[u8], p: usize) -> bool {
        let behind = p.checked_sub(1).map(|i| bytes[i]);
        let config = start::Config::new().anchored(Anchored::Yes).look_behind(behind);
        let Ok(mut state) = self.viability.start_state(cache, &config) else { return true };
        // The lazy DFA reports a match one byte late: `is_match` after byte `i` means a match
        // ended before it.
        let mut last_match_end = None;
        for (i, &b) in bytes[p..].iter().enumerate() {
            let Ok(next) = self.viability.next_state(cache, state, b) else { return true };
            if next.is_match() {
                last_match_end = Some(p + i);
            }
            if next.is_dead() {
                // Decided, once the check's lookahead after the last match is in sight.
                return last_match_end.is_some_and(|end| end + LOOKAHEAD > bytes.len());
            }
            if next.is_quit() {
                return true;
            }
            state = next;
        }
        true
    }
}

/// Counted repetitions up to this many are kept in the candidate automaton.
const SMALL_COUNT: u32 = 8;

/// `hir` with every large counted repetition open and its minimum at most 4 (`{1,64}` → `+`,
/// `{16}` → `{4,}`: large counts are what multiplies states) and no capture groups: it matches
/// wherever `hir` does.
fn relaxed(hir: &Hir) -> Hir {
    match hir.kind() {
        // Small counts stay: a start found is then never far from what follows it (`{3}[0-9]Q~`
        // starts 4 bytes before `Q~`, not at the start of a run of key characters).
        HirKind::Repetition(rep) if rep.max.is_some_and(|max| max <= SMALL_COUNT) => Hir::repetition(Repetition {
            min: rep.min,
            max: rep.max,
            greedy: rep.greedy,
            sub: Box::new(relaxed(&rep.sub)),
        }),
        HirKind::Repetition(rep) => Hir::repetition(Repetition {
            min: rep.min.min(4),
            max: None,
            greedy: rep.greedy,
            sub: Box::new(relaxed(&rep.sub)),
        }),
        HirKind::Capture(capture) => relaxed(&capture.sub),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(relaxed).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(relaxed).collect()),
        _ => hir.clone(),
    }
}

/// `hir` with an ASCII word boundary (or an escape, `\n` `\r` `\t`) before each alternative that
/// starts with a word character.
fn after_boundary(hir: Hir) -> Hir {
    let bounded = |branch: Hir| {
        if starts_with_word_char(&branch) {
            let escape = |letter: &u8| Hir::literal(vec![b'\\', *letter]);
            let boundary = Hir::alternation(
                std::iter::once(Hir::look(Look::WordAscii)).chain(ESCAPE_LETTERS.iter().map(escape)).collect(),
            );
            Hir::concat(vec![boundary, branch])
        } else {
            branch
        }
    };
    match hir.kind() {
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().cloned().map(bounded).collect()),
        _ => bounded(hir),
    }
}

/// Whether every match of `hir` starts with an ASCII letter, digit or `_`.
fn starts_with_word_char(hir: &Hir) -> bool {
    let word = |b: u32| b == u32::from(b'_') || char::from_u32(b).is_some_and(|c| c.is_ascii_alphanumeric());
    match hir.kind() {
        HirKind::Literal(literal) => literal.0.first().is_some_and(|&b| word(u32::from(b))),
        HirKind::Class(Class::Unicode(class)) => {
            !class.ranges().is_empty()
                && class.ranges().iter().all(|r| (u32::from(r.start())..=u32::from(r.end())).all(word))
        }
        HirKind::Class(Class::Bytes(class)) => {
            !class.ranges().is_empty()
                && class.ranges().iter().all(|r| (u32::from(r.start())..=u32::from(r.end())).all(word))
        }
        HirKind::Concat(subs) => subs.first().is_some_and(starts_with_word_char),
        HirKind::Repetition(rep) => rep.min >= 1 && starts_with_word_char(&rep.sub),
        HirKind::Capture(capture) => starts_with_word_char(&capture.sub),
        HirKind::Alternation(subs) => subs.iter().all(starts_with_word_char),
        _ => false,
    }
}

enum Confirmed {
    Found(Finding),
    Open { value_start: usize },
    No,
}

/// The nearest char boundary at or before `at`.
pub(super) fn floor_char(hay: &str, mut at: usize) -> usize {
    while at > 0 && !hay.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn next_char(hay: &str, at: usize) -> usize {
    hay[at..].chars().next().map_or(hay.len(), |c| at + c.len_utf8())
}

/// Where an open value ends: the first byte outside its charset, or the end of its closing
/// marker. `None`: not within `hay`.
fn open_end(end: &CompiledEnd, hay: &str, from: usize) -> Option<usize> {
    match end {
        CompiledEnd::WhileIn(set) => {
            hay.as_bytes()[from..].iter().position(|&b| !set[usize::from(b)]).map(|n| from + n)
        }
        CompiledEnd::Until(regex) => regex.search(&Input::new(hay).span(from..hay.len())).map(|m| m.end()),
    }
}

/// The ends to try for a match, longest first: a greedy pattern may have taken a group too
/// many (`+44 20 7946 0958 2024`), so numbers written in groups are also tried a group shorter;
/// an IBAN is cut at its country's length.
fn candidate_ends(check: Check, hay: &str, start: usize, end: usize) -> Vec<usize> {
    let mut ends = vec![end];
    match check {
        Check::Phone | Check::Card => {
            let bytes = hay.as_bytes();
            for i in (start + 1..end).rev() {
                if matches!(bytes[i], b' ' | b'-' | b'.' | b'/') && bytes[i - 1].is_ascii_digit() {
                    ends.push(i);
                }
            }
        }
        Check::Iban => {
            if let Some(cut) = checks::iban_end(hay, start, end) {
                if cut != end {
                    ends = vec![cut];
                }
            }
        }
        _ => {}
    }
    ends
}
