//! Server-sent events framed incrementally, whatever the chunking.
//!
//! Bytes are held only until the event they belong to is complete (a bounded hold-back
//! window), so a stream passes through event by event and is never buffered whole. Lines end
//! in `\n`, `\r\n` or `\r`, as the SSE spec allows; a `\r` at the end of a chunk is held until
//! the next byte shows whether `\n` follows, so splitting a stream anywhere gives the same
//! events.

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
}

impl Framer {
    pub fn new(max_event: usize) -> Framer {
        Framer { max_event, ..Framer::default() }
    }

    /// Adds a chunk; returns the events it completed, each with its terminating blank line.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, EventTooLarge> {
        self.pending.extend_from_slice(chunk);
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
            return Err(EventTooLarge(self.max_event));
        }
        Ok(events)
    }

    /// The end of the stream: whatever is held (an event the server never terminated).
    pub fn finish(&mut self) -> Vec<u8> {
        self.scanned = 0;
        self.line_start = 0;
        std::mem::take(&mut self.pending)
    }
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
}
