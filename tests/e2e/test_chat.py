"""hopwire-chat end to end: visors A - B - C in a line (transports A-B and
B-C only) with a setup node, each visor launching hopwire-chat from its
config; messages go A -> C and back over two-hop routes, through the JSON
API, the event stream, and the web page driven in headless Chromium
(WebDriver over chromedriver, standard library only)."""
import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import bin_path, free_port, http_get, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


# --- visors with the chat app ---------------------------------------------

def with_chat(v, setup_pks=()):
    """Adds the chat app (and trusted setup nodes) to v's config before it
    starts; v.chat is the app's HTTP base URL."""
    port = free_port()
    cfg = json.loads(v.config.read_text())
    cfg["apps"] = [{"name": "chat", "binary": "hopwire-chat",
                    "args": ["--http", f"127.0.0.1:{port}"], "port": 1}]
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


def chat_line(control_plane, visors):
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c = (with_chat(visors(n, discovery=disc.url), [s.pk])
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


def send(v, to, text, timeout=20):
    """POSTs a message, retrying while the route cannot be built yet (502):
    returns the message id."""
    last = None

    def attempt():
        nonlocal last
        last = request("POST", f"{v.chat}/message",
                       {"recipient": to.pk, "message": text})
        return last[0] != 502 and last
    try:
        status, body = wait_for(attempt, timeout=timeout,
                                what="the message to go out")
    except AssertionError:
        raise AssertionError(f"send failed: {last}; log: {chat_log(v)}")
    assert status == 200, (status, body, chat_log(v))
    assert isinstance(body["id"], int) and body["id"] > 0
    return body["id"]


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

    # The history is SQLite in the app's folder, schema version 1.
    db = sqlite3.connect(c.chat_dir / "chat.db")
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM messages WHERE peer = ?",
                          (a.pk,)).fetchone()[0] == 7
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

    # A key nobody has: 502 with the visor's reason, nothing stored.
    status, body = post({"recipient": other, "message": "anyone there?"})
    assert status == 502, (status, body)
    assert other in body["error"] and len(body["error"]) > len(other) + 20
    assert messages(a) == []

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
    for bad in (b'{"message": "good"}\n{"message": ' + b"x" * 40000,
                b'{"message": "good"}\nthis is not json\n{"message": "no"}\n',
                b'{"message": "good"}\n{"message": ""}\n{"message": "no"}\n'):
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
        # The first send may meet a route that is still being built: the
        # page says so and keeps the text; send again until it goes.
        deadline = time.time() + 30
        while True:
            wd.click("#send-button")
            wait_for(lambda: wd.js("return document.getElementById("
                                   "'send-button').disabled") is False,
                     timeout=20, what="the send to finish")
            if any(m["text"] == text and m["direction"] == "out"
                   for m in page_messages(wd)):
                break
            status = wd.js("return document.getElementById('status')"
                           ".textContent")
            assert time.time() < deadline, f"not sent: {status}"
            time.sleep(1)
        assert wd.js("return document.getElementById('message-input')"
                     ".value") == ""

        wd.switch(tab_c)
        got = wait_for(lambda: [m for m in page_messages(wd)
                                if m["text"] == text],
                       timeout=15, what="the message on C's page")
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
