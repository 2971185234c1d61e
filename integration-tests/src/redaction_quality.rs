//! Redaction's detectors measured on a labelled corpus that `scripts/redaction-corpus.py`
//! generates (seeded): recall per class, and false positives per 100 KB of clean text. The
//! small run is a test (`tests/redaction_quality.rs`); the full run is part of `make bench`.

use crate::repo;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use warden_policy::policy::parse_document;
use warden_policy::redaction::compile::CompiledRedaction;

/// Classes whose format is checksummed or fixed: recall must be at least 99 %. The rest
/// (e-mail and phone, and the assignment and bearer forms judged by entropy) at least 95 %.
pub const FIXED_FORMAT: &[&str] = &[
    "payment_card",
    "iban",
    "us_ssn",
    "aws_access_key",
    "gcp_api_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "openai_key",
    "anthropic_key",
    "jwt",
    "pem_private_key",
    "azure_storage_key",
    "azure_client_secret",
    "gcp_service_account_key",
    "aws_secret_key",
];

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClassScore {
    pub labelled: usize,
    pub found: usize,
    /// Found, but as another class.
    pub found_as_other: usize,
}

impl ClassScore {
    pub fn recall(&self) -> f64 {
        if self.labelled == 0 {
            return 1.0;
        }
        self.found as f64 / self.labelled as f64
    }
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Quality {
    pub classes: BTreeMap<String, ClassScore>,
    pub clean_bytes: usize,
    /// Findings in the clean corpus, per class.
    pub false_positives: BTreeMap<String, usize>,
}

impl Quality {
    pub fn false_positives_per_100kb(&self) -> f64 {
        let total: usize = self.false_positives.values().sum();
        total as f64 * 100.0 * 1024.0 / self.clean_bytes.max(1) as f64
    }

    /// The targets this measurement misses, each said in a line; empty when all are met.
    pub fn misses(&self) -> Vec<String> {
        let mut misses = Vec::new();
        for (class, score) in &self.classes {
            let target = if FIXED_FORMAT.contains(&class.as_str()) { 0.99 } else { 0.95 };
            if score.recall() < target {
                misses.push(format!(
                    "{class}: recall {:.1} % < {:.0} % ({score:?})",
                    score.recall() * 100.0,
                    target * 100.0
                ));
            }
        }
        if self.false_positives_per_100kb() > 1.0 {
            misses.push(format!(
                "{:.2} false positives per 100 KB of clean text > 1 ({:?})",
                self.false_positives_per_100kb(),
                self.false_positives
            ));
        }
        misses
    }
}

/// Runs the generator into `dir`.
pub fn generate(dir: &Path, seed: u64, per_class: usize, clean_kb: usize) -> Result<()> {
    let out = Command::new(repo::root().join(".venv/py/bin/python"))
        .arg(repo::root().join("scripts/redaction-corpus.py"))
        .args(["--seed", &seed.to_string(), "--per-class", &per_class.to_string()])
        .args(["--clean-kb", &clean_kb.to_string(), "--out"])
        .arg(dir)
        .output()
        .context("running scripts/redaction-corpus.py")?;
    if !out.status.success() {
        bail!("the corpus generator failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[derive(Deserialize)]
struct Sample {
    text: String,
    labels: Vec<Label>,
}

#[derive(Deserialize)]
struct Label {
    class: String,
    value: String,
}

/// The built-in detectors as a default policy compiles them.
pub fn default_policy() -> Result<Rc<CompiledRedaction>> {
    let doc = parse_document(b"redaction: {}\n").map_err(|e| anyhow::anyhow!("{e}"))?;
    let section = doc.redaction.context("no redaction section")?;
    Ok(Rc::new(CompiledRedaction::compile(&section, &|_| None).map_err(|e| anyhow::anyhow!("{e}"))?))
}

/// Scores the corpus in `dir`: a labelled value is found when a finding of its class covers it
/// whole.
pub fn measure(dir: &Path) -> Result<Quality> {
    let policy = default_policy()?;
    let scanner = &policy.requests;
    let mut quality = Quality::default();
    let labelled = std::fs::read_to_string(dir.join("labelled.jsonl"))?;
    for line in labelled.lines() {
        let sample: Sample = serde_json::from_str(line)?;
        let findings = scanner.find_all(&sample.text, &|_| true);
        for label in &sample.labels {
            let score = quality.classes.entry(label.class.clone()).or_default();
            score.labelled += 1;
            let Some(start) = sample.text.find(&label.value) else { bail!("a label not in its text: {line}") };
            let end = start + label.value.len();
            let covering: Vec<&str> = findings
                .iter()
                .filter(|f| f.value_start <= start && f.value_end >= end)
                .map(|f| scanner.detectors[f.detector].class.as_str())
                .collect();
            if covering.contains(&label.class.as_str()) {
                score.found += 1;
            } else if !covering.is_empty() {
                score.found_as_other += 1;
            }
        }
    }
    let clean = std::fs::read_to_string(dir.join("clean.txt"))?;
    quality.clean_bytes = clean.len();
    for line in clean.lines() {
        for finding in scanner.find_all(line, &|_| true) {
            *quality.false_positives.entry(scanner.detectors[finding.detector].class.clone()).or_default() += 1;
        }
    }
    Ok(quality)
}
