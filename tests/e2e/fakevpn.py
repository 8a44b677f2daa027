"""A stand-in for hopwire-vpn-client and hopwire-vpn-server in the CLI's
tests (tests/e2e/test_vpn_cli.py): it touches no network, but it starts,
stops and cleans up as the programs do (docs/vpn.md) and writes a
status.json in their format, so that `hopwire vpn` can be tested on what
it writes, reads and waits for without them.

Run as ROLE (client or server) and the program's arguments. In its
working folder it writes caps.txt (its /proc/self/status Cap* lines) and
env.txt (HOPWIRE_VISOR_API), and appends to events.txt: "start ARGS",
"term" on SIGTERM (it then exits 0, as after undoing its changes) and
"cleanup" for --cleanup. Without CAP_NET_ADMIN in its effective set it
exits 1 with the programs' message. A file ignore-term in the folder makes
it ignore SIGTERM (a client that hangs: the visor kills it)."""
import json
import os
import signal
import sys
import time

ROLE = sys.argv[1]
ARGS = sys.argv[2:]
NAME = f"hopwire-vpn-{ROLE}"
CAP_NET_ADMIN = 1 << 12


def event(text):
    with open("events.txt", "a") as f:
        f.write(text + "\n")


def caps():
    with open("/proc/self/status") as f:
        return {k: int(v, 16) for k, v in
                (line.split(":", 1) for line in f
                 if line.startswith("Cap"))}


def write_status(doc):
    with open("status.json.tmp", "w") as f:
        json.dump(doc, f)
    os.rename("status.json.tmp", "status.json")


def value(opt, default=None):
    for i, a in enumerate(ARGS):
        if a == opt and i + 1 < len(ARGS):
            return ARGS[i + 1]
    return default


if ARGS == ["--cleanup"]:
    event("cleanup")
    sys.exit(0)
c = caps()
with open("caps.txt", "w") as f:
    json.dump(c, f)
with open("env.txt", "w") as f:
    f.write(os.environ.get("HOPWIRE_VISOR_API", "") + "\n")
if not c["CapEff"] & CAP_NET_ADMIN:
    print(f"{NAME}: needs CAP_NET_ADMIN (run by a visor whose config "
          "grants it: docs/vpn.md)", file=sys.stderr, flush=True)
    sys.exit(1)
event("start " + " ".join(ARGS))


def on_term(sig, frame):
    event("term")
    sys.exit(0)


if os.path.exists("ignore-term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)
since = int(time.time() * 1000)
n = 0
while True:
    n += 1
    if ROLE == "client":
        routes = value("--routes")
        write_status({
            "role": "client", "state": "connected",
            "server": value("--server"), "tun": "hwvpnc0",
            "address": "10.44.0.2", "address6": None, "mtu": 1380,
            "routes": routes.split(",") if routes
            else ["0.0.0.0/1", "128.0.0.0/1"],
            "bytes_in": 3 << 20, "bytes_out": 1536, "packets_in": 2200,
            "packets_out": 30, "packets_dropped": 7,
            "error": None, "since": since})
    else:
        allow = [ARGS[i + 1] for i, a in enumerate(ARGS[:-1])
                 if a == "--allow"]
        write_status({
            "role": "server", "tun": "hwvpns0",
            "subnet": value("--subnet", "10.44.0.0/24"),
            "address": "10.44.0.1", "nat": "--route-only" not in ARGS,
            "clients": [{"pk": "cc" * 32, "address": "10.44.0.2",
                         "connected": True, "bytes_in": 1536,
                         "bytes_out": 3 << 20, "packets_in": 30,
                         "packets_out": 2200, "spoofed_dropped": 2}],
            "refused": 0 if allow else 1, "spoofed_dropped": 2,
            "error": None})
    time.sleep(0.2)
