"""A stand-in for hopwire-forward in the CLI's tests: it forwards nothing,
but it reads its settings as the app does (settings.json in its working
folder, reloaded when it changes) and writes a status.json in the app's
format (docs/forward.md "Using it"), so that `hopwire forward` can be
tested on what it reads and waits for without the real app.

A service named "bad" makes it refuse the settings as the app does (the
revision in force stays, with a settings_error); one named "slow"
makes it stop writing its status (an app that does not apply a change);
a mapping on port 1 is "listen-failed". Its one open connection is made
up, with fixed identifiers and byte counts."""
import json
import os
import time

CLIENT = "aa" * 32
SERVER = "bb" * 32
since = int(time.time() * 1000) - 3000


def load():
    try:
        with open("settings.json") as f:
            return json.load(f)
    except FileNotFoundError:
        return {"revision": 0}


def status_of(s, error):
    exp = s.get("expose", [])
    maps = s.get("map", [])
    return {
        "version": 1,
        "revision": s["revision"],
        "settings_error": error,
        "expose": [{"name": e["name"], "target": e["target"],
                    "allow": e["allow"], "conns": 1} for e in exp],
        "map": [{"listen": m["listen"], "pk": m["pk"],
                 "service": m["service"],
                 "state": "listen-failed" if m["listen"].endswith(":1")
                 else "up",
                 "error": "Permission denied"
                 if m["listen"].endswith(":1") else None,
                 "conns": 0} for m in maps],
        "conns": [{"side": "server", "client_pk": CLIENT,
                   "client_port": 50123, "server_pk": SERVER,
                   "service": "ssh", "service_port": 22,
                   "bytes_up": 1536, "bytes_down": 3 << 20,
                   "since_ms": since}],
        "updated_ms": int(time.time() * 1000),
    }


print("fakeforward: up", flush=True)
applied = {"revision": 0}
while True:
    s = load()
    names = [e.get("name") for e in s.get("expose", [])]
    error = None
    if "bad" in names:
        error = "service bad: refused by the fake app"
    else:
        applied = s
    if "slow" not in names:
        with open("status.json.tmp", "w") as f:
            json.dump(status_of(applied, error), f)
        os.rename("status.json.tmp", "status.json")
    time.sleep(0.1)
