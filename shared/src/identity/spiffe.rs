//! SPIFFE IDs from the mTLS peer certificate's URI SAN.

/// Returns the ID when it is a well-formed SPIFFE ID in one of `trust_domains`.
/// Form: `spiffe://<trust domain>/<path>`, lowercase trust domain, non-empty path, no query,
/// fragment, dot segments or empty segments (the SPIFFE ID specification).
pub fn trusted_id<'a>(uri_san: &'a str, trust_domains: &[String]) -> Option<&'a str> {
    let rest = uri_san.strip_prefix("spiffe://")?;
    let (domain, path) = rest.split_once('/')?;
    let domain_ok = !domain.is_empty()
        && domain.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    let path_ok = !path.is_empty()
        && path.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b));
    (domain_ok && path_ok && trust_domains.iter().any(|d| d == domain)).then_some(uri_san)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["warden.test".to_string()]
    }

    #[test]
    fn accepts_ids_in_trusted_domains() {
        assert_eq!(
            trusted_id("spiffe://warden.test/ns/agents/sa/planner", &domains()),
            Some("spiffe://warden.test/ns/agents/sa/planner")
        );
    }

    #[test]
    fn refuses_other_domains_and_malformed_ids() {
        for bad in [
            "spiffe://evil.test/ns/agents/sa/planner",
            "spiffe://warden.test",
            "spiffe://warden.test/",
            "spiffe://warden.test/a//b",
            "spiffe://warden.test/a/../b",
            "spiffe://WARDEN.test/a",
            "spiffe://warden.test/a?x=1",
            "https://warden.test/a",
        ] {
            assert_eq!(trusted_id(bad, &domains()), None, "{bad}");
        }
    }
}
