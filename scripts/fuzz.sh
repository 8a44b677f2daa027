#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS (default 20) with a corpus kept
# in .fuzz/<target>/ and the seeds in tests/fuzz/seeds/<target>/. Fails on
# the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
for bin in build-fuzz/bin/fuzz_*; do
  name=$(basename "$bin")
  mkdir -p ".fuzz/$name"
  echo "== $name for ${secs}s"
  seeds=()
  [ -d "tests/fuzz/seeds/$name" ] && seeds=("tests/fuzz/seeds/$name")
  # New inputs go to the first folder (.fuzz/, not tracked); seeds are read.
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix=".fuzz/$name-" \
    ".fuzz/$name" "${seeds[@]}" 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*ERROR)' || true
  if ls ".fuzz/$name-"* >/dev/null 2>&1; then
    echo "fuzz: $name found a crash: $(ls ".fuzz/$name-"*)" >&2
    exit 1
  fi
done
echo "fuzz: no findings"
