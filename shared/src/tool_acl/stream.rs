//! Streamed answers rewritten event by event (see `sse::Framer` for the hold-back window).

use crate::sse::{EventTooLarge, Framer};

pub struct EventRewriter {
    framer: Framer,
    failed: bool,
}

impl EventRewriter {
    pub fn new(max_event: usize) -> EventRewriter {
        EventRewriter { framer: Framer::new(max_event), failed: false }
    }

    /// The bytes to send in place of `chunk`: every event it completed, passed through
    /// `on_event`, and at the end of the stream whatever was held. After an event too large to
    /// hold, the rest of the stream is dropped: what could not be checked is not passed on.
    pub fn chunk(
        &mut self,
        chunk: &[u8],
        end: bool,
        mut on_event: impl FnMut(&[u8]) -> Vec<u8>,
    ) -> Result<Vec<u8>, EventTooLarge> {
        if self.failed {
            return Ok(Vec::new());
        }
        let events = match self.framer.push(chunk) {
            Ok(events) => events,
            Err(e) => {
                self.failed = true;
                return Err(e);
            }
        };
        let mut out = Vec::with_capacity(chunk.len());
        for event in events {
            out.extend(on_event(&event));
        }
        if end {
            let rest = self.framer.finish();
            if !rest.is_empty() {
                out.extend(on_event(&rest));
            }
        }
        Ok(out)
    }

    /// The stream ended without a last blank line and nothing more can be sent (the answer
    /// ended in trailers): forgets what was held; returns how many bytes that was.
    pub fn abandon(&mut self) -> usize {
        self.failed = true;
        self.framer.finish().len()
    }
}
