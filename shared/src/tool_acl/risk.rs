//! Risk classes of tools: read, write, destructive.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Risk {
    Read,
    Write,
    Destructive,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Destructive => "destructive",
        }
    }

    pub fn parse(text: &str) -> Option<Risk> {
        match text {
            "read" => Some(Risk::Read),
            "write" => Some(Risk::Write),
            "destructive" => Some(Risk::Destructive),
            _ => None,
        }
    }

    /// The class a server claims for a tool through its MCP annotations, believed only for
    /// servers the policy trusts. Per the MCP spec `destructiveHint` defaults to true when
    /// `readOnlyHint` is false, so a write tool is destructive unless it says otherwise.
    pub fn from_annotations(read_only: Option<bool>, destructive: Option<bool>) -> Option<Risk> {
        match (read_only, destructive) {
            (Some(true), _) => Some(Risk::Read),
            (Some(false), Some(false)) => Some(Risk::Write),
            (Some(false), _) | (None, Some(true)) => Some(Risk::Destructive),
            (None, Some(false)) => Some(Risk::Write),
            (None, None) => None,
        }
    }

    pub fn is_mutating(self) -> bool {
        self != Risk::Read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_follow_the_mcp_defaults() {
        assert_eq!(Risk::from_annotations(Some(true), Some(true)), Some(Risk::Read));
        assert_eq!(Risk::from_annotations(Some(false), None), Some(Risk::Destructive));
        assert_eq!(Risk::from_annotations(Some(false), Some(false)), Some(Risk::Write));
        assert_eq!(Risk::from_annotations(None, None), None);
    }
}
