#!/usr/bin/env bash
# make demo: what can be shown today. Two visors on loopback link over an
# encrypted TCP transport and are driven with the CLI; then a discovery
# service and a relay start, and two visors without any listening port find
# each other in discovery and link through the relay. The whole local test
# network (setup node, multi-hop routes, visors with apps) does not exist
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
echo "== discovery, a relay, and two visors C and D with no listening port"
dport=$(port); rport=$(port)
"$bin/hopwire-discovery" --listen "127.0.0.1:$dport" \
  --store "sqlite:$dir/discovery.db" 2>"$dir/discovery.log" &
pids+=($!)
"$bin/hopwire" keygen --out "$dir/relay.key" >/dev/null 2>&1
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$dport/health" >/dev/null && break; sleep 0.05; done
"$bin/hopwire-relay" --key "$dir/relay.key" --listen "127.0.0.1:$rport" \
  --discovery "http://127.0.0.1:$dport" 2>"$dir/relay.log" &
pids+=($!)
"$bin/hopwire" keygen --out "$dir/setup.key" >/dev/null 2>&1
spk=$("$bin/hopwire" pk --key "$dir/setup.key")
"$bin/hopwire-setup" --key "$dir/setup.key" --discovery "http://127.0.0.1:$dport" \
  --dir "$dir/setup" 2>"$dir/setup.log" &
pids+=($!)
for v in c d; do
  "$bin/hopwire" config init --out "$dir/$v/hopwire.json" \
    --discovery "http://127.0.0.1:$dport" --setup-node "$spk" >/dev/null 2>&1
  /usr/bin/python3 - "$dir/$v/hopwire.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["transport"]["tcp_listen"] = ""          # behind NAT: nobody can dial it
cfg["discovery"]["refresh_ms"] = 1000
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
  "$bin/hopwire-visor" --config "$dir/$v/hopwire.json" 2>"$dir/$v.log" &
  pids+=($!)
done
pkd=$("$bin/hopwire" pk --key "$dir/d/visor.key")
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$dport/v1/visors/$pkd" 2>/dev/null | grep -q '"relays": *\["' && break
  sleep 0.05
done
export HOPWIRE_CONFIG=$dir/c/hopwire.json
step "$bin/hopwire" info
step curl -s "http://127.0.0.1:$dport/v1/visors/$pkd"
echo
step "$bin/hopwire" tp add "$pkd"
step "$bin/hopwire" ping "$pkd" --count 3
id=$("$bin/hopwire" tp ls --json | /usr/bin/python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["id"])')
step "$bin/hopwire" tp throughput "$id" --bytes 300000000
step curl -s "http://127.0.0.1:$dport/v1/transports?edge=$pkd"
echo

echo
echo "== a route group from C to port 10 on D, built by the setup node, end-to-end"
echo "   encrypted (Noise KK) over the relay transport"
mkfifo "$dir/d.in"
sleep 60 > "$dir/d.in" &  # keeps D's end open while C talks
pids+=($!)
"$bin/hopwire" --config "$dir/d/hopwire.json" route listen 10 \
  < "$dir/d.in" > "$dir/d.out" 2>"$dir/d.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$dir/d.err" 2>/dev/null && break; sleep 0.05; done
step sh -c "echo 'hello D, this is C' | \"$bin/hopwire\" route dial $pkd 10"
for _ in $(seq 100); do [ -s "$dir/d.out" ] && break; sleep 0.05; done
echo
echo "D received:"
cat "$dir/d.out"
step "$bin/hopwire" route ls
echo
echo "NOT YET: apps and the local test network. 'make demo' will start several"
echo "visors with chat and routes through each other once those parts exist."
echo "Today: identities, the visor, TCP and relay transports, discovery, the"
echo "relay server, the setup node, multi-hop route groups, the CLI."
