#!/usr/bin/env bash
# The planted-bug hunt for CI: builds ringkv-sim with the planted bugs compiled in, arms each in
# turn and runs the scenario library over seeds 0..1000 until a checker catches it. Exits
# non-zero if any bug survives 1,000 seeds. The time limit per bug is only a backstop (every bug
# is caught within a few dozen runs); the seed bound decides the outcome, so the result does not
# depend on the machine's speed.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p ringkv-scenarios --bin ringkv-sim --features planted-bugs
bin="${CARGO_TARGET_DIR:-target}/release/ringkv-sim"
"$bin" hunt --seeds 0..1000 --seconds-max 1200
# One test per planted Paxos bug: the history it produces is rejected by the linearizability
# checker, with the smallest failing window named, and the unarmed seed's history is accepted.
cargo test --release -p ringkv-scenarios --features planted-bugs --test planted_paxos
