"""Issue 14's scenario: on a testnet line v1 - v2 - v3 - v4, v1's chat
sends v4 ten messages a second while discovery, the relay, the setup node,
v2, v4 and v4's chat app are each killed with SIGKILL in turn and brought
back (`testnet restart`; the chat app by v4's launcher). Every message
v1's chat accepted is delivered exactly once in the end, and the test
prints, per kill, how long until a message sent after the kill arrived."""
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

from test_testnet import by_name, state_of, tn_dir  # noqa: F401

KILLS = ("discovery", "relay", "setup", "v2", "v4", "v4/chat")


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


class Sender(threading.Thread):
    """POSTs "m N" to v4 every 100 ms; keeps what was accepted."""

    def __init__(self, url, to):
        super().__init__(daemon=True)
        self.url, self.to = url, to
        self.accepted = []  # (text, time)
        self.refused = 0
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            text = f"m {n}"
            status, body = post(f"{self.url}/message",
                                {"recipient": self.to, "message": text})
            if status == 200:
                assert body["state"] == "pending", body
                self.accepted.append((text, time.time()))
            else:
                self.refused += 1
            n += 1
            self.stop.wait(0.1)


def all_messages(url, query=""):
    """Every message, in pages of 1000 (the API's most)."""
    out, after = [], 0
    while True:
        page = get(f"{url}/messages?limit=1000&after={after}{query}")
        if page is None:
            return None
        out += page
        if len(page) < 1000:
            return out
        after = page[-1]["id"]


def received(url):
    msgs = all_messages(url) or []
    return [m["text"] for m in msgs if m["direction"] == "in"]


def chat_pid(v4):
    """The pid of v4's chat app (a child of the visor named
    hopwire-chat)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            comm = stat.split("(", 1)[1].rsplit(")", 1)[0]
        except OSError:
            continue
        if ppid == v4["pid"] and comm.startswith("hopwire-chat"):
            return int(d)
    return None


def test_chat_survives_kills(hopwire, tn_dir):  # noqa: F811
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 4,
                timeout=120)
    assert r.returncode == 0, r.stderr
    procs = by_name(state_of(tn_dir))
    v1, v4 = procs["v1"], procs["v4"]
    sender = Sender(v1["chat_url"], v4["pk"])
    sender.start()
    figures = []
    try:
        time.sleep(2)
        for name in KILLS:
            before = len(sender.accepted)
            killed = time.time()
            if name == "v4/chat":
                pid = chat_pid(by_name(state_of(tn_dir))["v4"])
                assert pid, "v4's chat app is not running"
                os.kill(pid, signal.SIGKILL)
                restarted = True  # v4's launcher starts it again
            else:
                r = hopwire("testnet", "kill", name, "--dir", tn_dir)
                assert r.returncode == 0, r.stderr
                restarted = False
            # Flowing again: a message accepted after the kill arrived
            # (maybe before the restart: not every kill stops them).
            # The killed process comes back 3 s after its kill.
            deadline = time.time() + 90
            flowing = None
            while time.time() < deadline and flowing is None:
                if not restarted and time.time() >= killed + 3:
                    r = hopwire("testnet", "restart", name, "--dir",
                                tn_dir, timeout=120)
                    assert r.returncode == 0, r.stderr
                    restarted = True
                after = [t for t, at in sender.accepted[before:]
                         if at > killed]
                v4now = by_name(state_of(tn_dir))["v4"]
                got = set(received(v4now["chat_url"]))
                for t in after:
                    if t in got:
                        flowing = time.time() - killed
                        break
                time.sleep(0.2)
            while not restarted and time.time() < killed + 3:
                time.sleep(0.2)
            if not restarted:
                r = hopwire("testnet", "restart", name, "--dir", tn_dir,
                            timeout=120)
                assert r.returncode == 0, r.stderr
            assert flowing is not None, f"nothing flows after killing {name}"
            figures.append((name, flowing))
    finally:
        sender.stop.set()
        sender.join(timeout=15)
    print()
    for name, t in figures:
        print(f"kill -9 {name}: messages flow again after {t:.1f} s")
    # In the end every accepted message is delivered, once.
    texts = [t for t, _ in sender.accepted]
    v4now = by_name(state_of(tn_dir))["v4"]
    deadline = time.time() + 120
    while True:
        got = received(v4now["chat_url"])
        if set(texts) <= set(got):
            break
        assert time.time() < deadline, \
            f"{len(set(texts) - set(got))} of {len(texts)} never arrived"
        time.sleep(0.5)
    dups = {t for t in got if got.count(t) > 1}
    assert not dups, f"delivered twice: {sorted(dups)[:10]}"
    # And v1 knows: every one is "delivered" (acks may still be on the way).
    while True:
        out = all_messages(v1["chat_url"], f"&peer={v4['pk']}") or []
        states = {m["text"]: m["state"] for m in out
                  if m["direction"] == "out"}
        left = [t for t in texts if states.get(t) != "delivered"]
        if not left:
            break
        assert time.time() < deadline, f"not delivered at v1: {left[:10]}"
        time.sleep(0.5)
    print(f"{len(texts)} messages accepted, all delivered once "
          f"({sender.refused} refused while v1's chat was busy)")
