//! `Content-Encoding`: Warden reads bodies as sent, so an encoded one is never read blind.
//!
//! A request body with any encoding but `identity` is refused (in the caller's protocol) rather
//! than read as bytes that mean something else to the server. Upstreams are asked for
//! `accept-encoding: identity` on governed routes; an answer that is encoded anyway is
//! withheld or failed closed by the filter that must read it.

/// The header the filters set on governed requests, and its value.
pub const ACCEPT_ENCODING: &str = "accept-encoding";
pub const IDENTITY: &str = "identity";

/// The encodings `values` (every `Content-Encoding` header of a message) name other than
/// `identity`, joined for a message; `None` when the body is as sent.
pub fn non_identity<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let encodings: Vec<&str> = values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case(IDENTITY))
        .collect();
    (!encodings.is_empty()).then(|| encodings.join(", "))
}

/// The encoding of a request, from all its headers.
pub fn of_request(headers: &[(String, String)]) -> Option<String> {
    non_identity(headers.iter().filter(|(k, _)| k == "content-encoding").map(|(_, v)| v.as_str()))
}

/// Why an encoded request is refused, for the caller.
pub fn refusal_message(encoding: &str) -> String {
    format!(
        "the request body is encoded (Content-Encoding: {encoding}); Warden checks bodies as sent and cannot read an \
         encoded one: send it without a Content-Encoding"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identity_leaves_a_body_as_sent() {
        assert_eq!(non_identity([]), None);
        assert_eq!(non_identity(["identity"]), None);
        assert_eq!(non_identity([" Identity "]), None);
        assert_eq!(non_identity(["gzip"]).as_deref(), Some("gzip"));
        assert_eq!(non_identity(["identity, br"]).as_deref(), Some("br"));
        assert_eq!(non_identity(["identity", "deflate"]).as_deref(), Some("deflate"));
        let headers = vec![("content-encoding".to_string(), "zstd".to_string())];
        assert_eq!(of_request(&headers).as_deref(), Some("zstd"));
    }
}
