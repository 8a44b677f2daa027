#!/usr/bin/env bash
# make demo: what can be shown today. Two visors on loopback link over an
# encrypted TCP transport and are driven with the CLI. The whole local test
# network (discovery, relays, setup node, visors with apps) does not exist
# yet; this says so at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/bin
dir=$(mktemp -d /tmp/hopwire-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

for v in a b; do
  "$bin/hopwire" config init --out "$dir/$v/hopwire.json" \
    --tcp-listen "127.0.0.1:$(port)" >/dev/null 2>&1
  "$bin/hopwire-visor" --config "$dir/$v/hopwire.json" 2>"$dir/$v.log" &
  pids+=($!)
done
for v in a b; do
  for _ in $(seq 100); do
    "$bin/hopwire" --config "$dir/$v/hopwire.json" info >/dev/null 2>&1 && break
    sleep 0.05
  done
done
pkb=$("$bin/hopwire" pk --key "$dir/b/visor.key")
addrb=$(/usr/bin/python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["transport"]["tcp_listen"])' "$dir/b/hopwire.json")
export HOPWIRE_CONFIG=$dir/a/hopwire.json

echo "== two visors, A and B, on loopback (folders under $dir)"
step "$bin/hopwire" info
step "$bin/hopwire" tp add "$pkb" --addr "$addrb" --persistent
step "$bin/hopwire" --config "$dir/b/hopwire.json" tp ls
step "$bin/hopwire" ping "$pkb" --count 3
id=$("$bin/hopwire" tp ls --json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["id"])')
step "$bin/hopwire" tp throughput "$id" --bytes 500000000
step "$bin/hopwire" tp ls
echo
echo "== visor A's log"
cat "$dir/a.log"
echo
echo "NOT YET: the local test network. 'make demo' will start discovery, a relay,"
echo "a setup node and several visors with chat and multi-hop routes once those"
echo "parts exist. Today: identities, the visor, direct TCP transports, the CLI."
