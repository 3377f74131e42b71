#!/usr/bin/env bash
# Runs fuzz targets one after another with libFuzzer (needs `cargo +nightly` and cargo-fuzz).
# Usage: fuzz/run.sh [seconds per target, default 600] [target...]  (default: every target)
# New inputs go to fuzz/work/<target>/ (not committed); crashes to fuzz/artifacts/<target>/.
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(manifest wal_replay sstable_footer scenario_ron peer_frame resp node_config_ron sstable_block)
mkdir -p work logs
for target in "${targets[@]}"; do
  mkdir -p "work/$target" "regressions/$target"
  # -malloc_limit_mb: one allocation over 512 MiB is a bug here (a length field believed).
  # -timeout: an input taking over 10 s is a hang.
  nice -n 10 cargo +nightly fuzz run "$target" "work/$target" "corpus/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
    > "logs/$target.log" 2>&1
  echo "$target exit $?: $(grep -E '^#[0-9]+' "logs/$target.log" | tail -1)"
done
