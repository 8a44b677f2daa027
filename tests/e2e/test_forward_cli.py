"""`hopwire forward expose|unexpose|add|rm|ls|stdio` (docs/forward.md
"Using it") and the control API under them: GET|PUT
/v1/apps/NAME/settings (docs/api.md).

Most tests need no forwarding: they check the settings document the CLI
writes, what it refuses, and how it reads the app's status, with
fakeforward.py standing in for the app where a running one is needed.
test_edit_validate_and_persist and test_with_the_app_mapping_ls_and_stdio
run the real hopwire-forward (src/apps/forward/); the last carries bytes
through it."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import bin_path, free_port, wait_for
from test_socks_cli import api

HERE = Path(__file__).resolve().parent


def settings_file(v):
    return v.dir / "local" / "apps" / "forward" / "settings.json"


def settings(v):
    st, doc = api(v, "GET", "/v1/apps/forward/settings")
    assert st == 200, doc
    return doc


def config_app(v, name):
    cfg = json.loads(v.config.read_text())
    return next((e for e in cfg.get("apps", []) if e["name"] == name), None)


def fake_app(v, autostart=True):
    """Configures the app "forward" on v with fakeforward.py as its
    program."""
    st, e = api(v, "PUT", "/v1/apps/forward",
                {"binary": sys.executable,
                 "args": [str(HERE / "fakeforward.py")], "port": 47,
                 "autostart": autostart})
    assert st == 200, e


def app_state(v):
    return next(e for e in v.json("app", "ls")
                if e["name"] == "forward")["state"]


@pytest.fixture
def pks(tmp_path, hopwire):
    """Three valid visor keys that are nobody's here."""
    out = []
    for i in range(3):
        key = tmp_path / f"k{i}.key"
        r = hopwire("keygen", "--out", key)
        assert r.returncode == 0, r.stderr
        out.append(hopwire("pk", "--key", key).stdout.strip())
    return out


def test_settings_api(visors):
    v = visors("a").start()
    # Not an app of the config: 404, for both.
    st, e = api(v, "GET", "/v1/apps/fwd/settings")
    assert st == 404 and "no app 'fwd'" in e["error"]
    st, e = api(v, "PUT", "/v1/apps/fwd/settings", {"revision": 0})
    assert st == 404
    st, e = api(v, "PUT", "/v1/apps/fwd",
                {"binary": "/bin/true", "port": 99, "autostart": False})
    assert st == 200, e
    path = v.dir / "local" / "apps" / "fwd" / "settings.json"

    st, doc = api(v, "GET", "/v1/apps/fwd/settings")
    assert (st, doc) == (200, {"revision": 0})
    for body, what in ([[1], "JSON object"], ['"x"', "JSON object"],
                       [{}, "revision"], [{"revision": "0"}, "revision"],
                       [{"revision": 1.0}, "revision"],
                       [{"revision": -1}, "revision"],
                       [{"revision": None}, "revision"]):
        st, e = api(v, "PUT", "/v1/apps/fwd/settings", body)
        assert st == 400 and what in e["error"], (body, e)
    assert not path.exists()

    st, doc = api(v, "PUT", "/v1/apps/fwd/settings",
                  {"revision": 0, "anything": {"the visor": "keeps"}})
    assert st == 200, doc
    assert doc == {"revision": 1, "anything": {"the visor": "keeps"}}
    assert json.loads(path.read_text()) == doc
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert not (path.parent / "settings.json.tmp").exists()
    st, doc2 = api(v, "GET", "/v1/apps/fwd/settings")
    assert doc2 == doc

    # A stale revision: 409 and nothing changed.
    for rev in (0, 2, 7):
        st, e = api(v, "PUT", "/v1/apps/fwd/settings",
                    {"revision": rev, "x": 1})
        assert st == 409, e
        assert e["error"] == ("the settings changed since they were read "
                              "(revision 1)")
    assert json.loads(path.read_text()) == doc

    # Over 64 KiB: refused (the API server's 413 for any body that big).
    st, e = api(v, "PUT", "/v1/apps/fwd/settings",
                {"revision": 1, "x": "a" * (64 << 10)})
    assert st == 413 and "65536" in e["error"]
    assert json.loads(path.read_text()) == doc
    st, e = api(v, "DELETE", "/v1/apps/fwd/settings")
    assert st == 405 and "GET or PUT" in e["error"]

    # A file broken by hand: named in the answer, not overwritten.
    path.write_text("{\"revision\": 1,")
    for method, body in (("GET", None), ("PUT", {"revision": 1})):
        st, e = api(v, method, "/v1/apps/fwd/settings", body)
        assert st == 502 and str(path) in e["error"], e
    assert path.read_text() == "{\"revision\": 1,"


def test_edit_validate_and_persist(visors, pks):
    v = visors("a").start()
    p1, p2, p3 = pks

    r = v.cli("forward", "ls")
    assert r.returncode == 0 and "not configured" in r.stdout
    # Removing what is not there, before the app exists: exit 1, no app.
    for args in (("unexpose", "ssh"), ("rm", "2200")):
        r = v.cli("forward", *args)
        assert r.returncode == 1 and "not configured" in r.stderr
    assert config_app(v, "forward") is None

    # Bad input: exit 2 with the reason, before anything is created.
    bad = [
        (("expose", "ssh", "127.0.0.1:22"), "--allow"),
        (("expose", "ssh", "127.0.0.1:22", "--allow"), "needs a value"),
        (("expose", "SSH", "127.0.0.1:22", "--allow", "any"),
         "not a service name"),
        (("expose", "a" * 33, "127.0.0.1:22", "--allow", "any"),
         "not a service name"),
        (("expose", "ssh", "127.0.0.1", "--allow", "any"), "HOST:PORT"),
        (("expose", "ssh", "127.0.0.1:0", "--allow", "any"), "HOST:PORT"),
        (("expose", "ssh", "127.0.0.1:65536", "--allow", "any"),
         "HOST:PORT"),
        (("expose", "ssh", "300.0.0.1:22", "--allow", "any"),
         "not an IPv4 address"),
        (("expose", "ssh", "[::g]:22", "--allow", "any"),
         "not an IPv6 address"),
        (("expose", "ssh", "bad_host:22", "--allow", "any"),
         "neither a host name"),
        (("expose", "ssh", "127.0.0.1:22", "--allow", "nobody"),
         "not 64 hex"),
        (("expose", "ssh", "127.0.0.1:22", "--allow", "0" * 64),
         "no valid Ed25519 key"),
        (("expose", "ssh", "127.0.0.1:22", "--allow", "any", "--allow",
          p1), "choose one"),
        (("expose", "ssh", "127.0.0.1:22", "extra", "--allow", "any"),
         "unexpected"),
        (("expose", "ssh", "127.0.0.1:22", "--bogus"), "unknown option"),
        (("add", "2200", p1), "[BIND:]PORT PK NAME"),
        (("add", "0", p1, "ssh"), "[BIND:]PORT"),
        (("add", "70000", p1, "ssh"), "[BIND:]PORT"),
        (("add", "localhost:2200", p1, "ssh"), "must be numeric"),
        (("add", "2200", "x" * 64, "ssh"), "not hex"),
        (("add", "2200", p1, "Ssh"), "not a service name"),
        (("rm", "abc"), "[BIND:]PORT"),
        (("unexpose", "a/b"), "not a service name"),
        (("stdio", "nokey", "ssh"), "not a visor's public key"),
        (("stdio", p1, "a b"), "not a service name"),
        (("bogus",), "unknown command"),
    ]
    for args, what in bad:
        r = v.cli("forward", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert what in r.stderr, (args, r.stderr)
    assert config_app(v, "forward") is None
    assert not settings_file(v).exists()

    # The first change configures the app, which starts and applies it.
    bin_path("hopwire-forward")
    r = v.cli("forward", "expose", "ssh", "127.0.0.1:22", "--allow",
              p1.upper(), "--allow", p2, "--allow", p1)
    assert r.returncode == 0, r.stderr
    assert "added the app 'forward'" in r.stdout
    assert "revision 1 applied" in r.stdout
    assert config_app(v, "forward") == {
        "name": "forward", "binary": "hopwire-forward", "args": [],
        "port": 47, "autostart": True}
    assert settings(v) == {"revision": 1, "expose": [
        {"name": "ssh", "target": "127.0.0.1:22", "allow": [p1, p2]}]}

    # Free loopback ports: the app listens on them.
    m1, m2, m3, m4 = (free_port() for _ in range(4))
    steps = [
        ("expose", "web", "localhost:8080", "--allow", "any"),
        ("expose", "v6", "[::1]:22", "--allow", p3),
        # Replaces ssh in place.
        ("expose", "ssh", "127.0.0.1:2222", "--allow", p3),
        ("add", str(m1), p1, "ssh"),
        ("add", f"127.0.0.2:{m2}", p2, "web"),
        ("add", f"[0::1]:{m3}", p2, "v6"),
    ]
    for args in steps:
        r = v.cli("forward", *args)
        assert r.returncode == 0, (args, r.stderr)
    doc = settings(v)
    assert doc["revision"] == 1 + len(steps)
    assert doc["expose"] == [
        {"name": "ssh", "target": "127.0.0.1:2222", "allow": [p3]},
        {"name": "web", "target": "localhost:8080", "allow": ["any"]},
        {"name": "v6", "target": "[::1]:22", "allow": [p3]}]
    assert doc["map"] == [
        {"listen": f"127.0.0.1:{m1}", "pk": p1, "service": "ssh"},
        {"listen": f"127.0.0.2:{m2}", "pk": p2, "service": "web"},
        {"listen": f"[::1]:{m3}", "pk": p2, "service": "v6"}]

    # The same mapping again: nothing to do; another one on that
    # address: refused, nothing changed.
    r = v.cli("forward", "add", f"127.0.0.1:{m1}", p1.upper(), "ssh")
    assert r.returncode == 0 and "already" in r.stdout, r.stderr
    r = v.cli("forward", "add", str(m1), p2, "ssh")
    assert r.returncode == 1 and "mapped already" in r.stderr
    r = v.cli("forward", "unexpose", "nope")
    assert r.returncode == 1 and "no service named 'nope'" in r.stderr
    r = v.cli("forward", "rm", str(m4))
    assert r.returncode == 1 and f"nothing is mapped on 127.0.0.1:{m4}" \
        in r.stderr
    assert settings(v) == doc

    # ls: everything from the settings, and what the app made of them.
    r = v.cli("forward", "ls")
    assert r.returncode == 0, r.stderr
    for text in ("127.0.0.1:2222", "localhost:8080", "any visor",
                 f"127.0.0.2:{m2} -> service web of " + p2, f"[::1]:{m3}"):
        assert text in r.stdout, (text, r.stdout)
    j = v.json("forward", "ls")
    assert j["revision"] == doc["revision"]
    assert [s["name"] for s in j["expose"]] == ["ssh", "web", "v6"]
    assert [m["listen"] for m in j["map"]] == [m["listen"]
                                               for m in doc["map"]]
    assert j["applied_revision"] == doc["revision"] and j["note"] is None
    assert j["app"]["state"] == "running"
    assert {m["listen"]: m["state"] for m in j["map"]}[f"127.0.0.2:{m2}"] \
        in ("up", "dialing", "down")

    # A port something else holds: the app says why it cannot listen.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    hp = held.getsockname()[1]
    r = v.cli("forward", "add", str(hp), p1, "ssh")
    held.close()
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{hp}: " in r.stderr, r.stderr
    assert "in use" in r.stderr, r.stderr
    r = v.cli("forward", "rm", str(hp))
    assert r.returncode == 0, r.stderr

    # Removed by the one written form of the address.
    r = v.cli("forward", "rm", f"[::1]:{m3}")
    assert r.returncode == 0, r.stderr
    r = v.cli("forward", "rm", f"127.0.0.1:{m1}")
    assert r.returncode == 0, r.stderr
    r = v.cli("forward", "unexpose", "v6")
    assert r.returncode == 0, r.stderr
    doc = settings(v)
    assert [m["listen"] for m in doc["map"]] == [f"127.0.0.2:{m2}"]
    assert doc["revision"] == 1 + len(steps) + 5
    assert [s["name"] for s in doc["expose"]] == ["ssh", "web"]

    # A restart of the visor keeps them, and starting the app does not
    # remove them (the launcher removes status.json only): the app comes
    # back on them.
    v.stop()
    v.start()
    assert settings(v) == doc

    def applied():
        st, s = api(v, "GET", "/v1/apps/forward/status")
        return st == 200 and s["revision"] == doc["revision"]
    wait_for(applied, what="the app on its settings after a restart")
    assert settings(v) == doc


def test_wait_for_the_app_and_its_status(visors, pks):
    v = visors("a").start()
    p1, p2, _ = pks
    fake_app(v)
    wait_for(lambda: app_state(v) == "running", what="the fake app")

    r = v.cli("forward", "expose", "ssh", "127.0.0.1:22", "--allow", p1)
    assert r.returncode == 0, r.stderr
    assert "revision 1 applied" in r.stdout
    # A mapping the app cannot listen on: saved, applied, and said.
    r = v.cli("forward", "add", "1", p2, "ssh")
    assert r.returncode == 1
    assert ("revision 2 applied, but the app cannot listen on "
            "127.0.0.1:1: Permission denied ('hopwire forward rm "
            "127.0.0.1:1' drops the mapping)") in r.stderr, r.stderr

    # What the app says of each entry, and its connections.
    r = v.cli("forward", "ls")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "settings revision 2, applied 2" in out
    assert "listen-failed (Permission denied)" in out
    assert "ssh          -> 127.0.0.1:22, for " + p1 + "; 1 open" in out
    assert (f"server side: client {'aa' * 32} port 50123 -> server "
            f"{'bb' * 32} port 22 (service ssh)") in out
    assert "1.5 KiB up, 3.0 MiB down" in out
    j = v.json("forward", "ls")
    assert j["applied_revision"] == 2 and j["settings_error"] is None
    assert j["map"][0]["state"] == "listen-failed"
    assert j["map"][0]["error"] == "Permission denied"
    assert j["expose"][0]["conns"] == 1
    assert j["conns"][0]["client_port"] == 50123
    assert j["conns"][0]["service_port"] == 22
    assert j["note"] is None

    # The app refuses a change: its reason, exit 1 (the settings stay:
    # the app said what is wrong with them).
    r = v.cli("forward", "expose", "bad", "127.0.0.1:9", "--allow", "any")
    assert r.returncode == 1
    assert ("did not apply revision 3, it keeps revision 2: service bad: "
            "refused by the fake app") in r.stderr
    r = v.cli("forward", "ls")
    assert "settings error: service bad: refused" in r.stdout
    assert v.cli("forward", "unexpose", "bad").returncode == 0

    # An app that does not apply a change within 5 s: said, exit 1.
    t0 = time.time()
    r = v.cli("forward", "expose", "slow", "127.0.0.1:9", "--allow", "any")
    assert r.returncode == 1
    assert 4.5 < time.time() - t0 < 10
    assert "after 5 s the app still runs revision 4" in r.stderr
    assert "forward.log" in r.stderr
    r = v.cli("forward", "ls")
    assert "the app runs revision 4 of the settings, not yet 5" in r.stdout
    assert v.cli("forward", "unexpose", "slow").returncode == 0

    # A stopped app: the change is kept for its next start.
    r = v.cli("app", "stop", "forward")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: app_state(v) == "stopped", what="the app stopped")
    r = v.cli("forward", "rm", "1")
    assert r.returncode == 0, r.stderr
    assert "saved as revision 7; the app is not running (stopped)" \
        in r.stdout
    r = v.cli("forward", "ls")
    assert "not running (stopped)" in r.stdout


def test_concurrent_writers_lose_nothing(visors, pks):
    """Each CLI reads, changes and writes with the revision, and tries
    once more on a 409: of several at once, each change lands or its
    command says it did not."""
    v = visors("a").start()
    fake_app(v, autostart=False)
    procs = [subprocess.Popen(
        [bin_path("hopwire"), "--visor", v.socket, "forward", "add",
         str(3000 + i), pks[0], "ssh"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(6)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    landed = {m["listen"] for m in settings(v).get("map", [])}
    for i, (rc, err) in enumerate(results):
        if rc == 0:
            assert f"127.0.0.1:{3000 + i}" in landed
        else:
            assert "the settings changed since they were read" in err, err
            assert f"127.0.0.1:{3000 + i}" not in landed
    assert settings(v)["revision"] == len(landed)
    assert len(landed) >= 2


def test_stdio_runs_the_app_beside_hopwire(visors, pks, tmp_path):
    """stdio execs hopwire-forward --stdio PK NAME found beside the
    running hopwire, with the visor's app socket, and writes nothing of
    its own on stdout. A copy of hopwire beside a stand-in shows it."""
    v = visors("a").start()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    shutil.copy(bin_path("hopwire"), bindir / "hopwire")
    stand_in = bindir / "hopwire-forward"
    stand_in.write_text("#!/bin/sh\nprintf '%s|' \"$0\" \"$@\" "
                        "\"$HOPWIRE_APP_SOCKET\" \"${HOPWIRE_APP_FD-unset}\""
                        "\ncat\n")
    stand_in.chmod(0o755)
    r = subprocess.run([str(bindir / "hopwire"), "--visor", v.socket,
                        "forward", "stdio", pks[0].upper() + ".hw", "ssh"],
                       input="through\n", capture_output=True, text=True,
                       timeout=30, env={**os.environ, "HOPWIRE_APP_FD": "3"})
    assert r.returncode == 0, r.stderr
    info = v.json("info")
    assert r.stdout == (f"{stand_in}|--stdio|{pks[0]}|ssh|"
                        f"{info['apps_socket']}|unset|through\n")
    assert r.stderr == ""


def echo_server():
    """A TCP echo server on loopback: (port, closer)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=pump, args=(c,), daemon=True).start()

    def pump(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1], srv.close


def test_with_the_app_mapping_ls_and_stdio(tmp_path, control_plane, visors):
    """With the real app: a mapping on a to a service of c (two hops),
    bytes through it, the open connection's four identifiers in ls on
    both sides, and the same service through stdio."""
    from test_routing import line_of_three
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    port, close = echo_server()
    try:
        r = c.cli("forward", "expose", "echo", f"127.0.0.1:{port}",
                  "--allow", a.pk)
        assert r.returncode == 0, r.stderr
        assert "applied" in r.stdout
        local = free_port()
        r = a.cli("forward", "add", str(local), c.pk, "echo")
        assert r.returncode == 0, r.stderr

        def mapped_up():
            m = a.json("forward", "ls")["map"]
            return m and m[0]["state"] == "up"
        wait_for(mapped_up, timeout=20, what="the mapping up")
        conn = socket.create_connection(("127.0.0.1", local), timeout=20)
        conn.sendall(b"hello through hopwire")
        got = b""
        while len(got) < 21:
            got += conn.recv(100)
        assert got == b"hello through hopwire"
        my_port = conn.getsockname()[1]

        def listed(v):
            cs = v.json("forward", "ls")["conns"]
            return [x for x in cs if x["client_port"] == my_port]
        wait_for(lambda: listed(a) and listed(c), timeout=10,
                 what="the connection in both statuses")
        for v, side in ((a, "client"), (c, "server")):
            x = listed(v)[0]
            assert x["side"] == side
            assert x["client_pk"] == a.pk and x["server_pk"] == c.pk
            assert x["service"] == "echo" and x["service_port"] == port
        r = a.cli("forward", "ls")
        assert str(my_port) in r.stdout and c.pk in r.stdout
        conn.close()

        # stdio: one connection on stdin/stdout.
        r = subprocess.run([bin_path("hopwire"), "--visor", a.socket,
                            "forward", "stdio", c.pk, "echo"],
                           input=b"one line\n", capture_output=True,
                           timeout=30)
        assert r.stdout == b"one line\n", r.stderr
        # A service that does not exist: a refusal, not a hang.
        t0 = time.time()
        r = subprocess.run([bin_path("hopwire"), "--visor", a.socket,
                            "forward", "stdio", c.pk, "nope"],
                           input=b"x", capture_output=True, timeout=30)
        assert r.returncode != 0 and r.stdout == b""
        assert time.time() - t0 < 15
    finally:
        close()
