//! The BPE tokenizers, built in a VM the first time a prompt must be counted exactly, then
//! shared by every request of that VM.
//!
//! Most prompts never need them: a prompt is first reserved at an upper bound that costs no
//! tokenizer (see `request::ModelRequest::prompt_tokens_bound`), and counted exactly only when
//! that bound does not fit a budget. So a VM whose requests all fit keeps no vocabulary in
//! memory (each takes tens of megabytes, and Envoy runs one VM per worker and filter), and the
//! first request that needs one pays for building it (a one-time cost per VM and encoding).
//! Streamed answers are always counted exactly, so the first stream in a VM builds one too.

use super::config::Encoding;
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// How much an `estimate` count adds to the cl100k count, in percent.
pub const ESTIMATE_MARGIN_PERCENT: u64 = 25;

/// Each encoding is built on first use; `None` inside when building it failed (then text is
/// counted at its upper bound, one token per byte).
#[derive(Default)]
pub struct Tokenizers {
    o200k: OnceLock<Option<CoreBPE>>,
    cl100k: OnceLock<Option<CoreBPE>>,
}

impl std::fmt::Debug for Tokenizers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizers")
            .field("o200k_built", &self.o200k.get().is_some())
            .field("cl100k_built", &self.cl100k.get().is_some())
            .finish()
    }
}

impl Tokenizers {
    /// Whether `encoding`'s vocabulary has been built in this VM.
    pub fn built(&self, encoding: Encoding) -> bool {
        match encoding {
            Encoding::O200k => self.o200k.get().is_some(),
            Encoding::Cl100k | Encoding::Estimate => self.cl100k.get().is_some(),
        }
    }

    /// The tokenizer for `encoding` (an estimate is based on cl100k), built on first use.
    fn bpe(&self, encoding: Encoding) -> Option<&CoreBPE> {
        match encoding {
            Encoding::O200k => self.o200k.get_or_init(|| warmed(tiktoken_rs::o200k_base().ok())).as_ref(),
            Encoding::Cl100k | Encoding::Estimate => {
                self.cl100k.get_or_init(|| warmed(tiktoken_rs::cl100k_base().ok())).as_ref()
            }
        }
    }

    /// Tokens in `text` as plain text (special-token markers in it count as text, as the
    /// providers treat user content). Builds the encoding's tokenizer if this VM has not yet.
    pub fn count(&self, encoding: Encoding, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let n = match self.bpe(encoding) {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            // A tokenizer that could not be built: the upper bound, one token per byte.
            None => text.len() as u64,
        };
        match encoding {
            Encoding::Estimate => (n * (100 + ESTIMATE_MARGIN_PERCENT)).div_ceil(100),
            _ => n,
        }
    }
}

/// Encodes a sample of every kind of text once: the pre-tokenizer's regex builds its matching
/// state lazily, and the request that built the tokenizer would otherwise pay for it twice.
fn warmed(bpe: Option<CoreBPE>) -> Option<CoreBPE> {
    const SAMPLE: &str = r#"Warm-up: ASCII words, numbers 12345 and 3.14, punctuation (!?;:), code `fn f(x) { x + 1 }`,
            whitespace   	, contractions don't I'll, non-ASCII Grüße naïve café 東京 مرحبا 🤖, and JSON {"a":[1,2]}."#;
    if let Some(bpe) = &bpe {
        let _ = bpe.encode_ordinary(SAMPLE);
    }
    bpe
}
