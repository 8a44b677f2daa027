#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS (default 20) with a corpus kept
# in .fuzz/<target>/ and the seeds in tests/fuzz/seeds/<target>/. Fails on
# the first finding.
#
# Seeds are text in git: a NAME.hex file holds a binary input as hex digits
# (whitespace ignored) and is decoded into .fuzz/seeds/<target>/NAME; any
# other file is an input as it stands.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}

# Decodes hex file $1 into $2 (bash only: no xxd needed).
unhex() {
  local hex
  hex=$(tr -d ' \t\r\n' < "$1")
  if [[ ! $hex =~ ^([0-9a-fA-F]{2})*$ ]]; then
    echo "fuzz: $1: not an even run of hex digits" >&2
    exit 1
  fi
  printf '%b' "$(sed 's/../\\x&/g' <<< "$hex")" > "$2"
}

for bin in build-fuzz/bin/fuzz_*; do
  name=$(basename "$bin")
  mkdir -p ".fuzz/$name"
  echo "== $name for ${secs}s"
  seeds=()
  if [ -d "tests/fuzz/seeds/$name" ]; then
    rm -rf ".fuzz/seeds/$name"
    mkdir -p ".fuzz/seeds/$name"
    for s in "tests/fuzz/seeds/$name"/*; do
      case "$s" in
        *.hex) unhex "$s" ".fuzz/seeds/$name/$(basename "$s" .hex)" ;;
        *) cp "$s" ".fuzz/seeds/$name/" ;;
      esac
    done
    seeds=(".fuzz/seeds/$name")
  fi
  # New inputs go to the first folder (.fuzz/, not tracked); seeds are read.
  "$bin" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix=".fuzz/$name-" \
    ".fuzz/$name" "${seeds[@]}" 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*ERROR)' || true
  if ls ".fuzz/$name-"* >/dev/null 2>&1; then
    echo "fuzz: $name found a crash: $(ls ".fuzz/$name-"*)" >&2
    exit 1
  fi
done
echo "fuzz: no findings"
