#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, on the machine's nightly toolchain
# when there is one, else on the pinned one with RUSTC_BOOTSTRAP=1 (fuzzing only: the project
# builds on the pinned stable). New inputs go to target/fuzz-corpus/<target>; the seeds in
# fuzz/corpus/<target> are read, never written. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the run: make it a regression test.
#   scripts/fuzz.sh [target...]        FUZZ_SECONDS=300 scripts/fuzz.sh jwt sse
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(jwt jsonrpc sse model_request model_answer canonical policy request_id file_path redaction)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
toolchain=()
if rustup toolchain list | grep -q '^nightly'; then toolchain=(+nightly); else export RUSTC_BOOTSTRAP=1; fi
cargo "${toolchain[@]}" fuzz build -O
for target in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$target"
  log="target/fuzz-corpus/$target.log"
  cargo "${toolchain[@]}" fuzz run -O "$target" "target/fuzz-corpus/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || {
      echo "$target: FAILED (see $log and fuzz/artifacts/$target/)"; tail -30 "$log"; exit 1; }
  runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*')
  echo "$target: ${runs:-?} executions in ${seconds}s, no crash ($(ls "target/fuzz-corpus/$target" | wc -l) corpus inputs)"
done
