//! OpenAI Chat Completions / Responses and Anthropic Messages requests: counting never panics,
//! and a body the strict reader accepts re-serialises, after Warden's edits, to a document the
//! reader accepts again with the edits in it and nothing else changed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;
use warden_policy::budget::config::Encoding;
use warden_policy::budget::request::{Edits, ModelRequest};
use warden_policy::budget::tokenizer::Tokenizers;
use warden_policy::model_api::Api;

fn tokenizers() -> &'static Tokenizers {
    static T: OnceLock<Tokenizers> = OnceLock::new();
    T.get_or_init(Tokenizers::default)
}

fuzz_target!(|data: &[u8]| {
    for api in [Api::ChatCompletions, Api::Responses, Api::AnthropicMessages] {
        let Ok(request) = ModelRequest::parse(api, data) else { continue };
        let _ = request.prompt_tokens(tokenizers(), Encoding::O200k);
        let edits =
            Edits { model: Some("fuzz-model".into()), include_usage: api == Api::ChatCompletions, max_output: Some(7) };
        let rewritten = request.rewrite(&edits).expect("an accepted body can be rewritten");
        let again = ModelRequest::parse(api, &rewritten).expect("the rewrite is accepted again");
        assert_eq!(again.model, "fuzz-model");
        assert_eq!(again.stream, request.stream);
        assert_eq!(again.choices, request.choices);
        assert!(again.max_output >= Some(7));
        let before: Value = serde_json::from_slice(data).expect("accepted bodies are JSON");
        let after: Value = serde_json::from_slice(&rewritten).expect("rewrites are JSON");
        for (key, value) in before.as_object().expect("an object") {
            if !["model", "stream_options", request.cap_member()].contains(&key.as_str()) {
                assert_eq!(after.get(key), Some(value), "{key} is kept as it was");
            }
        }
    }
});
