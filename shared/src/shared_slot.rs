//! Bounded key spaces in Envoy shared data, updated with compare-and-swap.
//!
//! Shared data has no delete, so every store in Warden hashes its items into a fixed number
//! of keys ("slots"), each holding a few short text lines. A slot is created holding only a
//! header line (a set on a missing key ignores CAS, and through the proxy-wasm SDK an empty
//! value cannot be told apart from a missing key), then changed only under CAS: a lost race is
//! read again and retried. The one window left is two workers creating the same slot at the
//! same instant, where one brand-new line can be lost.

use crate::host::{Host, HostError};
use sha2::{Digest, Sha256};

/// The first line of every slot: names the format, and keeps a new slot non-empty.
pub const SLOT_HEADER: &str = "v1\n";
const CAS_RETRIES: usize = 16;

/// What an update decided: leave the slot as it is, or write these lines.
pub enum Change<T> {
    Keep(T),
    Write(Vec<String>, T),
}

/// A short hex digest of `parts`, so stores hold hashes, never ids, names or values.
pub fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..12])
}

/// The slot a digest falls into, `0..slots`.
pub fn slot_of(digest: &str, slots: usize) -> usize {
    let head = digest.get(..8).and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(0);
    head as usize % slots.max(1)
}

/// Reads the lines of slot `key` (without the header), lets `change` decide, and writes its
/// lines under CAS, retrying on a lost race. `change` may run several times.
pub fn update<T>(host: &dyn Host, key: &str, mut change: impl FnMut(Vec<&str>) -> Change<T>) -> Result<T, HostError> {
    for _ in 0..CAS_RETRIES {
        let (value, cas) = host.shared_data(key)?;
        let Some(value) = value else {
            // Create the slot, then go round again to update it under CAS.
            host.set_shared_data(key, SLOT_HEADER.as_bytes(), None)?;
            continue;
        };
        let text = String::from_utf8_lossy(&value);
        let lines = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
        let (lines, result) = match change(lines) {
            Change::Keep(result) => return Ok(result),
            Change::Write(lines, result) => (lines, result),
        };
        let mut out = String::from(SLOT_HEADER);
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
        match host.set_shared_data(key, out.as_bytes(), cas) {
            Ok(()) => return Ok(result),
            Err(HostError::CasMismatch) => continue,
            Err(other) => return Err(other),
        }
    }
    Err(HostError::Failed { call: "set_shared_data", status: "too many CAS conflicts".to_string() })
}

/// Reads the lines of slot `key` without changing it.
pub fn read(host: &dyn Host, key: &str) -> Result<Vec<String>, HostError> {
    let (value, _) = host.shared_data(key)?;
    Ok(value
        .map(|v| String::from_utf8_lossy(&v).lines().skip(1).filter(|l| !l.is_empty()).map(String::from).collect())
        .unwrap_or_default())
}
