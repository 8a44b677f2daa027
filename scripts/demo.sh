#!/usr/bin/env bash
# make demo: what can be shown today. The local test network (discovery,
# relays, setup node, visors with apps) does not exist yet; this says so
# and shows the parts that do.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

echo "== two visor identities"
a=$("$bin/hopwire" keygen --out "$dir/a.key")
b=$("$bin/hopwire" keygen --out "$dir/b.key")
echo "visor A: $a"
echo "visor B: $b"
echo
echo "== Noise handshake and AEAD figures on this machine"
"$bin/hw-bench-crypto"
echo
echo "NOT YET: the local test network. 'make demo' will start discovery, a relay,"
echo "a setup node and several visors with chat once those parts exist."
