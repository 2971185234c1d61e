//! Envoy's `/stats/prometheus` text, read back: every series with its labels and value.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the text exposition format (comments skipped; label values unescaped).
pub fn parse(text: &str) -> Vec<Series> {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(series).collect()
}

fn series(line: &str) -> Option<Series> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some(Series { name: head.to_string(), labels: BTreeMap::new(), value });
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(match chars.next()? {
                    'n' => '\n',
                    other => other,
                }),
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Series { name: name.to_string(), labels, value })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_labels_and_values() {
        let text = "# TYPE a counter\na{} 1\nb{x=\"1\",y=\"q\\\"z\"} 2.5\nc 3\n";
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].name, "b");
        assert_eq!(s[1].labels["y"], "q\"z");
        assert_eq!(s[1].value, 2.5);
        assert_eq!(s[2].name, "c");
    }
}
