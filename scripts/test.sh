#!/usr/bin/env bash
# Runs every test tier and ends with one line counting passed and failed:
#   0. the include graph against the layers of docs/architecture.md
#   1. unit tests (cmocka via ctest), built with ASan+UBSan (build-asan/)
#   2. end-to-end tests (pytest) against the normal build (build/)
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
skipped=0

echo "== layers (docs/architecture.md)"
if /usr/bin/python3 scripts/layers.py; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

echo
echo "== unit tests (AddressSanitizer + UndefinedBehaviorSanitizer)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest_log=$(mktemp)
ctest --test-dir build-asan --output-on-failure -j 2 | tee "$ctest_log"
ctest_rc=${PIPESTATUS[0]}
# "100% tests passed, 0 tests failed out of 5"
line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$ctest_log" | tail -n 1)
if [ -n "$line" ]; then
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  nfail=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$line")
  passed=$((passed + total - nfail))
  failed=$((failed + nfail))
elif [ "$ctest_rc" -ne 0 ]; then
  failed=$((failed + 1))
fi
rm -f "$ctest_log"

echo
echo "== end-to-end tests"
junit=$(mktemp --suffix=.xml)
HW_BIN_DIR="$PWD/build/bin" /usr/bin/python3 -m pytest -q -rs tests/e2e --junitxml="$junit"
pytest_rc=$?
if [ -s "$junit" ]; then
  read -r t f e s < <(/usr/bin/python3 - "$junit" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) for s in suites)
e = sum(int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(t, f, e, k)
PY
)
  passed=$((passed + t - f - e - s))
  failed=$((failed + f + e))
  skipped=$((skipped + s))
elif [ "$pytest_rc" -ne 0 ]; then
  failed=$((failed + 1))
fi
rm -f "$junit"
# pytest exits 5 when it collected nothing: that is a failure here too.
if [ "$pytest_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi

echo
echo "make test: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ "$ctest_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ]
