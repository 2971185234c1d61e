//! Redaction's detectors against a small fixed-seed labelled corpus (100 values a class in
//! realistic surroundings, 256 KB of clean text): recall >= 99 % for checksummed and fixed-format
//! classes, >= 95 % for the rest, and at most 1 false positive per 100 KB of clean text. The full
//! run is part of `make bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_integration_tests::redaction_quality::{generate, measure};

#[test]
fn the_detectors_meet_their_recall_and_false_positive_targets() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 7, 100, 256).unwrap();
    let quality = measure(dir.path()).unwrap();
    assert_eq!(quality.classes.len(), 24, "every built-in class is in the corpus");
    assert!(quality.clean_bytes >= 256 * 1024);
    let misses = quality.misses();
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}
