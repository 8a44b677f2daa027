#!/usr/bin/env bash
# make demo: a whole Hopwire network on this machine. `hopwire testnet up`
# starts discovery, a relay, a setup node and four visors in a line
# v1 - v2 - v3 - v4 (the ends are three hops apart), each with the chat and
# hello apps. Then a chat message goes from v1 to v4 over a route through
# v2 and v3, v4 answers, hello plays ping-pong, and the network is left
# running for the user to open the chat pages.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/build/bin
hw="$bin/hopwire"
dir=${HOPWIRE_DEMO_DIR:-$PWD/testnet}

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
field() { /usr/bin/python3 -c 'import json,sys
st = json.load(open(sys.argv[1]))
p = {x["name"]: x for x in st["processes"]}
print(p[sys.argv[2]][sys.argv[3]])' "$dir/testnet.json" "$1" "$2"; }

if [ -f "$dir/testnet.json" ]; then
  echo "== a testnet from an earlier demo is in $dir: stopping it first"
  "$hw" testnet down --dir "$dir" || true
fi

echo "== a local Hopwire network: discovery, a relay, a setup node, 4 visors"
step "$hw" testnet up --dir "$dir" --visors 4

v1=$(field v1 control_socket); v4pk=$(field v4 pk); v1pk=$(field v1 pk)
chat1=$(field v1 chat_url); chat4=$(field v4 chat_url)

echo
echo "== v1 and v4 have no transport to each other: discovery's route finder"
echo "== gives a path through v2 and v3"
step "$hw" --visor "$v1" route find "$v4pk"

echo
echo "== chat: v1 sends a message to v4 (POST /message on v1's chat app)"
step curl -sS -X POST "$chat1/message" \
  -d "{\"recipient\": \"$v4pk\", \"message\": \"hello from v1, three hops away\"}"
echo
echo
echo "== it arrives at v4 (GET /messages on v4's chat app)"
for _ in $(seq 100); do
  curl -sf "$chat4/messages" | grep -q "three hops away" && break
  sleep 0.1
done
step curl -sS "$chat4/messages"
echo
echo
echo "== v4 answers"
step curl -sS -X POST "$chat4/message" \
  -d "{\"recipient\": \"$v1pk\", \"message\": \"hello v1, v4 here\"}"
echo
for _ in $(seq 100); do
  curl -sf "$chat1/messages" | grep -q "v4 here" && break
  sleep 0.1
done
step curl -sS "$chat1/messages"
echo

echo
echo "== the hello app: ping-pong from an app on v1 to v4's hello server"
HOPWIRE_APP_SOCKET=$(dirname "$v1")/apps.sock \
  step "$bin/hopwire-hello" client "$v4pk" ping
echo
echo "== v1's apps, rules and route groups"
step "$hw" --visor "$v1" app ls
step "$hw" --visor "$(field v2 control_socket)" route ls

cat <<EOF

== The network is still running. Open the chat pages in a browser:
     v1: $chat1
     v4: $chat4
   pick the other visor's key and chat over the three-hop route.
   hopwire testnet status --dir $dir     what runs
   hopwire testnet down --dir $dir       stop everything
EOF
