//! What each kind of provider needs on the wire: the path of each endpoint, the headers it
//! wants, where its credential goes, and whether a request reaches it as sent or translated.

use super::compile::Provider;
use super::config::ProviderKind;
use super::translate::Direction;

/// An endpoint agents call, under one of the router's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    Messages,
}

/// The family of API a caller speaks, which decides the shape of every answer Warden writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] =
        [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Embeddings, Endpoint::Messages];

    /// The endpoint a path names after the router's prefix (`chat/completions`, …).
    pub fn from_name(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
        }
    }

    pub fn shape(self) -> Shape {
        match self {
            Endpoint::Messages => Shape::Anthropic,
            _ => Shape::OpenAi,
        }
    }

    /// The model API whose error shape this endpoint's callers read.
    pub fn api(self) -> Option<crate::model_api::Api> {
        match self {
            Endpoint::Messages => Some(crate::model_api::Api::AnthropicMessages),
            _ => None,
        }
    }
}

/// How a provider of some kind can carry a request to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carriage {
    /// As the agent sent it (the model name aside).
    Native,
    /// Translated to the provider's API, and its answer back.
    Translated(Direction),
}

/// How a provider of `kind` carries a request to `endpoint`; `None` when it cannot (an
/// Anthropic provider has no Responses or Embeddings API). A target that cannot is dropped when
/// targets are chosen, never sent a request it would misread.
pub fn carriage(kind: ProviderKind, endpoint: Endpoint) -> Option<Carriage> {
    match (kind, endpoint) {
        (ProviderKind::Anthropic, Endpoint::Messages) => Some(Carriage::Native),
        (ProviderKind::Anthropic, Endpoint::ChatCompletions) => Some(Carriage::Translated(Direction::ChatToMessages)),
        (ProviderKind::Anthropic, _) => None,
        (_, Endpoint::Messages) => Some(Carriage::Translated(Direction::MessagesToChat)),
        _ => Some(Carriage::Native),
    }
}

/// The endpoint the provider is called at: the agent's, or its counterpart when translated.
pub fn provider_endpoint(endpoint: Endpoint, carriage: Carriage) -> Endpoint {
    match carriage {
        Carriage::Native => endpoint,
        Carriage::Translated(Direction::ChatToMessages) => Endpoint::Messages,
        Carriage::Translated(Direction::MessagesToChat) => Endpoint::ChatCompletions,
    }
}

/// The member an OpenAI-family provider reads the output cap from.
pub fn max_tokens_member(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Openai | ProviderKind::AzureOpenai => "max_completion_tokens",
        // Self-hosted servers (vLLM, Ollama, TGI) read the older name.
        _ => "max_tokens",
    }
}

/// The body an attempt sends: the agent's with the target's model, or translated.
pub fn attempt_body(
    body: &[u8],
    kind: ProviderKind,
    carriage: Carriage,
    model: &str,
) -> Result<Vec<u8>, super::translate::Unsupported> {
    match carriage {
        Carriage::Native => {
            super::request::with_model(body, model).map_err(|e| super::translate::Unsupported::member(e.to_string()))
        }
        Carriage::Translated(Direction::ChatToMessages) => super::translate::request::chat_to_messages(body, model),
        Carriage::Translated(Direction::MessagesToChat) => {
            super::translate::request::messages_to_chat(body, model, max_tokens_member(kind))
        }
    }
}

/// The path an attempt is sent to. The caller's query is dropped: nothing an agent adds to the
/// URL (an `api-version`, a deployment) reaches a provider.
pub fn upstream_path(provider: &Provider, endpoint: Endpoint, model: &str) -> String {
    let base = provider.base_path.trim_end_matches('/');
    match provider.kind {
        ProviderKind::AzureOpenai => format!(
            "{base}/deployments/{model}/{}?api-version={}",
            endpoint.name(),
            provider.api_version.as_deref().unwrap_or_default()
        ),
        _ => format!("{base}/{}", endpoint.name()),
    }
}

/// Every header a credential may travel in, to any provider kind: all are removed from each
/// attempt before its own provider's credential is added.
pub const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "x-api-key", "api-key"];

/// The header a provider of `kind` reads its credential from, and its value for `secret`.
pub fn credential_header(kind: ProviderKind, secret: &str) -> (&'static str, String) {
    match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => ("authorization", format!("Bearer {secret}")),
        ProviderKind::AzureOpenai => ("api-key", secret.to_string()),
        ProviderKind::Anthropic => ("x-api-key", secret.to_string()),
    }
}

/// Anthropic's API version when the policy names none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Headers a provider's API requires on every request.
pub fn api_headers(provider: &Provider) -> Vec<(&'static str, String)> {
    match provider.kind {
        ProviderKind::Anthropic => vec![(
            "anthropic-version",
            provider.api_version.clone().unwrap_or_else(|| DEFAULT_ANTHROPIC_VERSION.to_string()),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(kind: ProviderKind, base: &str, version: Option<&str>) -> Provider {
        Provider {
            name: "p".into(),
            kind,
            cluster: "c".into(),
            base_path: base.into(),
            api_version: version.map(String::from),
            private: false,
            credential: None,
        }
    }

    #[test]
    fn each_kind_has_its_path() {
        let azure = provider(ProviderKind::AzureOpenai, "/openai", Some("2024-10-21"));
        assert_eq!(
            upstream_path(&azure, Endpoint::ChatCompletions, "gpt-4o-prod"),
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        let openai = provider(ProviderKind::Openai, "/v1/", None);
        assert_eq!(upstream_path(&openai, Endpoint::Embeddings, "m"), "/v1/embeddings");
        let anthropic = provider(ProviderKind::Anthropic, "/v1", None);
        assert_eq!(upstream_path(&anthropic, Endpoint::Messages, "m"), "/v1/messages");
        assert_eq!(api_headers(&anthropic), vec![("anthropic-version", DEFAULT_ANTHROPIC_VERSION.to_string())]);
    }

    #[test]
    fn kinds_carry_their_own_shape_and_translate_the_other() {
        assert_eq!(carriage(ProviderKind::Anthropic, Endpoint::Messages), Some(Carriage::Native));
        assert_eq!(
            carriage(ProviderKind::Anthropic, Endpoint::ChatCompletions),
            Some(Carriage::Translated(Direction::ChatToMessages))
        );
        assert_eq!(carriage(ProviderKind::Anthropic, Endpoint::Embeddings), None);
        assert_eq!(carriage(ProviderKind::Anthropic, Endpoint::Responses), None);
        assert_eq!(carriage(ProviderKind::OpenaiCompatible, Endpoint::Embeddings), Some(Carriage::Native));
        assert_eq!(
            carriage(ProviderKind::AzureOpenai, Endpoint::Messages),
            Some(Carriage::Translated(Direction::MessagesToChat))
        );
    }
}
