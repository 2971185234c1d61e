//! Official SDKs that have no Rust counterpart, run as agents through the project's Python.

use crate::repo;
use serde_json::Value;
use std::process::Command;

/// Anthropic's Python SDK sends one Messages request to `base_url` with `api_key` and the
/// client's `extra` arguments (`--stream`, `--system`, `--header K=V`, …); the JSON line it
/// printed says what the SDK made of the answer (see `clients/anthropic_client.py`).
pub fn anthropic(base_url: &str, api_key: &str, model: &str, extra: &[&str]) -> Value {
    let root = repo::root();
    let out = Command::new(root.join(".venv/py/bin/python"))
        .arg(root.join("integration-tests/clients/anthropic_client.py"))
        .arg(base_url)
        .arg(model)
        .args(["--api-key", api_key])
        .args(extra)
        .output();
    let out = match out {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => return Value::String(format!("the SDK failed: {}", String::from_utf8_lossy(&out.stderr))),
        Err(e) => return Value::String(format!("the SDK could not run: {e}")),
    };
    serde_json::from_slice(&out).unwrap_or_else(|e| Value::String(format!("the SDK printed no JSON: {e}")))
}
