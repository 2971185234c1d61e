//! The confidence rules that turn a pattern's match into a finding: checksums (Luhn, IBAN
//! mod-97), the range of each field (IP addresses, SSN areas), randomness (Shannon entropy)
//! and the neighbours of the match (a card number inside a longer run of digits is not a card).

use base64::Engine;

/// What a pattern's match must also satisfy to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The pattern is specific enough alone (a fixed prefix and length).
    None,
    Email,
    Phone,
    Card,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
    Jwt,
    /// A secret's value, from an assignment or a bearer header: long and random enough.
    Entropy,
}

/// Whether `hay[start..end]` is a finding. `hay` is the whole text seen so far, so the bytes
/// around the match can be looked at; the caller guarantees a byte after `end` exists unless
/// the text has ended.
pub fn holds(check: Check, hay: &str, start: usize, end: usize) -> bool {
    let found = &hay[start..end];
    // The letter of an escape (`\n`, `\t`, `\u0009`: JSON held in a string) ends a word as the
    // character it stands for would.
    let escaped = start >= 2 && hay.as_bytes()[start - 2] == b'\\' && b"nrtbf".contains(&hay.as_bytes()[start - 1]);
    let before = if escaped { Some(b' ') } else { hay[..start].bytes().next_back() };
    let after = hay[end..].bytes().next();
    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    match check {
        Check::None => !word(before) && !word(after),
        Check::Email => email(found, before, after),
        Check::Phone => {
            !word(before)
                && !word(after)
                && !joined_number(hay, start, end)
                && phone(found)
                && (!found.bytes().all(|b| b.is_ascii_digit()) || phone_context(hay, start))
        }
        Check::Card => !word(before) && !word(after) && !joined_number(hay, start, end) && card(found),
        Check::Iban => !word(before) && !word(after) && iban(found),
        Check::UsSsn => !word(before) && !word(after) && !joined_number(hay, start, end) && us_ssn(found),
        Check::Ipv4 => !word(before) && !word(after) && !joined_number(hay, start, end) && ipv4(found),
        Check::Ipv6 => !word(before) && !word(after) && before != Some(b':') && after != Some(b':') && ipv6(found),
        Check::Jwt => !word(before) && jwt(found),
        Check::Entropy => entropy_secret(found),
    }
}

/// How far before a bare run of digits a word saying it is a phone number is looked for.
pub const CONTEXT_BEFORE: usize = 32;

/// A bare run of digits (`4155552671`) is as often an id or an amount as a phone number: it is
/// one only after a word that says so (`call`, `tel:`, `phone`, `mobile`, …).
fn phone_context(hay: &str, start: usize) -> bool {
    const WORDS: [&str; 12] =
        ["phone", "call", "tel", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "contact", "reach", "telefon"];
    let from = start.saturating_sub(CONTEXT_BEFORE);
    let before = hay.as_bytes()[from..start].to_ascii_lowercase();
    WORDS.iter().any(|w| before.windows(w.len()).any(|window| window == w.as_bytes()))
}

/// A number that goes on past the match (`1.2.3.4.5`, `555-1234-99`) is another thing.
fn joined_number(hay: &str, start: usize, end: usize) -> bool {
    let bytes = hay.as_bytes();
    let digit_at = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    let joins = |b: u8| matches!(b, b'.' | b'-' | b'/');
    (start >= 2 && joins(bytes[start - 1]) && digit_at(start - 2))
        || (bytes.get(end).is_some_and(|b| joins(*b)) && digit_at(end + 1))
}

fn digits(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.bytes().filter(u8::is_ascii_digit).map(|b| u32::from(b - b'0'))
}

fn email(found: &str, before: Option<u8>, after: Option<u8>) -> bool {
    let local_char = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let Some((local, domain)) = found.split_once('@') else { return false };
    !before.is_some_and(local_char)
        && !after.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.split('.').all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
}

fn phone(found: &str) -> bool {
    let count = digits(found).count();
    // An E.164 number has at most 15 digits; national formats at least 9 (with the trunk 0).
    // Separators are one kind at a time, as people write them.
    // `(415) 555-2671`: the space after an area code in parentheses is not a separator.
    let bytes = found.as_bytes();
    let separators: Vec<u8> = (0..bytes.len())
        .filter(|&i| matches!(bytes[i], b' ' | b'.' | b'-' | b'/') && (i == 0 || bytes[i - 1] != b')'))
        .map(|i| bytes[i])
        .collect();
    let one_kind = separators.windows(2).all(|w| w[0] == w[1]);
    (9..=15).contains(&count) && one_kind && !found.ends_with(['-', '.', ' ', '/'])
}

/// Luhn over 13 to 19 digits, one kind of separator, and an issuer's first digit.
fn card(found: &str) -> bool {
    let number: Vec<u32> = digits(found).collect();
    let separators: Vec<u8> = found.bytes().filter(|b| !b.is_ascii_digit()).collect();
    if !(13..=19).contains(&number.len()) || separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    // Grouped as cards are printed: fours (the last may be shorter), or Amex's and Diners' 4-6-5
    // and 4-6-4; never some groups joined and others apart (`54133666-5302-4716` is a UUID's).
    if let Some(&separator) = separators.first() {
        let groups: Vec<usize> = found.split(char::from(separator)).map(str::len).collect();
        let fours =
            groups.split_last().is_some_and(|(last, rest)| rest.iter().all(|&g| g == 4) && (1..=4).contains(last));
        if !fours && groups != [4, 6, 5] && groups != [4, 6, 4] {
            return false;
        }
    }
    if !matches!(number[0], 2..=6) {
        return false;
    }
    luhn(&number)
}

pub fn luhn(number: &[u32]) -> bool {
    let sum: u32 = number
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let double = d * 2;
                if double > 9 {
                    double - 9
                } else {
                    double
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// ISO 13616: the country's length and the mod-97 check over the rearranged number.
fn iban(found: &str) -> bool {
    let compact: Vec<u8> = found.bytes().filter(|b| *b != b' ').collect();
    if compact.len() < 5 {
        return false;
    }
    let Some(expected) = iban_length(&compact[..2]) else { return false };
    if compact.len() != expected {
        return false;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]);
    let mut remainder: u32 = 0;
    for &b in rearranged {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 { (remainder * 100 + value) % 97 } else { (remainder * 10 + value) % 97 };
    }
    remainder == 1
}

/// Where an IBAN written from `start` ends by its country's length (a greedy match may have
/// taken the next word too).
pub fn iban_end(hay: &str, start: usize, end: usize) -> Option<usize> {
    let bytes = &hay.as_bytes()[start..end];
    let expected = iban_length(bytes.get(..2)?)?;
    let mut seen = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b != b' ' {
            seen += 1;
            if seen == expected {
                return Some(start + i + 1);
            }
        }
    }
    None
}

/// IBAN lengths of the SEPA countries and a few beyond (ISO 13616 registry).
fn iban_length(country: &[u8]) -> Option<usize> {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AT", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BR", 29),
        (b"CH", 21),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"EE", 20),
        (b"ES", 24),
        (b"FI", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GI", 23),
        (b"GR", 27),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"MC", 27),
        (b"MT", 31),
        (b"NL", 18),
        (b"NO", 15),
        (b"PL", 28),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"SA", 24),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"TR", 26),
        (b"UA", 29),
    ];
    LENGTHS.iter().find(|(code, _)| code.as_slice() == country).map(|(_, length)| *length)
}

/// SSA rules: no area 000, 666 or 9xx, no group 00, no serial 0000.
fn us_ssn(found: &str) -> bool {
    let d: Vec<u32> = digits(found).collect();
    if d.len() != 9 {
        return false;
    }
    let area = d[0] * 100 + d[1] * 10 + d[2];
    let group = d[3] * 10 + d[4];
    let serial = d[5..].iter().fold(0, |n, x| n * 10 + x);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

fn ipv4(found: &str) -> bool {
    found.parse::<std::net::Ipv4Addr>().is_ok() && found.split('.').all(|part| part == "0" || !part.starts_with('0'))
}

/// A real IPv6 address, not `a::b` in C++ or a time: it parses, and has at least four groups or
/// six hex digits in all.
fn ipv6(found: &str) -> bool {
    let groups = found.split(':').filter(|g| !g.is_empty()).count();
    let hex = found.bytes().filter(u8::is_ascii_hexdigit).count();
    found.parse::<std::net::Ipv6Addr>().is_ok() && (groups >= 4 || (found.contains("::") && hex >= 6 && groups >= 2))
}

/// Three base64url parts (the last may be empty: `alg: none`), the first a JSON header with
/// `alg`.
fn jwt(found: &str) -> bool {
    let mut parts = found.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('='));
    let header_ok = decode(header).is_ok_and(|h| h.starts_with(b"{") && h.windows(5).any(|w| w == b"\"alg\""));
    header_ok && payload.len() >= 4 && decode(payload).is_ok()
}

/// A value at least 16 characters long, with letters and digits, and at least 3.5 bits of
/// entropy per character: `password=changeme` or `token=${TOKEN}` are not secrets found.
fn entropy_secret(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() >= 16
        && bytes.iter().any(u8::is_ascii_digit)
        && bytes.iter().any(u8::is_ascii_alphabetic)
        && shannon_entropy(bytes) >= 3.5
}

pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts.iter().filter(|&&c| c > 0).map(|&c| f64::from(c) / n).map(|p| -p * p.log2()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alone(check: Check, text: &str) -> bool {
        holds(check, text, 0, text.len())
    }

    #[test]
    fn checksums_accept_real_numbers_and_refuse_one_digit_off() {
        assert!(alone(Check::Card, "4111 1111 1111 1111"));
        assert!(alone(Check::Card, "5500-0000-0000-0004"));
        assert!(!alone(Check::Card, "4111 1111 1111 1112"));
        assert!(!alone(Check::Card, "4111 1111-1111 1111"), "mixed separators");
        assert!(alone(Check::Iban, "GB82 WEST 1234 5698 7654 32"));
        assert!(alone(Check::Iban, "DE89370400440532013000"));
        assert!(!alone(Check::Iban, "DE89370400440532013001"));
        assert!(!alone(Check::Iban, "XX89370400440532013000"));
    }

    #[test]
    fn neighbours_decide_whether_a_number_is_alone() {
        let text = "id 4111111111111111 and x4111111111111111 and 1.4111111111111111";
        assert!(holds(Check::Card, text, 3, 19));
        assert!(!holds(Check::Card, text, 25, 41), "preceded by a letter");
        assert!(!holds(Check::Card, text, 48, 64), "part of a longer number");
        assert!(alone(Check::Ipv4, "10.0.0.1"));
        assert!(!holds(Check::Ipv4, "v 1.2.3.4.5", 2, 9), "a version, not an address");
        assert!(!alone(Check::Ipv4, "300.1.1.1"));
    }

    #[test]
    fn ssn_areas_and_ipv6_shapes_follow_their_rules() {
        assert!(alone(Check::UsSsn, "123-45-6789"));
        for bad in ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000"] {
            assert!(!alone(Check::UsSsn, bad), "{bad}");
        }
        assert!(alone(Check::Ipv6, "2001:db8:85a3::8a2e:370:7334"));
        assert!(alone(Check::Ipv6, "fe80::1ff:fe23:4567"));
        for not_an_address in ["a::b", "12:30:45", "ab::cd"] {
            assert!(!alone(Check::Ipv6, not_an_address), "{not_an_address}");
        }
    }

    #[test]
    fn secrets_need_randomness() {
        assert!(alone(Check::Entropy, "q8Zr2LmX7vPk4Ns9Tb1W"));
        assert!(!alone(Check::Entropy, "changeme-changeme"));
        assert!(!alone(Check::Entropy, "aaaaaaaaaaaaaaaaaaaa1"));
        assert!(!alone(Check::Entropy, "short1A"));
    }

    #[test]
    fn a_jwt_has_a_json_header_with_alg() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLWJ5dGVz";
        assert!(alone(Check::Jwt, jwt));
        assert!(!alone(Check::Jwt, "eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxMjM0In0.c2ln"), "no alg");
        assert!(!alone(Check::Jwt, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0"), "two parts");
    }
}
