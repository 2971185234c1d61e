//! Server-sent events framed incrementally, whatever the chunking.
//!
//! Bytes are held only until the event they belong to is complete (a bounded hold-back
//! window), so a stream passes through event by event and is never buffered whole. Lines end
//! in `\n`, `\r\n` or `\r`, as the SSE spec allows; a `\r` at the end of a chunk is held until
//! the next byte shows whether `\n` follows, so splitting a stream anywhere gives the same
//! events. A UTF-8 byte order mark at the very start of the stream is removed, as the spec's
//! decoder (and every SDK's parser) removes it: `\u{FEFF}data: ...` is a data line to them, so
//! it must be one here too.
//!
//! An event larger than the window is reported once; the rest of it is then skipped (nothing
//! is held) until its blank line, so memory stays bounded and no byte is given out twice.

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an event is larger than {0} bytes")]
pub struct EventTooLarge(pub usize);

#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
    /// How far `pending` has been scanned, and where the current line started.
    scanned: usize,
    line_start: usize,
    max_event: usize,
    /// Past the first bytes of the stream (where a BOM may be).
    started: bool,
    skip: Option<Skip>,
    /// The event skipped ended with `\r`: a `\n` right after it belongs to that line end.
    swallow_lf: bool,
}

/// Where the skipping of an oversized event stands.
#[derive(Debug, Default, Clone, Copy)]
struct Skip {
    at_line_start: bool,
    after_cr: bool,
}

impl Framer {
    pub fn new(max_event: usize) -> Framer {
        Framer { max_event, ..Framer::default() }
    }

    /// Adds a chunk; returns the events it completed, each with its terminating blank line.
    /// `Err` when an event outgrew the window: it is dropped and the events after it are
    /// framed again on later pushes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, EventTooLarge> {
        let mut chunk = chunk;
        if let Some(skip) = self.skip.as_mut() {
            match skip_event(skip, chunk) {
                None => return Ok(Vec::new()),
                Some((consumed, ended_on_cr)) => {
                    self.skip = None;
                    self.swallow_lf = ended_on_cr;
                    chunk = &chunk[consumed..];
                }
            }
        }
        if self.swallow_lf && !chunk.is_empty() {
            self.swallow_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.pending.extend_from_slice(chunk);
        if !self.started {
            if self.pending.len() < BOM.len() && BOM.starts_with(&self.pending) {
                return Ok(Vec::new()); // a BOM may still be arriving
            }
            self.started = true;
            if self.pending.starts_with(BOM) {
                self.pending.drain(..BOM.len());
            }
        }
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut i = self.scanned;
        while i < self.pending.len() {
            let end = match self.pending[i] {
                b'\n' => i + 1,
                b'\r' if i + 1 == self.pending.len() => break, // wait: `\r\n` may be split
                b'\r' if self.pending[i + 1] == b'\n' => i + 2,
                b'\r' => i + 1,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let empty_line = i == self.line_start;
            self.line_start = end;
            i = end;
            if empty_line {
                events.push(self.pending[event_start..end].to_vec());
                event_start = end;
            }
        }
        self.pending.drain(..event_start);
        self.scanned = i - event_start;
        self.line_start -= event_start;
        if self.pending.len() > self.max_event {
            // Drop what is held of the event and skip its rest, from where scanning stopped
            // (a trailing `\r` not yet read is fed to the skipper).
            let mut skip = Skip { at_line_start: self.line_start == self.scanned, after_cr: false };
            let tail = self.pending.split_off(self.scanned);
            match skip_event(&mut skip, &tail) {
                Some((_, ended_on_cr)) => self.swallow_lf = ended_on_cr,
                None => self.skip = Some(skip),
            }
            self.pending.clear();
            self.scanned = 0;
            self.line_start = 0;
            // The events completed before the oversized one are lost with the error; callers
            // stop reading (tool-acl) or end the stream (token-budget) at this point.
            return Err(EventTooLarge(self.max_event));
        }
        Ok(events)
    }

    /// The end of the stream: whatever is held (an event the server never terminated).
    pub fn finish(&mut self) -> Vec<u8> {
        self.scanned = 0;
        self.line_start = 0;
        self.skip = None;
        std::mem::take(&mut self.pending)
    }

    /// Bytes held now: the bound this framer keeps.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// Skips bytes of an oversized event; `Some((bytes consumed, the blank line ended on \r))` once
/// its blank line is found.
fn skip_event(skip: &mut Skip, chunk: &[u8]) -> Option<(usize, bool)> {
    for (i, &b) in chunk.iter().enumerate() {
        if skip.after_cr {
            skip.after_cr = false;
            if b == b'\n' {
                continue; // the rest of a `\r\n`
            }
        }
        match b {
            b'\n' | b'\r' => {
                if skip.at_line_start {
                    return Some((i + 1, b == b'\r'));
                }
                skip.at_line_start = true;
                skip.after_cr = b == b'\r';
            }
            _ => skip.at_line_start = false,
        }
    }
    None
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match rest.get(end) {
            Some(b'\r') if rest.get(end + 1) == Some(&b'\n') => 2,
            Some(_) => 1,
            None => 0,
        };
        rest = &rest[end + skip..];
        Some(line)
    })
}

fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
        None => (line, &[]),
    }
}

/// The event's data (its `data:` lines joined with `\n`), or `None` when it has none.
pub fn data(event: &[u8]) -> Option<String> {
    let mut out: Option<Vec<u8>> = None;
    for line in lines(event) {
        let (name, value) = field(line);
        if name == b"data" {
            match &mut out {
                Some(buf) => {
                    buf.push(b'\n');
                    buf.extend_from_slice(value);
                }
                None => out = Some(value.to_vec()),
            }
        }
    }
    out.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The event's type (its `event:` field), or `None` for the default `message`.
pub fn event_name(event: &[u8]) -> Option<String> {
    lines(event)
        .map(field)
        .filter(|(name, _)| *name == b"event")
        .last()
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
}

/// The event with its data replaced by `new_data`; every other field kept, in order.
pub fn with_data(event: &[u8], new_data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len() + new_data.len());
    let mut written = false;
    for line in lines(event) {
        if line.is_empty() {
            continue;
        }
        if field(line).0 == b"data" {
            if !written {
                for data_line in new_data.split('\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(data_line.trim_end_matches('\r').as_bytes());
                    out.push(b'\n');
                }
                written = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// One event carrying `data`, optionally named.
pub fn event(name: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = String::new();
    if let Some(name) = name {
        out.push_str(&format!("event: {name}\n"));
    }
    for line in data.split('\n') {
        out.push_str(&format!("data: {}\n", line.trim_end_matches('\r')));
    }
    out.push('\n');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"event: message\nid: 1\ndata: {\"a\":1}\n\n: comment\r\n\r\ndata: x\rdata: y\r\rdata: last\n\n";

    #[test]
    fn events_from_one_chunk() {
        let mut f = Framer::new(1024);
        let events = f.push(STREAM).unwrap();
        assert_eq!(events.len(), 4);
        assert_eq!(data(&events[0]).as_deref(), Some("{\"a\":1}"));
        assert_eq!(data(&events[1]), None);
        assert_eq!(data(&events[2]).as_deref(), Some("x\ny"));
        assert_eq!(events.concat(), STREAM);
        assert!(f.finish().is_empty());
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let whole = Framer::new(1024).push(STREAM).unwrap();
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                let mut f = Framer::new(1024);
                let mut events = f.push(&STREAM[..a]).unwrap();
                events.extend(f.push(&STREAM[a..b]).unwrap());
                events.extend(f.push(&STREAM[b..]).unwrap());
                assert_eq!(events, whole, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn replacing_data_keeps_other_fields() {
        let out = with_data(b"event: message\nid: 7\ndata: {\"old\":\ndata: 1}\n\n", "{\"new\":2}");
        assert_eq!(out, b"event: message\nid: 7\ndata: {\"new\":2}\n\n");
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut f = Framer::new(8);
        assert!(f.push(b"data: 0123456789").is_err());
    }

    /// After an event too large to hold, nothing of it is kept or given out again, however
    /// much more of it arrives; the events after it are framed as usual, at every split.
    #[test]
    fn memory_stays_bounded_after_an_oversized_event_and_nothing_is_repeated() {
        for ending in ["\n\n", "\r\n\r\n", "\r\r"] {
            let stream = format!("data: {}{ending}data: next\n\n", "x".repeat(100));
            for split in 1..stream.len() {
                let mut f = Framer::new(16);
                let mut events = Vec::new();
                let mut errors = 0;
                for part in [&stream.as_bytes()[..split], &stream.as_bytes()[split..]] {
                    match f.push(part) {
                        Ok(found) => events.extend(found),
                        Err(_) => errors += 1,
                    }
                    assert!(f.held() <= 16 + part.len().min(1), "held {} after split {split}", f.held());
                }
                // Held back past the window: reported once and dropped. Arrived whole in one
                // chunk: given out once, as it came (it was never held).
                let next = b"data: next\n\n".to_vec();
                let big = stream.as_bytes()[..stream.len() - next.len()].to_vec();
                let expected = if errors == 1 { vec![next] } else { vec![big, next] };
                assert!(errors <= 1);
                assert_eq!(events, expected, "split {split} {ending:?}");
            }
        }
        let mut f = Framer::new(16);
        assert!(f.push(b"data: 0123456789abcdef").is_err());
        for _ in 0..1000 {
            assert!(f.push(&[b'x'; 1024]).unwrap().is_empty());
            assert_eq!(f.held(), 0, "the rest of the oversized event is not kept");
        }
    }

    /// A byte order mark opens the stream: the SDKs' decoders drop it, so `data:` after it is a
    /// data line here too, wherever the BOM is split.
    #[test]
    fn a_bom_at_the_start_of_the_stream_is_removed() {
        let stream = b"\xEF\xBB\xBFdata: {\"id\":1}\n\n";
        for split in 0..=stream.len() {
            let mut f = Framer::new(1024);
            let mut events = f.push(&stream[..split]).unwrap();
            events.extend(f.push(&stream[split..]).unwrap());
            assert_eq!(events, vec![b"data: {\"id\":1}\n\n".to_vec()], "split {split}");
            assert_eq!(data(&events[0]).as_deref(), Some("{\"id\":1}"));
        }
        // Only at the start: later, U+FEFF is part of a field name the spec ignores.
        let mut f = Framer::new(1024);
        let events = f.push(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n").unwrap();
        assert_eq!(data(&events[1]), None);
    }
}
