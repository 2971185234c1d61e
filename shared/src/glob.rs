//! Name globs for servers, tools and methods: `*` matches any run of characters, `?` one.
//! Anything else matches itself, so tool names with dots or slashes need no escaping.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<char>,
    literal: bool,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob { pattern: pattern.chars().collect(), literal: !pattern.contains(['*', '?']) }
    }

    pub fn matches(&self, text: &str) -> bool {
        if self.literal {
            return self.pattern.iter().copied().eq(text.chars());
        }
        let text: Vec<char> = text.chars().collect();
        // Iterative matching with one backtrack point: linear in practice, never exponential.
        let (mut p, mut t) = (0, 0);
        let (mut star, mut resume) = (None, 0);
        while t < text.len() {
            match self.pattern.get(p) {
                Some('*') => {
                    star = Some(p);
                    resume = t;
                    p += 1;
                }
                Some(&c) if c == '?' || c == text[t] => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some(s) => {
                        p = s + 1;
                        resume += 1;
                        t = resume;
                    }
                    None => return false,
                },
            }
        }
        self.pattern[p..].iter().all(|&c| c == '*')
    }
}

/// A list of globs where an empty list matches everything.
#[derive(Debug, Clone, Default)]
pub struct GlobSet(Vec<Glob>);

impl GlobSet {
    pub fn new(patterns: &[String]) -> GlobSet {
        GlobSet(patterns.iter().map(|p| Glob::new(p)).collect())
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, text: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|g| g.matches(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_marks() {
        assert!(Glob::new("read_*").matches("read_file"));
        assert!(Glob::new("read_*").matches("read_"));
        assert!(!Glob::new("read_*").matches("rea"));
        assert!(Glob::new("*_file").matches("delete_file"));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
        assert!(Glob::new("?at").matches("cat"));
        assert!(Glob::new("notifications/*").matches("notifications/initialized"));
        assert!(Glob::new("exact").matches("exact"));
        assert!(!Glob::new("exact").matches("exactly"));
    }

    #[test]
    fn empty_set_matches_all() {
        assert!(GlobSet::new(&[]).matches("anything"));
        assert!(!GlobSet::new(&["x".into()]).matches("y"));
    }
}
