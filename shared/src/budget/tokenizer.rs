//! The BPE tokenizers, built once per VM when the policy is loaded (building o200k takes
//! longer than any request may wait), then shared by every request of that VM.

use super::config::Encoding;
use tiktoken_rs::CoreBPE;

/// How much an `estimate` count adds to the cl100k count, in percent.
pub const ESTIMATE_MARGIN_PERCENT: u64 = 25;

pub struct Tokenizers {
    o200k: Option<CoreBPE>,
    cl100k: Option<CoreBPE>,
}

impl std::fmt::Debug for Tokenizers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizers")
            .field("o200k", &self.o200k.is_some())
            .field("cl100k", &self.cl100k.is_some())
            .finish()
    }
}

impl Tokenizers {
    /// Builds the tokenizers `encodings` need (an estimate is based on cl100k).
    pub fn load(encodings: &[Encoding]) -> Result<Tokenizers, String> {
        let wants = |e: Encoding| encodings.contains(&e);
        let o200k = if wants(Encoding::O200k) {
            Some(tiktoken_rs::o200k_base().map_err(|e| format!("cannot build the o200k tokenizer: {e}"))?)
        } else {
            None
        };
        let cl100k = if wants(Encoding::Cl100k) || wants(Encoding::Estimate) {
            Some(tiktoken_rs::cl100k_base().map_err(|e| format!("cannot build the cl100k tokenizer: {e}"))?)
        } else {
            None
        };
        let tokenizers = Tokenizers { o200k, cl100k };
        tokenizers.warm_up();
        Ok(tokenizers)
    }

    /// Encodes a sample of every kind of text once: the pre-tokenizer's regex builds its
    /// matching state lazily, and the first request would otherwise pay for it.
    fn warm_up(&self) {
        const SAMPLE: &str = r#"Warm-up: ASCII words, numbers 12345 and 3.14, punctuation (!?;:), code `fn f(x) { x + 1 }`,
            whitespace   	, contractions don't I'll, non-ASCII Grüße naïve café 東京 مرحبا 🤖, and JSON {"a":[1,2]}."#;
        for bpe in [&self.o200k, &self.cl100k].into_iter().flatten() {
            let _ = bpe.encode_ordinary(SAMPLE);
        }
    }

    /// Tokens in `text` as plain text (special-token markers in it count as text, as the
    /// providers treat user content). An encoding that was not loaded counts with the other
    /// one, never zero.
    pub fn count(&self, encoding: Encoding, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let (primary, other) = match encoding {
            Encoding::O200k => (&self.o200k, &self.cl100k),
            Encoding::Cl100k | Encoding::Estimate => (&self.cl100k, &self.o200k),
        };
        let bpe = primary.as_ref().or(other.as_ref());
        let n = match bpe {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            // No tokenizer at all: about four bytes a token, rounded up.
            None => (text.len() as u64).div_ceil(4),
        };
        match encoding {
            Encoding::Estimate => (n * (100 + ESTIMATE_MARGIN_PERCENT)).div_ceil(100),
            _ => n,
        }
    }
}
