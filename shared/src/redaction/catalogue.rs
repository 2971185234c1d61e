//! The built-in detectors: one stable class name each, the pattern written from the format's
//! public definition, and the rule that confirms a match ([`Check`]). Every pattern is ASCII
//! and bounded, so a stream never holds back more than the longest match; the three formats
//! with no natural end (JWTs, PEM blocks, secrets assigned in config) are *open*: a short
//! opening marker, then a value read up to its end or a cap.
//!
//! References for which formats matter (patterns written here, not copied): gitleaks (MIT),
//! detect-secrets (Apache-2.0), Presidio (MIT), and each vendor's documented key format.

use super::checks::Check;

/// What a finding is, for routing (`router.rules[].dataClasses` names either the class or its
/// category) and for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    Pii,
    Secret,
    Custom,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Pii => "pii",
            Category::Secret => "secret",
            Category::Custom => "custom",
        }
    }
}

/// How a detector's match ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The pattern is the whole match; its longest match is bounded.
    Bounded,
    /// The pattern is an opening marker; the value goes on while its bytes are in `charset`, or
    /// up to and including the first match of `until`. Past `cap` bytes it is redacted unseen.
    Open { end: OpenEnd, cap: usize, value_from_marker_end: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenEnd {
    WhileIn(&'static str),
    Until(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub class: &'static str,
    pub category: Category,
    /// A named group `v`, when present, is the part redacted (`AccountKey=` stays readable).
    pub pattern: &'static str,
    pub check: Check,
    pub shape: Shape,
}

const B64URL_DOT: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
const TOKEN68: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=";
const SECRET_VALUE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=!@#$%^*";

pub const BUILTINS: &[Builtin] = &[
    Builtin {
        class: "email",
        // A local part starts with a letter, digit or `_` (as every address in use does).
        category: Category::Pii,
        pattern: r"[A-Za-z0-9_][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.){1,4}[A-Za-z]{2,24}",
        check: Check::Email,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "phone",
        category: Category::Pii,
        // E.164; NANP (US), with its area code in parentheses or not; national numbers with a
        // trunk 0 (UK, DE, FR); Indian mobiles. Each branch that starts with a digit can be found
        // only at the start of a number (see the scanner).
        pattern: r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-]?[0-9]{4}|[2-9][0-9]{2}[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}|0[1-9][0-9]{0,4}(?:[ /.-]?[0-9]{2,8}){1,4}|[6-9][0-9]{4}[ -]?[0-9]{5}",
        check: Check::Phone,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "payment_card",
        category: Category::Pii,
        pattern: r"[2-6][0-9]{3}(?:[ -]?[0-9]{4}){2,3}(?:[ -]?[0-9]{1,3})?|3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}",
        check: Check::Card,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "iban",
        category: Category::Pii,
        pattern: r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?",
        check: Check::Iban,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "us_ssn",
        category: Category::Pii,
        pattern: r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}",
        check: Check::UsSsn,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "ipv4",
        category: Category::Pii,
        pattern: r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}",
        check: Check::Ipv4,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "ipv6",
        category: Category::Pii,
        pattern: r"(?:[0-9A-Fa-f]{1,4}:){1,7}(?::[0-9A-Fa-f]{1,4}){1,7}|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4}",
        check: Check::Ipv6,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "aws_access_key",
        category: Category::Secret,
        pattern: r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "aws_secret_key",
        category: Category::Secret,
        pattern: r#"(?i:aws_?secret_?access_?key|aws_?secret_?key)["']?[ \t]{0,3}[:=][ \t]{0,3}["']?(?P<v>[A-Za-z0-9/+]{40})"#,
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "gcp_api_key",
        category: Category::Secret,
        pattern: r"AIza[0-9A-Za-z_-]{35}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "gcp_service_account_key",
        category: Category::Secret,
        pattern: r#""private_key_id"[ \t]{0,3}:[ \t]{0,3}"(?P<v>[0-9a-f]{40})""#,
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "azure_storage_key",
        category: Category::Secret,
        pattern: r"AccountKey=(?P<v>[A-Za-z0-9+/]{86}==)",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "azure_client_secret",
        category: Category::Secret,
        pattern: r"[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "github_token",
        category: Category::Secret,
        pattern: r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "gitlab_token",
        category: Category::Secret,
        pattern: r"glpat-[A-Za-z0-9_-]{20}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "slack_token",
        category: Category::Secret,
        pattern: r"xox[abposr]-[A-Za-z0-9-]{10,100}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "slack_webhook",
        category: Category::Secret,
        pattern: r"https://hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "stripe_key",
        category: Category::Secret,
        pattern: r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,99}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "openai_key",
        category: Category::Secret,
        pattern: r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "anthropic_key",
        category: Category::Secret,
        pattern: r"sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,120}",
        check: Check::None,
        shape: Shape::Bounded,
    },
    Builtin {
        class: "jwt",
        category: Category::Secret,
        pattern: r"eyJ[A-Za-z0-9_-]{8}",
        check: Check::Jwt,
        shape: Shape::Open { end: OpenEnd::WhileIn(B64URL_DOT), cap: 16 * 1024, value_from_marker_end: false },
    },
    Builtin {
        class: "pem_private_key",
        category: Category::Secret,
        pattern: r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----",
        check: Check::None,
        shape: Shape::Open { end: OpenEnd::Until(PEM_END), cap: 16 * 1024, value_from_marker_end: false },
    },
    Builtin {
        class: "bearer_token",
        category: Category::Secret,
        pattern: r"(?i:bearer)[ \t]{1,3}",
        check: Check::Entropy,
        shape: Shape::Open { end: OpenEnd::WhileIn(TOKEN68), cap: 4096, value_from_marker_end: true },
    },
    Builtin {
        class: "generic_secret",
        category: Category::Secret,
        pattern: r#"(?i:api[_-]?key|secret[_-]?key|client[_-]?secret|access[_-]?token|auth[_-]?token|private[_-]?token|password|passwd|secret|token)["']?[ \t]{0,3}[:=][ \t]{0,3}["']?"#,
        check: Check::Entropy,
        shape: Shape::Open { end: OpenEnd::WhileIn(SECRET_VALUE), cap: 1024, value_from_marker_end: true },
    },
];

const PEM_END: &str = r"-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----";

/// The placeholder a request's value was replaced with, found in answers to be restored:
/// `⟦EMAIL_1⟧`.
pub const PLACEHOLDER_PATTERN: &str = r"⟦[A-Z0-9_]{1,40}_[0-9]{1,6}⟧";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_unique() {
        let mut names: Vec<_> = BUILTINS.iter().map(|b| b.class).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BUILTINS.len());
    }
}
