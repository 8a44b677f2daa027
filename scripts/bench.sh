#!/usr/bin/env bash
# Prints every benchmark's figures. Each measures its own baseline in the
# same run and prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in build/bin/hw-bench-*; do
  "$b"
  echo
done
/usr/bin/python3 bench/bench_visor.py build/bin
echo
/usr/bin/python3 bench/bench_routes.py build/bin
echo
/usr/bin/python3 bench/bench_heal.py build/bin
echo
/usr/bin/python3 bench/bench_socks.py build/bin
echo
/usr/bin/python3 bench/bench_forward.py build/bin
echo
# The VPN figures need network namespaces: root only (make bench-vpn).
if [ "$(id -u)" -eq 0 ]; then
  /usr/bin/python3 bench/bench_vpn.py build/bin
else
  echo "bench_vpn: skipped, needs root (sudo make bench-vpn)"
fi
