//! Reading Warden's audit record in Envoy's access log (`docs/audit.md`).

use crate::repo;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// The line's Warden record as an object, in either `auditFormat`: JSON text (a string) or a
/// `Struct` (the `Any` Envoy prints with `TYPED`).
pub fn record(line: &Value) -> Option<Value> {
    match line.get("warden")? {
        Value::String(text) => serde_json::from_str(text).ok(),
        typed => typed.get("value").cloned(),
    }
}

/// One section of the line's Warden record (`principal`, `identity`, `tool_acl`,
/// `token_budget`); `None` where that filter wrote nothing.
pub fn part(line: &Value, name: &str) -> Option<Value> {
    record(line)?.get(name).cloned()
}

/// One field of a part, as text (see `warden_policy::testing::field`): `decision`,
/// `tokens.input`, `calls.tool`.
pub fn field(line: &Value, name: &str, path: &str) -> Option<String> {
    warden_policy::testing::field(&part(line, name)?, path)
}

/// Checks access-log lines against `docs/audit.schema.json`, with the schema checker the
/// project ships (`scripts/check-audit.py`, run by the project's Python).
pub fn check_schema(lines: &[Value]) -> Result<()> {
    let root = repo::root();
    let mut child = Command::new(root.join(".venv/py/bin/python"))
        .arg(root.join("scripts/check-audit.py"))
        .arg(root.join("docs/audit.schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting scripts/check-audit.py (run `make setup`)")?;
    let mut input = String::new();
    for line in lines {
        input.push_str(&line.to_string());
        input.push('\n');
    }
    child.stdin.take().context("stdin")?.write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("audit records do not match the schema: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}
