//! File paths in tool arguments, put in the one form a file system reads them in.
//!
//! A regex over the text a client sent cannot stand for a path rule: `/srv/../etc/shadow`
//! starts with `/srv/`, `//etc/shadow` and `/./etc/shadow` do not start with `/etc/`, yet each
//! opens `/etc/shadow`. Constraints therefore compare normalised paths: dot segments resolved
//! (`..` at the root stays at the root, as POSIX says), repeated separators collapsed, and `\`
//! read as a separator too (a server on Windows, or one that converts, reads it so; on POSIX it
//! only makes the check stricter). Symbolic links cannot be seen from the gateway: a rule about
//! a directory holds for the names under it, not for where a link inside it points.

/// The normalised form of an absolute path; `None` for anything that is not one (relative
/// paths, `~`, URIs, drive letters, control characters): such a value cannot be placed.
pub fn normalize(path: &str) -> Option<String> {
    if !(path.starts_with('/') || path.starts_with('\\')) || path.chars().any(char::is_control) {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for segment in path.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether the normalised `path` is `dir` (normalised too) or inside it.
pub fn within(path: &str, dir: &str) -> bool {
    dir == "/" || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_repeated_separators_are_resolved() {
        let cases = [
            ("/srv/../etc/shadow", "/etc/shadow"),
            ("//etc/shadow", "/etc/shadow"),
            ("/./etc/./shadow", "/etc/shadow"),
            ("/srv/a/../../etc//passwd/", "/etc/passwd"),
            ("/../../etc", "/etc"),
            ("\\etc\\shadow", "/etc/shadow"),
            ("/srv/notes.txt", "/srv/notes.txt"),
            ("/", "/"),
            ("/srv/..", "/"),
            ("/srv/...", "/srv/..."),
        ];
        for (raw, normal) in cases {
            assert_eq!(normalize(raw).as_deref(), Some(normal), "{raw}");
        }
        for not_absolute in ["etc/shadow", "../etc", "~/.ssh/id_rsa", "file:///etc/shadow", "C:\\x", "", "/a\0b"] {
            assert_eq!(normalize(not_absolute), None, "{not_absolute:?}");
        }
    }

    #[test]
    fn within_means_the_directory_or_below() {
        assert!(within("/etc", "/etc"));
        assert!(within("/etc/shadow", "/etc"));
        assert!(!within("/etcetera", "/etc"));
        assert!(within("/anything", "/"));
    }
}
