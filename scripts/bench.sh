#!/usr/bin/env bash
# Prints every benchmark's figures. Each program measures its own baseline
# in the same run and prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in build/bin/hw-bench-*; do
  "$b"
  echo
done
