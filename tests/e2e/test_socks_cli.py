"""`hopwire socks use|off|exit|status` (docs/socks.md) and the control API
under them: PUT /v1/apps/NAME, GET /v1/apps/NAME/status and /loops
(docs/api.md). The client on a, the exit on c, two hops apart; real curl
through the client's listener."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import free_port, wait_for
from test_routing import line_of_three, link, registered


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=15)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(15)
        s.connect(self.unix_path)
        self.sock = s


def api(v, method, path, body=None):
    """One request to v's control socket: (status, JSON answer)."""
    conn = UnixHTTP(v.socket)
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    conn.request(method, path, body=body,
                 headers={"Content-Type": "application/json"}
                 if body is not None else {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, json.loads(data) if data else None


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def curl(port, url):
    return subprocess.run(["curl", "-sS", "--max-time", "20",
                           "--socks5-hostname", f"127.0.0.1:{port}", url],
                          capture_output=True, timeout=30)


def app_entry(v, name):
    return next(e for e in v.json("app", "ls") if e["name"] == name)


def config_app(v, name):
    cfg = json.loads(v.config.read_text())
    return next(e for e in cfg["apps"] if e["name"] == name)


@pytest.fixture
def www(tmp_path):
    """A local HTTP server with /blob (4 MiB of random bytes): (port,
    sha256 of /blob)."""
    root = tmp_path / "www"
    root.mkdir()
    blob = os.urandom(4 << 20)
    (root / "blob").write_bytes(blob)
    port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", "--bind",
                             "127.0.0.1", str(port)], cwd=root,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: listening(port), what="the HTTP server")
    yield port, hashlib.sha256(blob).hexdigest()
    http.terminate()
    http.wait(timeout=10)


def fetch_ok(port, http_port, digest):
    r = curl(port, f"http://127.0.0.1:{http_port}/blob")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == digest


def test_socks_use_persists_status_and_refusal(tmp_path, control_plane,
                                               visors, www):
    http_port, digest = www
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)

    # The exit on c, created by the command (c's config had no apps).
    r = c.cli("socks", "exit", "--allow", "any", "--allow-loopback")
    assert r.returncode == 0, r.stderr
    assert config_app(c, "socks")["args"] == ["--allow", "any",
                                              "--allow-loopback"]
    assert config_app(c, "socks")["port"] == 3

    # The client on a, pointed at c.
    port = free_port()
    r = a.cli("socks", "use", c.pk, "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr
    assert c.pk in r.stdout
    entry = config_app(a, "socks-client")
    assert entry["binary"] == "hopwire-socks-client"
    assert entry["port"] == 4 and entry["autostart"] is True
    assert entry["args"] == ["--listen", f"127.0.0.1:{port}",
                             "--exit", c.pk]
    wait_for(lambda: listening(port), what="the client's listener")
    fetch_ok(port, http_port, digest)

    # status: the exit, the route to it hop by hop, counts and bytes.
    # The client writes its status at most once a second.
    def client_status():
        return a.json("socks", "status")["client"]

    wait_for(lambda: (client_status()["status"] or {}).get(
        "bytes_down", 0) >= 4 << 20, what="the client's status")
    client = client_status()
    assert client["app"]["state"] == "running"
    assert client["status"]["exit"] == c.pk
    assert client["status"]["state"] == "up"
    assert client["status"]["conns_total"] >= 1
    before = client["status"]["bytes_down"]
    fetch_ok(port, http_port, digest)
    wait_for(lambda: client_status()["status"]["bytes_down"] >=
             before + (4 << 20), what="bytes_down to grow by the second "
             "fetch")
    assert client_status()["status"]["conns_total"] >= 2
    assert client_status()["status"]["bytes_up"] > 0
    text = a.cli("socks", "status").stdout
    assert f"exit in use {c.pk}" in text, text
    assert "conns:" in text and "bytes:" in text, text
    # The client holds one loop to the exit: its group, over b.
    route = client_status()["route"]
    assert route["dst"] == f"{c.pk}:3" and route["role"] == "initiator"
    assert [h["from"] for h in route["hops"]] == [a.pk, b.pk]
    assert [h["to"] for h in route["hops"]] == [b.pk, c.pk]
    text = a.cli("socks", "status").stdout
    assert "route:     2 hops, open" in text, text
    assert f"-> {b.pk}\n" in text and f"-> {c.pk} (the exit)" in text, text
    # The exit's side: a's loop.
    eloops = c.json("socks", "status")["exit"]["loops"]
    assert [lp["remote"].split(":")[0] for lp in eloops] == [a.pk]
    # c runs the exit: who it allows.
    text = c.cli("socks", "status").stdout
    assert "client: none configured" in text, text
    assert "allows:    any" in text, text

    # After a restart of a's visor the client comes back on its own.
    a.stop()
    a.start()
    # Transports added by hand are not the config's: a's link to b again
    # (the socks client is not set up again).
    link(a, b)
    wait_for(lambda: registered(disc.url, a, b), what="a-b in discovery")
    wait_for(lambda: listening(port), timeout=20,
             what="the client after the visor's restart")
    wait_for(lambda: curl(port, f"http://127.0.0.1:{http_port}/blob")
             .returncode == 0, timeout=30, what="a fetch after the restart")
    fetch_ok(port, http_port, digest)

    # The exit now allows b only: a is refused, and the exit says why.
    r = c.cli("socks", "exit", "--allow", b.pk, "--allow-loopback")
    assert r.returncode == 0, r.stderr
    assert config_app(c, "socks")["args"] == ["--allow", b.pk,
                                              "--allow-loopback"]
    r = curl(port, f"http://127.0.0.1:{http_port}/blob")
    assert r.returncode == 97, r.stderr  # CURLE_PROXY: a SOCKS error
    log = c.dir / "local" / "apps" / "socks.log"
    wait_for(lambda: f"refused loop from {a.pk}: not in --allow" in
             log.read_text(), what="the exit's refusal in its log")
    text = c.cli("socks", "status").stdout
    assert f"allows:    {b.pk}" in text, text

    # off: the client stays, idle, without exits.
    r = a.cli("socks", "off")
    assert r.returncode == 0, r.stderr
    assert "--exit" not in config_app(a, "socks-client")["args"]
    assert app_entry(a, "socks-client")["state"] == "running"
    assert "none (idle" in a.cli("socks", "status").stdout


def test_socks_cli_and_put_refuse_bad_input(visors, tmp_path):
    v = visors("v").start()
    pk = v.pk  # any valid key will do

    def fails(*args, msg):
        r = v.cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert msg in r.stderr, r.stderr

    fails("socks", "use", msg="name the exit's visor key")
    fails("socks", "use", "12zz",
          msg="'12zz' is not a visor's public key: not 64 hex")
    fails("socks", "use", pk[:-2] + "zz", msg="is not a visor's public "
          "key: not hex")
    fails("socks", "use", "ab" * 32, msg="no valid Ed25519 key")
    fails("socks", "use", pk, "--listen", "nope",
          msg="--listen 'nope' is not ADDR:PORT")
    fails("socks", "use", pk, "--listen", "127.0.0.1:99999",
          msg="is not ADDR:PORT")
    fails("socks", "use", pk, "--listen", "0.0.0.0:1080",
          msg="beyond loopback: give --auth FILE")
    fails("socks", "use", pk, "--auth", str(tmp_path / "missing"),
          msg="No such file")
    fails("socks", "use", pk, "--off", msg="--off takes no exits")
    fails("socks", "use", pk, "--colour", msg="unknown option '--colour'")
    fails("socks", "exit", msg="--allow PK (repeatable) or --allow any")
    fails("socks", "exit", "--allow", "me",
          msg="--allow 'me' is neither a visor's public key")
    fails("socks", "exit", "--allow", "any", "--allow-dest", "a b",
          msg="is not CIDR[:PORTS]")
    fails("socks", "frob", msg="unknown command 'frob'")
    r = v.cli("socks", "--help")
    assert r.returncode == 0 and "curl --socks5-hostname" in r.stdout
    # Nothing was configured by any of that.
    assert "apps" not in json.loads(v.config.read_text()) or \
        json.loads(v.config.read_text())["apps"] == []
    text = v.cli("socks", "status").stdout
    assert "client: none configured on this visor" in text, text

    # PUT: every field checked, 400 with the field named.
    cases = [
        ({"port": 50}, "binary: missing"),
        ({"binary": "x"}, "port: missing"),
        ({"binary": 7, "port": 50}, "binary: must be a string"),
        ({"binary": "", "port": 50}, "binary: must not be empty"),
        ({"binary": "x", "port": "50"}, "port: must be a whole number"),
        ({"binary": "x", "port": 65536},
         "port: 65536 is out of range 0..65535"),
        ({"binary": "x", "port": 2, "capabilities": ["CAP_SYS_ADMIN"]},
         "capabilities[0]: 'CAP_SYS_ADMIN' is not a capability"),
        ({"binary": "x", "port": 50, "args": "-v"},
         "args: must be a list of strings"),
        ({"binary": "x", "port": 50, "args": ["-v", 3]},
         "args[1]: must be a string"),
        ({"binary": "x", "port": 50, "autostart": "yes"},
         "autostart: must be true or false"),
        ({"binary": "x", "port": 50, "colour": 1}, "colour: unknown setting"),
        ([1], "body must be a JSON object"),
    ]
    for body, msg in cases:
        status, doc = api(v, "PUT", "/v1/apps/demo", body)
        assert status == 400, (body, doc)
        assert msg in doc["error"], (body, doc)
    status, doc = api(v, "PUT", "/v1/apps/a.b",
                      {"binary": "x", "port": 50})
    assert status == 400 and "'a.b' is not an app name" in doc["error"]
    status, doc = api(v, "PUT", "/v1/apps/demo", "not json")
    assert status == 400
    assert "apps" not in json.loads(v.config.read_text()) or \
        json.loads(v.config.read_text())["apps"] == []

    # A real one; then its port is taken for another (409).
    status, doc = api(v, "PUT", "/v1/apps/demo",
                      {"binary": "/bin/sleep", "args": ["60"], "port": 50})
    assert status == 200, doc
    assert doc["state"] == "running" and doc["args"] == ["60"]
    status, doc = api(v, "PUT", "/v1/apps/other",
                      {"binary": "/bin/sleep", "port": 50})
    assert status == 409 and "port 50 is taken by app 'demo'" in \
        doc["error"]
    # Replacing it restarts it with the new args.
    pid = doc_pid = app_entry(v, "demo")["pid"]
    status, doc = api(v, "PUT", "/v1/apps/demo",
                      {"binary": "/bin/sleep", "args": ["61"], "port": 50})
    assert status == 200 and doc["state"] == "stopping", doc
    wait_for(lambda: app_entry(v, "demo")["state"] == "running" and
             app_entry(v, "demo")["pid"] != doc_pid,
             what="demo restarted with its new args")
    assert app_entry(v, "demo")["args"] == ["61"]
    assert app_entry(v, "demo")["restarts"] == 0
    assert pid != app_entry(v, "demo")["pid"]
    assert config_app(v, "demo")["args"] == ["61"]

    # GET /v1/apps/NAME/status: 404 until the app writes one, 502 for
    # what is not a JSON object or is too large, else the document.
    status, doc = api(v, "GET", "/v1/apps/demo/status")
    assert status == 404 and "has written no status" in doc["error"]
    sfile = v.dir / "local" / "apps" / "demo" / "status.json"
    sfile.write_text("[1, 2]")
    status, doc = api(v, "GET", "/v1/apps/demo/status")
    assert status == 502 and "is not a JSON object" in doc["error"]
    sfile.write_text("{oops")
    status, doc = api(v, "GET", "/v1/apps/demo/status")
    assert status == 502 and "is not JSON" in doc["error"]
    sfile.write_text(json.dumps({"pad": "x" * (64 << 10)}))
    status, doc = api(v, "GET", "/v1/apps/demo/status")
    assert status == 502 and "over the 65536" in doc["error"]
    mine = {"version": 1, "state": "up", "conns_open": 2, "bytes_up": 9}
    tmp = sfile.with_suffix(".tmp")
    tmp.write_text(json.dumps(mine))
    tmp.rename(sfile)
    assert api(v, "GET", "/v1/apps/demo/status") == (200, mine)
    assert api(v, "POST", "/v1/apps/demo/status")[0] == 405
    status, doc = api(v, "GET", "/v1/apps/nope/status")
    assert status == 404 and "no app 'nope'" in doc["error"]
    assert api(v, "GET", "/v1/apps/demo/loops") == (200, [])
    # A restart clears what the previous process reported.
    v.cli("app", "stop", "demo")
    assert v.cli("app", "start", "demo").returncode == 0
    assert api(v, "GET", "/v1/apps/demo/status")[0] == 404
