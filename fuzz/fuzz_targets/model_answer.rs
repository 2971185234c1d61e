//! Model answers, JSON and streamed: reading usage never panics, and a stream metered in two
//! chunks gives the same bytes and the same usage as in one, for every API.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_policy::budget::config::Encoding;
use warden_policy::budget::tokenizer::Tokenizers;
use warden_policy::budget::usage::{from_json, StreamMeter};
use warden_policy::model_api::Api;

fn tokenizers() -> &'static Tokenizers {
    static T: OnceLock<Tokenizers> = OnceLock::new();
    T.get_or_init(Tokenizers::default)
}

fn meter(api: Api, parts: &[&[u8]]) -> (Vec<u8>, u64, bool) {
    let mut m = StreamMeter::new(api, Encoding::O200k, true, Some(64), 4096);
    let cut = || "cut".to_string();
    let mut out = Vec::new();
    for part in parts {
        out.extend(m.push(part, tokenizers(), &cut));
    }
    out.extend(m.finish(tokenizers(), &cut));
    (out, m.counted_output, m.cut)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    for api in [Api::ChatCompletions, Api::Responses, Api::AnthropicMessages] {
        let _ = from_json(api, body);
        let at = usize::from(cut) % (body.len() + 1);
        let whole = meter(api, &[body]);
        // An oversized event may be seen whole in one chunk and held back in two: only then
        // may the two differ.
        if body.len() <= 4096 {
            assert_eq!(whole, meter(api, &[&body[..at], &body[at..]]), "split at {at}");
        }
    }
});
