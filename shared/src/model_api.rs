//! Which model API a request path speaks, for every filter that reads model traffic.
//!
//! A policy names the paths that are model APIs: exact paths, or prefixes ending in `/`. Under
//! a prefix, the rest of the path must be exactly one API's endpoint (`chat/completions`,
//! `responses`, `messages`); anything else under it (`completions`, `assistants`, `batches`,
//! `embeddings`, an encoded or unknown name) is a model route whose body Warden cannot read,
//! and each filter says what it does with that. A path outside every configured one is not
//! model traffic at all: an MCP server's `/mcp/x/messages` is never read as Anthropic Messages.

/// A model API Warden reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Responses,
    AnthropicMessages,
}

impl Api {
    /// The API an endpoint path ends with (`…/chat/completions`, `…/responses`,
    /// `…/messages`), ignoring the query; for paths a policy names exactly, and for mocks.
    pub fn from_path(path: &str) -> Option<Api> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Api::ChatCompletions)
        } else if path.ends_with("/responses") {
            Some(Api::Responses)
        } else if path.ends_with("/messages") {
            Some(Api::AnthropicMessages)
        } else {
            None
        }
    }

    /// The API whose endpoint is exactly `rest` (what follows a configured prefix).
    fn from_endpoint(rest: &str) -> Option<Api> {
        match rest {
            "chat/completions" => Some(Api::ChatCompletions),
            "responses" => Some(Api::Responses),
            "messages" => Some(Api::AnthropicMessages),
            _ => None,
        }
    }
}

/// What a request path is, for a filter that reads model traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Not a model path of this policy.
    Other,
    /// A model API Warden reads.
    Api(Api),
    /// A model path whose API Warden cannot read.
    Unreadable,
    /// A model endpoint that generates nothing (counting a prompt's tokens).
    Free,
}

/// Endpoints that only count a prompt's tokens: nothing is generated or billed.
const FREE_ENDPOINTS: [&str; 2] = ["messages/count_tokens", "responses/input_tokens"];

/// The model paths a policy names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPaths {
    paths: Vec<String>,
}

impl ModelPaths {
    /// `paths` are checked by the policy's compile step (each starts with `/`).
    pub fn new(paths: &[String]) -> ModelPaths {
        ModelPaths { paths: paths.to_vec() }
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The endpoint a path names under one of these paths (`chat/completions` for
    /// `/v1/chat/completions` under `/v1/`), without the query; `None` outside every path. An
    /// exact path names the endpoint it ends with.
    pub fn endpoint<'p>(&self, path: &'p str) -> Option<&'p str> {
        let path = path.split('?').next().unwrap_or(path);
        for configured in &self.paths {
            if let Some(prefix) = configured.strip_suffix('/') {
                let Some(rest) = path.strip_prefix(prefix) else { continue };
                if rest.is_empty() || rest.starts_with('/') {
                    return Some(rest.trim_start_matches('/').trim_end_matches('/'));
                }
            } else if path.trim_end_matches('/') == configured.trim_end_matches('/') {
                let endpoint = path.trim_end_matches('/');
                return Some(
                    ["chat/completions", "responses", "messages", "embeddings"]
                        .into_iter()
                        .find(|e| endpoint.ends_with(&format!("/{e}")))
                        .map_or("", |e| &endpoint[endpoint.len() - e.len()..]),
                );
            }
        }
        None
    }

    pub fn classify(&self, path: &str) -> Route {
        match self.endpoint(path) {
            None => Route::Other,
            Some(endpoint) if FREE_ENDPOINTS.contains(&endpoint) => Route::Free,
            Some(endpoint) => Api::from_endpoint(endpoint).map_or(Route::Unreadable, Route::Api),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_prefix_are_an_api_or_unreadable() {
        let paths = ModelPaths::new(&["/v1/".to_string(), "/anthropic/v1/messages".to_string()]);
        assert_eq!(paths.classify("/v1/chat/completions"), Route::Api(Api::ChatCompletions));
        assert_eq!(paths.classify("/v1/chat/completions?x=1"), Route::Api(Api::ChatCompletions));
        assert_eq!(paths.classify("/v1/responses"), Route::Api(Api::Responses));
        assert_eq!(paths.classify("/v1/messages"), Route::Api(Api::AnthropicMessages));
        assert_eq!(paths.classify("/anthropic/v1/messages"), Route::Api(Api::AnthropicMessages));
        for unreadable in ["/v1/completions", "/v1/assistants", "/v1/batches", "/v1/chat/%63ompletions", "/v1/", "/v1"]
        {
            assert_eq!(paths.classify(unreadable), Route::Unreadable, "{unreadable}");
        }
        assert_eq!(paths.classify("/v1/messages/count_tokens"), Route::Free);
        for other in ["/mcp/files/messages", "/v10/chat/completions", "/", "/anthropic/v1/messages/x"] {
            assert_eq!(paths.classify(other), Route::Other, "{other}");
        }
    }
}
