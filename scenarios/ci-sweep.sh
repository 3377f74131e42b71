#!/usr/bin/env bash
# A bounded sweep of the scenario library for CI: SEEDS seeds per scenario (default 20) in
# release, every core. Exits non-zero on any violation a scenario does not expect; the output
# ends with one replay command per failing seed. Prints the JSON summary to ci-sweep.json when
# JSON_OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-20}"
cargo build --release -p ringkv-scenarios --bin ringkv-sim
bin="${CARGO_TARGET_DIR:-target}/release/ringkv-sim"
if [[ -n "${JSON_OUT:-}" ]]; then
  "$bin" run scenarios/ --seeds "0..${SEEDS}" --json > "$JSON_OUT"
else
  "$bin" run scenarios/ --seeds "0..${SEEDS}"
fi
