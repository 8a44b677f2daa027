"""hopwire-chat end to end: visors A - B - C in a line (transports A-B and
B-C only) with a setup node, each visor launching hopwire-chat from its
config; messages go A -> C and back over two-hop routes, through the JSON
API, the event stream, and the web page driven in headless Chromium
(WebDriver over chromedriver, standard library only). Delivery: messages
stay pending while the peer's app is down or restarting and end delivered
exactly once and in order, or failed once expired; acks and ids on the
wire are checked with raw loops (`hopwire route dial`)."""
import http.client
import json
import os
import select
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import bin_path, free_port, http_get, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# --- visors with the chat app ---------------------------------------------

def with_chat(v, setup_pks=(), args=()):
    """Adds the chat app (with args, and trusted setup nodes) to v's config
    before it starts; v.chat is the app's HTTP base URL."""
    port = free_port()
    cfg = json.loads(v.config.read_text())
    cfg["apps"] = [{"name": "chat", "binary": "hopwire-chat",
                    "args": ["--http", f"127.0.0.1:{port}", *args],
                    "port": 1}]
    if setup_pks:
        cfg["routing"] = {"setup_nodes": list(setup_pks)}
    v.config.write_text(json.dumps(cfg, indent=2))
    v.chat = f"http://127.0.0.1:{port}"
    v.chat_dir = v.dir / "local" / "apps" / "chat"
    return v


def chat_log(v):
    p = v.dir / "local" / "apps" / "chat.log"
    return p.read_text(errors="replace") if p.exists() else "(no chat log)"


def chat_up(v):
    try:
        return http_get(f"{v.chat}/info", timeout=1)["pk"] == v.pk
    except OSError:
        return False


def wait_chat(v):
    try:
        wait_for(lambda: chat_up(v), timeout=15, what=f"chat app of {v.pk}")
    except AssertionError:
        raise AssertionError(f"chat app did not come up: {chat_log(v)}")


def link(a, b):
    r = a.cli("tp", "add", b.pk, "--addr", b.addr)
    assert r.returncode == 0, r.stderr


def registered(url, a, b):
    tps = http_get(f"{url}/v1/transports?edge={a.pk}")["transports"]
    return any(b.pk in t["edges"] for t in tps)


def chat_line(control_plane, visors, args=()):
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c = (with_chat(visors(n, discovery=disc.url), [s.pk], args)
               for n in "abc")
    for v in (a, b, c):
        v.start()
    link(a, b)
    link(b, c)
    wait_for(lambda: registered(disc.url, a, b) and
             registered(disc.url, b, c), what="transports in discovery")
    for v in (a, b, c):
        wait_chat(v)
    return a, b, c


# --- HTTP ------------------------------------------------------------------

def request(method, url, body=None, raw=None, headers=None, timeout=30):
    """Returns (status, parsed JSON body or None)."""
    data = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method,
                                 headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def queue(v, to, text):
    """POSTs a message: returns its id (it is pending)."""
    status, body = request("POST", f"{v.chat}/message",
                           {"recipient": to if isinstance(to, str)
                            else to.pk, "message": text})
    assert status == 200, (status, body, chat_log(v))
    assert isinstance(body["id"], int) and body["id"] > 0
    assert body["state"] == "pending", body
    return body["id"]


def state(v, ident):
    got = [m for m in messages(v, after=ident - 1, limit=1)
           if m["id"] == ident]
    assert got and got[0]["direction"] == "out", got
    return got[0]["state"]


def wait_state(v, ident, want, timeout=40):
    try:
        wait_for(lambda: state(v, ident) == want, timeout=timeout,
                 what=f"message {ident} to be {want}")
    except AssertionError:
        raise AssertionError(f"message {ident} is {state(v, ident)}, not "
                             f"{want}; log: {chat_log(v)}")


def send(v, to, text, timeout=40):
    """Queues a message and waits until it is delivered: returns its id."""
    ident = queue(v, to, text)
    wait_state(v, ident, "delivered", timeout)
    return ident


def messages(v, **query):
    q = "&".join(f"{k}={val}" for k, val in query.items())
    status, body = request("GET", f"{v.chat}/messages" + (f"?{q}" if q
                                                          else ""))
    assert status == 200, body
    return body


def has_message(v, peer, direction, text):
    return [m for m in messages(v, peer=peer.pk)
            if m["direction"] == direction and m["text"] == text]


class Events:
    """A /events stream read line by line."""

    def __init__(self, v):
        host, port = v.chat[len("http://"):].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=20)
        self.conn.request("GET", "/events")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.getheader("Content-Type").startswith(
            "text/event-stream")

    def next_message(self):
        """The JSON of the next data event."""
        while True:
            line = self.resp.readline()
            assert line, "event stream ended"
            if line.startswith(b"data: "):
                return json.loads(line[6:])

    def close(self):
        self.conn.close()


class RawLoop:
    """A loop from v's visor to peer's chat app made by `hopwire route
    dial`: lines as another chat app (or a hostile one) would write them,
    and the lines peer's app writes back."""

    def __init__(self, v, peer):
        self.proc = subprocess.Popen(
            [bin_path("hopwire"), "--visor", v.socket, "route", "dial",
             peer.pk, "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=0)
        self.buf = b""

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self, timeout=20):
        """The next line from the peer, parsed."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            assert left > 0, f"no line from the peer; got {self.buf!r}"
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, (f"loop closed; got {self.buf!r}: "
                               f"{self.proc.stderr.read()!r}")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def nothing_more(self, seconds=1.0):
        """Asserts that the peer writes nothing for a while."""
        r = select.select([self.proc.stdout], [], [], seconds)[0]
        assert not r and not self.buf, self.buf + (
            os.read(self.proc.stdout.fileno(), 65536) if r else b"")

    def wait_closed(self, timeout=20):
        """Waits for the peer to close the loop (the CLI then ends)."""
        self.proc.wait(timeout=timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def app_pid(v):
    apps = [x for x in v.json("app", "ls") if x["name"] == "chat"]
    assert apps and apps[0]["state"] == "running", apps
    return apps[0]["pid"]


# --- the tests -------------------------------------------------------------

def test_chat_across_two_hops(control_plane, visors):
    a, b, c = chat_line(control_plane, visors)

    for v in (a, b, c):
        assert http_get(f"{v.chat}/info") == {"pk": v.pk, "port": 1}

    events = Events(c)
    try:
        hello = "hello C, this is A \u2713 \u00e9\u00e8 \U0001f600"
        sent_id = send(a, c, hello)
        ev = events.next_message()
        assert ev["peer"] == a.pk and ev["direction"] == "in"
        assert ev["text"] == hello
    finally:
        events.close()
    got = wait_for(lambda: has_message(c, a, "in", hello),
                   what="the message at C")
    assert got[0]["time_ms"] > 0
    out = has_message(a, c, "out", hello)
    assert out and out[0]["id"] == sent_id

    # The reply comes back (C dials its own loop to A).
    reply = "hi A, C here.\nSecond line, \"quoted\" and \\ backslash."
    send(c, a, reply)
    wait_for(lambda: has_message(a, c, "in", reply), what="the reply at A")

    # More messages reuse A's loop; order is kept.
    for i in range(5):
        send(a, c, f"message {i}")
    wait_for(lambda: len(messages(c, peer=a.pk)) == 7, what="7 at C")
    texts = [m["text"] for m in messages(c, peer=a.pk)]
    assert texts == [hello, reply] + [f"message {i}" for i in range(5)]
    ids = [m["id"] for m in messages(c)]
    assert ids == sorted(ids)

    # after= pages forward.
    first = messages(c)[0]["id"]
    assert [m["id"] for m in messages(c, after=first)] == ids[1:]
    assert messages(c, limit=2) == messages(c)[-2:]

    peers = http_get(f"{c.chat}/peers")
    assert [(p["pk"], p["count"]) for p in peers] == [(a.pk, 7)]
    assert http_get(f"{b.chat}/peers") == []

    # Each outgoing message says it was delivered.
    assert {m["state"] for m in messages(a, peer=c.pk)
            if m["direction"] == "out"} == {"delivered"}
    assert all("state" not in m for m in messages(c, peer=a.pk)
               if m["direction"] == "in")

    # The history is SQLite in the app's folder, schema version 2.
    db = sqlite3.connect(c.chat_dir / "chat.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM messages WHERE peer = ?",
                          (a.pk,)).fetchone()[0] == 7
        # Each message arrived with the sender's id: 32 random hex.
        ids = [r[0] for r in db.execute(
            "SELECT msg_id FROM messages WHERE direction = 'in'")]
        assert len(ids) == 6 and len(set(ids)) == 6
        assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids), ids
    finally:
        db.close()


def test_chat_refuses_bad_requests(control_plane, visors):
    disc = control_plane.discovery()
    a = with_chat(visors("a", discovery=disc.url)).start()
    wait_chat(a)
    url = a.chat
    other = "ab" * 32

    def post(body=None, raw=None, headers=None):
        return request("POST", f"{url}/message", body, raw, headers)

    cases = [
        post(raw=b"not json"),
        post(raw=b""),
        post([1, 2]),
        post({"message": "hi"}),
        post({"recipient": "zz", "message": "hi"}),
        post({"recipient": other[:-1], "message": "hi"}),
        post({"recipient": 7, "message": "hi"}),
        post({"recipient": other, "message": ""}),
        post({"recipient": other, "message": 5}),
        post({"recipient": other, "message": "x" * 4097}),
        post({"recipient": other, "message": "\u00e9" * 2049}),
        post({"recipient": other, "message": "hi", "extra": 1}),
        post({"recipient": a.pk, "message": "to myself"}),
        post(raw=b'{"recipient": "' + other.encode() +
             b'", "message": "a\\u0000b"}'),
        request("GET", f"{url}/messages?peer=xyz"),
        request("GET", f"{url}/messages?after=-1"),
        request("GET", f"{url}/messages?limit=0"),
    ]
    for status, body in cases:
        assert status == 400, (status, body)
        assert isinstance(body["error"], str) and body["error"]

    status, body = post(raw=b"x" * (16 * 1024 + 1))
    assert status == 413, (status, body)
    # Announced far too big: refused before the body is sent.
    host, port = url[len("http://"):].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("POST", "/message")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10 * 1024 * 1024))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413 and "error" in json.loads(r.read())
    finally:
        conn.close()
    for path in ("/nope", "/messages/1", "/message/"):
        status, body = request("GET", url + path)
        assert status == 404 and "error" in body, (path, status, body)
    for method, path in (("DELETE", "/message"), ("GET", "/message"),
                         ("POST", "/info"), ("PUT", "/messages"),
                         ("POST", "/events"), ("POST", "/")):
        status, body = request(method, url + path, raw=b"{}")
        assert status == 405 and "error" in body, (method, path, status)

    # Browsers: another site's page may not send, nor a rebound name read.
    status, body = post({"recipient": other, "message": "hi"},
                        headers={"Origin": "http://evil.example",
                                 "Content-Type": "application/json"})
    assert status == 403, (status, body)
    status, body = request("GET", f"{url}/messages",
                           headers={"Host": "evil.example"})
    assert status == 403, (status, body)

    # A key nobody has: accepted, pending; the log has the visor's reason.
    first = queue(a, other, "anyone there?")
    wait_for(lambda: f"peer {other}: cannot deliver" in chat_log(a),
             what="the failed dial in the log")
    assert state(a, first) == "pending"
    assert [m["text"] for m in messages(a)] == ["anyone there?"]

    # At most 1000 pending to one peer: the next is refused, saying why;
    # another peer still gets messages.
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]),
                                      timeout=10)
    try:
        for i in range(999):
            conn.request("POST", "/message", json.dumps(
                {"recipient": other, "message": f"m{i}"}),
                {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, (i, r.status, r.read())
            r.read()
    finally:
        conn.close()
    status, body = post({"recipient": other, "message": "one too many"})
    assert status == 429, (status, body)
    assert "1000 messages" in body["error"] and other in body["error"]
    queue(a, "cd" * 32, "someone else")
    counts = {p["pk"]: p["count"] for p in http_get(f"{url}/peers")}
    assert counts == {other: 1000, "cd" * 32: 1}, counts

    # Still serving, and the page is there with its stable ids.
    assert http_get(f"{url}/info")["pk"] == a.pk
    with urllib.request.urlopen(url + "/", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.read().decode()
    for ident in ("local-pk", "peer-input", "message-input", "send-button",
                  "messages"):
        assert f'id="{ident}"' in page, ident
    assert "http://" not in page.replace("http://www.w3.org", "")


def test_chat_closes_loops_that_break_the_protocol(control_plane, visors):
    """A peer that is not a chat app (the CLI's `route dial` to port 1)
    sends one good line, then garbage: the good one is stored, the loop
    is closed, nothing else is stored, and the app goes on."""
    a, b, c = chat_line(control_plane, visors)
    bad_lines = [b'{"message": ""}', b'{"ack": 5}', b'{"ack": ""}',
                 b'{"ack": null}', b'{"ack": "has space"}',
                 b'{"ack": "' + b"x" * 65 + b'"}', b'{"ack": "\\u00e9"}',
                 b'{"message": "no", "id": 7}',
                 b'{"message": "no", "id": "bad id"}', b'{"other": 1}',
                 b'["message", "no"]']
    for bad in [b'{"message": "good"}\n{"message": ' + b"x" * 40000,
                b'{"message": "good"}\nthis is not json\n{"message": "no"}\n'
                ] + [b'{"message": "good"}\n' + line +
                     b'\n{"message": "no", "id": "n1"}\n'
                     for line in bad_lines]:
        before = len(messages(c, peer=a.pk))
        p = subprocess.Popen([bin_path("hopwire"), "--visor", a.socket,
                              "route", "dial", c.pk, "1"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        try:
            p.stdin.write(bad)
            p.stdin.flush()
            # C closes the loop: the dialing end sees the close and ends.
            p.wait(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
        got = messages(c, peer=a.pk)[before:]
        assert [m["text"] for m in got] == ["good"], got
    assert "closing loop" in chat_log(c)

    # A duplicate line (same id) is stored once and acknowledged twice,
    # also when the retry comes on another loop.
    before = len(messages(c, peer=a.pk))
    raw = RawLoop(a, c)
    try:
        raw.write(b'{"message": "dup", "id": "0123abcd"}\n' * 2)
        assert raw.line() == {"ack": "0123abcd"}
        assert raw.line() == {"ack": "0123abcd"}
        # Acks for unknown ids are ignored; a message without an id (an
        # older sender) is stored but not acknowledged; the loop goes on.
        raw.write(b'{"ack": "ffffffff"}\n{"ack": "0123abcd"}\n'
                  b'{"message": "no id"}\n'
                  b'{"message": "after", "id": "k-2_x"}\n')
        assert raw.line() == {"ack": "k-2_x"}
        raw.nothing_more()
    finally:
        raw.close()
    raw = RawLoop(a, c)
    try:
        raw.write(b'{"message": "dup", "id": "0123abcd", "later": [1]}\n')
        assert raw.line() == {"ack": "0123abcd"}
    finally:
        raw.close()
    got = [m["text"] for m in messages(c, peer=a.pk)[before:]]
    assert got == ["dup", "no id", "after"], got
    assert "ignoring an ack for ffffffff" in chat_log(c)

    send(a, c, "still talking")
    wait_for(lambda: has_message(c, a, "in", "still talking"),
             what="a normal message after the bad peers")


# --- the page in headless Chromium -----------------------------------------

class WebDriver:
    """The few W3C WebDriver commands the test needs, over chromedriver's
    HTTP API."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self, tmp_path):
        self.port = free_port()
        self.log = open(tmp_path / "chromedriver.log", "wb")
        self.proc = subprocess.Popen(
            [CHROMEDRIVER, f"--port={self.port}"],
            stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        wait_for(self._ready, timeout=20, what="chromedriver")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         f"--user-data-dir={tmp_path / 'chromium'}"]}}}}
        self.session = self.cmd("POST", "/session", caps)["sessionId"]

    def _ready(self):
        try:
            with urllib.request.urlopen(self.base + "/status",
                                        timeout=1) as r:
                return json.loads(r.read())["value"]["ready"]
        except (OSError, ValueError, KeyError):
            return False

    def cmd(self, method, path, body=None):
        if self.session and not path.startswith("/session"):
            path = f"/session/{self.session}{path}"
        data = json.dumps(body if body is not None else {}).encode() \
            if method == "POST" else None
        req = urllib.request.Request(self.base + path, data=data,
                                     method=method, headers={
                                         "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise AssertionError(f"webdriver {method} {path}: "
                                 f"{e.read()[:500]!r}")

    def open(self, url):
        self.cmd("POST", "/url", {"url": url})

    def find(self, css):
        return self.cmd("POST", "/element", {"using": "css selector",
                                            "value": css})[self.ELEMENT]

    def on_element(self, css, action, body=None):
        """Finds css and acts on it, finding it again if the page replaced
        the element in between."""
        for attempt in range(3):
            try:
                return self.cmd("POST",
                                f"/element/{self.find(css)}/{action}", body)
            except AssertionError as e:
                if "stale element" not in str(e) or attempt == 2:
                    raise
                time.sleep(0.1)

    def type(self, css, text):
        self.on_element(css, "value", {"text": text})

    def click(self, css):
        self.on_element(css, "click")

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script,
                                                   "args": list(args)})

    def new_tab(self):
        return self.cmd("POST", "/window/new", {"type": "tab"})["handle"]

    def switch(self, handle):
        self.cmd("POST", "/window", {"handle": handle})

    def window(self):
        return self.cmd("GET", "/window")

    def close(self):
        try:
            if self.session:
                self.cmd("DELETE", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


MESSAGES_JS = """
return Array.from(document.querySelectorAll('#messages .message')).map(
  e => ({direction: e.dataset.direction, peer: e.dataset.peer,
         state: e.dataset.state || null,
         shown: (e.querySelector('.state') || {}).textContent || '',
         text: e.querySelector('.text').textContent}));
"""


def page_messages(wd):
    return wd.js(MESSAGES_JS)


def test_chat_page_in_chromium(control_plane, visors, tmp_path):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER,
                                                       os.X_OK)):
        pytest.skip("Debian's chromium and chromium-driver are not "
                    "installed (apt-get install chromium chromium-driver)")
    a, b, c = chat_line(control_plane, visors)
    wd = WebDriver(tmp_path)
    try:
        # C's page is open first: the message must appear there live.
        wd.open(c.chat + "/")
        tab_c = wd.window()
        wait_for(lambda: wd.js("return document.getElementById("
                               "'local-pk').textContent") == c.pk,
                 what="C's page to show its key")
        wait_for(lambda: wd.js("return document.getElementById("
                               "'conn-state').className") == "live",
                 what="C's page to open its event stream")

        tab_a = wd.new_tab()
        wd.switch(tab_a)
        wd.open(a.chat + "/")
        wait_for(lambda: wd.js("return document.getElementById("
                               "'local-pk').textContent") == a.pk,
                 what="A's page to show its key")
        text = "Hello from A's browser <b>not bold</b> \u00e9"
        wd.type("#peer-input", c.pk)
        wd.type("#message-input", text)
        wd.click("#send-button")
        # Shown at once as pending (or delivered already), then delivered.
        wait_for(lambda: any(m["text"] == text and m["direction"] == "out"
                             and m["state"] in ("pending", "delivered")
                             for m in page_messages(wd)),
                 timeout=20, what="the message on A's page")
        assert wd.js("return document.getElementById('message-input')"
                     ".value") == ""
        wait_for(lambda: any(m["text"] == text and m["state"] == "delivered"
                             and "delivered" in m["shown"]
                             for m in page_messages(wd)),
                 timeout=40, what="the message delivered on A's page")

        wd.switch(tab_c)
        got = wait_for(lambda: [m for m in page_messages(wd)
                                if m["text"] == text],
                       timeout=20, what="the message on C's page")
        assert got[0]["direction"] == "in" and got[0]["peer"] == a.pk
        # Shown as text, not markup; A now in C's peer list.
        assert wd.js("return document.querySelectorAll('#messages b')"
                     ".length") == 0
        wait_for(lambda: a.pk in wd.js(
            "return Array.from(document.querySelectorAll('#peers .peer'))"
            ".map(e => e.dataset.pk)"), what="A in C's peer list")

        # C answers from its page; A's page shows it.
        wd.click(f"#peers .peer[data-pk='{a.pk}']")
        wait_for(lambda: wd.js("return document.getElementById("
                               "'peer-input').value") == a.pk,
                 what="A selected on C's page")
        wd.type("#message-input", "Answer from C's browser")
        wd.click("#send-button")
        wd.switch(tab_a)
        wait_for(lambda: any(m["text"] == "Answer from C's browser" and
                             m["direction"] == "in"
                             for m in page_messages(wd)),
                 timeout=30, what="C's answer on A's page")
    finally:
        wd.close()


def test_chat_waits_for_a_stopped_app(control_plane, visors):
    """Messages to a peer whose app is stopped stay pending (also across a
    restart of the sender's app) and are delivered, once each and in
    order, when it is back."""
    a, b, c = chat_line(control_plane, visors)
    send(a, c, "warm up")
    assert c.cli("app", "stop", "chat").returncode == 0
    first = queue(a, c, "while you were away")
    second = queue(a, c, "and another")
    wait_for(lambda: f"peer {c.pk}: cannot deliver" in chat_log(a),
             timeout=20, what="a failed attempt at A")
    assert state(a, first) == state(a, second) == "pending"

    # The sender's app restarts: the pending messages are in its history.
    assert a.cli("app", "stop", "chat").returncode == 0
    assert a.cli("app", "start", "chat").returncode == 0
    wait_chat(a)
    assert state(a, first) == "pending"

    assert c.cli("app", "start", "chat").returncode == 0
    wait_chat(c)
    wait_state(a, first, "delivered")
    wait_state(a, second, "delivered")
    texts = [m["text"] for m in messages(c, peer=a.pk)]
    assert texts == ["warm up", "while you were away", "and another"]


def test_chat_survives_kill_9_while_sending(control_plane, visors):
    """A message every 100 ms while the receiving app is frozen (SIGSTOP:
    messages written to the loop, not acknowledged) and then killed with
    SIGKILL (the visor restarts it); then the sender's app is killed with
    messages unacknowledged: every message accepted is delivered exactly
    once and in order."""
    a, b, c = chat_line(control_plane, visors)
    send(a, c, "warm up")
    sent = []

    def sender(prefix, n):
        for i in range(n):
            sent.append((queue(a, c, f"{prefix}{i}"), f"{prefix}{i}"))
            time.sleep(0.1)

    # The receiver dies with messages in flight.
    t = threading.Thread(target=sender, args=("n", 40))
    t.start()
    try:
        time.sleep(1.0)
        pid = app_pid(c)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
    finally:
        t.join()
    for ident, _ in sent:
        wait_state(a, ident, "delivered", timeout=60)

    # The sender dies with messages in flight: its next run sends them.
    pid = app_pid(c)
    os.kill(pid, signal.SIGSTOP)
    try:
        sender("m", 10)
        os.kill(app_pid(a), signal.SIGKILL)
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: chat_up(a), timeout=20,
             what="A's app restarted by its visor")
    for ident, _ in sent:
        wait_state(a, ident, "delivered", timeout=60)
    texts = [m["text"] for m in messages(c, peer=a.pk)]
    assert texts == ["warm up"] + [t for _, t in sent], texts
    assert [m["text"] for m in messages(a, peer=c.pk)] == texts


V1_SCHEMA = """
CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  peer TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  text TEXT NOT NULL,
  time_ms INTEGER NOT NULL);
CREATE INDEX messages_peer ON messages (peer, id);
PRAGMA user_version = 1;
"""


def test_chat_migrates_history_and_expires(control_plane, visors):
    """A history of the previous version (schema 1) keeps its messages;
    a message to a visor nobody can reach fails once --expire passes."""
    disc = control_plane.discovery()
    a = with_chat(visors("a", discovery=disc.url), args=("--expire", "2s"))
    peer = "ef" * 32
    a.chat_dir.mkdir(parents=True, mode=0o700)
    os.chmod(a.chat_dir.parent, 0o700)
    db = sqlite3.connect(a.chat_dir / "chat.db")
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO messages (peer, direction, text, time_ms) "
               "VALUES (?, 'in', 'old hello', 1000), "
               "(?, 'out', 'old reply', 2000)", (peer, peer))
    db.commit()
    db.close()
    a.start()
    wait_chat(a)
    old = messages(a)
    assert [(m["direction"], m["text"], m.get("state")) for m in old] == [
        ("in", "old hello", None), ("out", "old reply", "delivered")], old
    db = sqlite3.connect(a.chat_dir / "chat.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        db.close()

    ident = queue(a, "ab" * 32, "nobody will get this")
    assert state(a, ident) == "pending"
    wait_state(a, ident, "failed", timeout=15)
    assert "expired" in chat_log(a)
    # A newer history than this version knows is refused, not misread.
    assert a.cli("app", "stop", "chat").returncode == 0
    db = sqlite3.connect(a.chat_dir / "chat.db")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    assert a.cli("app", "start", "chat").returncode == 0
    wait_for(lambda: "newer than this hopwire-chat" in chat_log(a),
             what="the refusal of a newer history")
