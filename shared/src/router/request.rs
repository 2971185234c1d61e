//! What the router reads of a request body, and the one edit it makes: the model an attempt
//! asks its provider for. Bodies are read with the strict reader (a member twice is refused:
//! one parser would route by one `model`, the provider serve the other).

use crate::strict_json::StrictObject;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is not a JSON object: {0}")]
    Malformed(String),
    #[error("the request names no model")]
    NoModel,
    #[error("`{0}` has the wrong type")]
    WrongType(&'static str),
}

/// The members of a request that choose its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedRequest {
    /// What the agent asked for: an alias of the policy.
    pub alias: String,
    pub stream: bool,
}

impl RoutedRequest {
    pub fn parse(body: &[u8]) -> Result<RoutedRequest, BodyError> {
        Self::read(&parse_object(body)?)
    }

    /// The members of an object already parsed (the router parses a body once).
    pub fn read(object: &StrictObject<'_>) -> Result<RoutedRequest, BodyError> {
        let alias: String =
            object.get("model").map_err(|_| BodyError::WrongType("model"))?.ok_or(BodyError::NoModel)?;
        if alias.is_empty() {
            return Err(BodyError::NoModel);
        }
        let stream = object
            .get::<Option<bool>>("stream")
            .map_err(|_| BodyError::WrongType("stream"))?
            .flatten()
            .unwrap_or(false);
        Ok(RoutedRequest { alias, stream })
    }
}

/// A request body as one JSON object, a member twice refused.
pub fn parse_object(body: &[u8]) -> Result<StrictObject<'_>, BodyError> {
    StrictObject::parse(body).map_err(|e| BodyError::Malformed(e.to_string()))
}

/// `body` with its top-level `model` set to `model`, every other member as it was, in order.
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, BodyError> {
    object_with_model(&parse_object(body)?, body.len(), model)
}

/// An object already parsed (from a body of `size` bytes), written back with `model`.
pub fn object_with_model(object: &StrictObject<'_>, size: usize, model: &str) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(size + model.len());
    out.push(b'{');
    for (i, (key, value)) in object.members().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Keys came from valid JSON: quoting through serde keeps their escapes right.
        serde_json::to_writer(&mut out, key.as_ref()).map_err(|e| BodyError::Malformed(e.to_string()))?;
        out.push(b':');
        if key == "model" {
            serde_json::to_writer(&mut out, model).map_err(|e| BodyError::Malformed(e.to_string()))?;
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_alias_and_whether_it_streams() {
        let r = RoutedRequest::parse(br#"{"model":"fast","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(r, RoutedRequest { alias: "fast".into(), stream: true });
        assert_eq!(RoutedRequest::parse(br#"{"messages":[]}"#), Err(BodyError::NoModel));
        assert_eq!(RoutedRequest::parse(br#"{"model":7}"#), Err(BodyError::WrongType("model")));
        assert!(matches!(RoutedRequest::parse(br#"{"model":"a","model":"b"}"#), Err(BodyError::Malformed(_))));
        assert!(matches!(RoutedRequest::parse(b"\xEF\xBB\xBF{\"model\":\"a\"}"), Err(BodyError::Malformed(_))));
    }

    #[test]
    fn only_the_model_changes() {
        let body = br#"{"messages":[{"role":"user","content":"model \"x\""}],"model":"fast","n":1}"#;
        let out = with_model(body, "gpt-4o \"mini\"").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"messages":[{"role":"user","content":"model \"x\""}],"model":"gpt-4o \"mini\"","n":1}"#
        );
    }
}
