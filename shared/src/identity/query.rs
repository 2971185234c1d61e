//! The one query-string parameter the identity filter knows about: an agent token, read from
//! the `:path` only when the policy names the parameter, and removed before the request goes
//! upstream. Both use the same rule for which pairs are "the parameter".

/// The `name=value` or bare `name` pairs of `query` are the parameter `name`.
fn is_named(pair: &str, name: &str) -> bool {
    pair.split_once('=').map_or(pair, |(key, _)| key) == name
}

/// The value of the first `name=value` parameter in `path`'s query (a bare `name` has none).
pub fn find<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query.split('&').filter(|pair| is_named(pair, name)).find_map(|pair| pair.split_once('=')).map(|(_, value)| value)
}

/// `path` without every `name` parameter, or `None` when it has none.
pub fn without(path: &str, name: &str) -> Option<String> {
    let (base, query) = path.split_once('?')?;
    if !query.split('&').any(|pair| is_named(pair, name)) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !is_named(pair, name)).collect();
    Some(if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_named_value() {
        assert_eq!(find("/a?x=1&access_token=t&access_token=u", "access_token"), Some("t"));
        assert_eq!(find("/a?access_token&access_token=u", "access_token"), Some("u"));
        assert_eq!(find("/a?access_token_old=t", "access_token"), None);
        assert_eq!(find("/a", "access_token"), None);
    }

    #[test]
    fn removes_only_the_named_parameter() {
        assert_eq!(without("/a?access_token=x&b=1", "access_token").as_deref(), Some("/a?b=1"));
        assert_eq!(without("/a?b=1&access_token=x", "access_token").as_deref(), Some("/a?b=1"));
        assert_eq!(without("/a?access_token=x", "access_token").as_deref(), Some("/a"));
        assert_eq!(without("/a?access_token_old=x", "access_token"), None);
        assert_eq!(without("/a", "access_token"), None);
    }
}
