"""Apps over routes: the app protocol of the seed document spoken by a
Python app (not our SDK), the visor's answers to bad frames, and the
launcher."""
import base64
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from conftest import bin_path, wait_for
from seedapp import (CLOSE, CONFIRM_LOOP, CREATE_LOOP, FAILURE, INIT, SEND,
                     SUCCESS, SeedApp)
from test_routing import line_of_three, link, registered, trust


def apps_sock(v):
    return str(v.dir / "local" / "apps.sock")


def test_seed_protocol_app_over_two_hops(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    server = SeedApp(apps_sock(c), "py-server", port=20)
    ok, body = server.init
    assert ok and body["port"] == 20 and body["pk"] == c.pk
    assert body["extensions"] == []
    client = SeedApp(apps_sock(a), "py-client")
    assert client.init == (True, None)  # plain Init: no body

    ok, local = client.dial(c.pk, 20)
    assert ok, local
    assert local["pk"] == a.pk and local["port"] >= 49152
    lport = local["port"]
    local_c, remote_c = server.wait_event(CONFIRM_LOOP)
    assert local_c == {"pk": c.pk, "port": 20}
    assert remote_c == {"pk": a.pk, "port": lport}

    msg = bytes(range(256)) * 300  # more than one Send of the visor
    for k in range(0, len(msg), 40000):
        assert client.write(lport, c.pk, 20, msg[k:k + 40000]) == (True, None)
    assert server.read(len(msg)) == msg
    assert server.write(20, a.pk, lport, b"pong") == (True, None)
    assert client.read(4) == b"pong"

    # Close from one end reaches the other.
    assert client.close_loop(lport, c.pk, 20) == (True, None)
    closed = server.wait_event(CLOSE)
    assert closed == {"port": 20, "remote": {"pk": a.pk, "port": lport}}
    ok, err = client.write(lport, c.pk, 20, b"late")
    assert not ok and "no loop" in err["error"]
    client.close()
    server.close()


def test_visor_refuses_bad_frames(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    app = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    app.settimeout(10)
    app.connect(apps_sock(a))
    raw = SeedApp.__new__(SeedApp)
    raw.s, raw.buf = app, b""

    def ask(ftype, fid, payload):
        app.sendall(struct.pack(">HBB", 2 + len(payload), ftype, fid) +
                    payload)
        t, i, body = raw.read_frame()
        assert i == fid
        return t, body

    assert ask(CREATE_LOOP, 1, b'{"pk":"00","port":1}') == (
        FAILURE, {"error": "init first: send Init before CreateLoop"})
    t, body = ask(INIT, 2, b'{"app-name": 5}')
    assert t == FAILURE and "app-name" in body["error"]
    t, body = ask(INIT, 3, b'not json')
    assert t == FAILURE
    t, body = ask(INIT, 4, b'{"app-name":"x","protocol-version":"9"}')
    assert t == FAILURE and "protocol-version 9" in body["error"]
    assert ask(INIT, 5, b'{"app-name":"x"}') == (SUCCESS, None)
    t, body = ask(INIT, 6, b'{"app-name":"x"}')
    assert body == {"error": "already initialised"}
    t, body = ask(0x42, 7, b'{}')
    assert body == {"error": "unknown frame type 0x42"}
    t, body = ask(CREATE_LOOP, 8, b'{"pk":"zz","port":1}')
    assert t == FAILURE and "pk" in body["error"]
    t, body = ask(CREATE_LOOP, 9, ('{"pk":"%s","port":0}' % c.pk).encode())
    assert t == FAILURE and "port" in body["error"]
    t, body = ask(CREATE_LOOP, 10, ('{"pk":"%s","port":99}' % c.pk).encode())
    assert t == FAILURE and "nothing listens on port 99" in body["error"]
    payload = base64.b64encode(b"x").decode()
    t, body = ask(SEND, 11, ('{"addr":{"port":5,"remote":{"pk":"%s",'
                             '"port":6}},"payload":"%s"}' %
                             (c.pk, payload)).encode())
    assert t == FAILURE and "no loop 5 -> " in body["error"]
    t, body = ask(SEND, 12, ('{"addr":{"port":5,"remote":{"pk":"%s",'
                             '"port":6}},"payload":"!!"}' % c.pk).encode())
    assert t == FAILURE and "payload" in body["error"]
    t, body = ask(CONFIRM_LOOP, 13, b'[]')
    assert t == FAILURE
    # A length below 2 ends this app's channel only.
    app.sendall(b"\x00\x01\x00")
    wait_for(lambda: app.recv(1) == b"", what="channel closed")
    other = SeedApp(apps_sock(a), "still-served")
    assert other.init == (True, None)
    other.close()


def test_ports_are_owned(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    first = SeedApp(apps_sock(a), "one", port=30)
    assert first.init[0]
    second = SeedApp(apps_sock(a), "two", port=30)
    assert second.init == (False, {"error": "port 30 is in use"})
    first.close()
    second.close()


def with_apps(v, *apps):
    cfg = json.loads(v.config.read_text())
    cfg["apps"] = list(apps)
    v.config.write_text(json.dumps(cfg, indent=2))


def app_state(v, name):
    for e in v.json("app", "ls"):
        if e["name"] == name:
            return e
    raise AssertionError(f"no app {name}")


def test_launched_app_is_supervised(tmp_path, control_plane, visors):
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, c = visors("a", discovery=disc.url), visors("c", discovery=disc.url)
    echo = {"name": "echo", "binary": sys.executable,
            "args": [str(Path(__file__).parent / "pyecho.py")], "port": 7}
    with_apps(c, echo)
    for v in (a, c):
        trust(v, s.pk)
        v.start()
    link(a, c)
    wait_for(lambda: app_state(c, "echo")["connected"], what="echo up")
    st = app_state(c, "echo")
    assert st["state"] == "running" and st["port"] == 7 and st["autostart"]
    pid = st["pid"]
    assert "pyecho: up, port 7" in (c.dir / "local" / "apps" /
                                    "echo.log").read_text()

    # A third-party app by hand on A reaches the launched app on C.
    wait_for(lambda: registered(disc.url, a, c), what="transport")
    client = SeedApp(apps_sock(a), "client")
    ok, local = client.dial(c.pk, 7)
    assert ok, local
    assert client.write(local["port"], c.pk, 7, b"hi") == (True, None)
    assert client.read(7) == b"echo:hi"
    client.close()

    # Killed: restarted with a new pid.
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: app_state(c, "echo")["pid"] not in (None, pid) and
             app_state(c, "echo")["connected"], timeout=15,
             what="echo restarted")
    assert app_state(c, "echo")["restarts"] == 1

    # Stopped: stays down; started again; autostart is written back.
    r = c.cli("app", "stop", "echo")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: app_state(c, "echo")["state"] == "stopped",
             what="echo stopped")
    r = c.cli("app", "start", "echo")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: app_state(c, "echo")["connected"], what="echo again")
    assert c.cli("app", "autostart", "echo", "off").returncode == 0
    cfg = json.loads(c.config.read_text())
    assert cfg["apps"][0]["autostart"] is False
    assert cfg["apps"][0]["args"] == echo["args"]
    r = c.cli("app", "start", "nope")
    assert r.returncode == 1 and "no app 'nope'" in r.stderr
    out = c.cli("app", "ls").stdout
    assert "echo" in out and "running" in out


def test_app_by_hand_takes_a_configured_name(tmp_path, control_plane,
                                              visors):
    disc = control_plane.discovery()
    a = visors("a", discovery=disc.url)
    with_apps(a, {"name": "manual", "binary": "/bin/false", "port": 12,
                  "autostart": False})
    a.start()
    app = SeedApp(apps_sock(a), "manual", port=99)
    assert app.init == (False, {"error": "port 99: app 'manual' has port "
                                         "12 (config)"})
    app.close()
    app = SeedApp(apps_sock(a), "manual")
    assert app.init == (True, None)
    st = app_state(a, "manual")
    assert st["state"] == "connected" and st["port"] == 12
    taken = SeedApp(apps_sock(a), "other", port=12)
    assert taken.init == (False, {"error": "port 12 belongs to app "
                                           "'manual'"})
    app.close()
    taken.close()


def test_seed_app_talks_to_sdk_app_over_two_hops(tmp_path, control_plane,
                                                 visors):
    """The Python app (plain seed protocol, JSON Send) on A and
    hopwire-hello (C, our SDK, loop-fd) on C, two hops apart."""
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c = (visors(n, discovery=disc.url) for n in "abc")
    with_apps(c, {"name": "hello", "binary": bin_path("hopwire-hello"),
                  "args": ["server"], "port": 10})
    for v in (a, b, c):
        trust(v, s.pk)
        v.start()
    link(a, b)
    link(b, c)
    wait_for(lambda: registered(disc.url, a, b) and
             registered(disc.url, b, c), what="transports in discovery")
    wait_for(lambda: app_state(c, "hello")["connected"], what="hello up")
    app = SeedApp(apps_sock(a), "py-client")
    ok, local = app.dial(c.pk, 10)
    assert ok, local
    lport = local["port"]
    assert app.write(lport, c.pk, 10, b"ping\nsecond line\n") == (True,
                                                                  None)
    assert app.read(len(b"pong: ping\npong: second line\n")) == \
        b"pong: ping\npong: second line\n"
    # B forwards the loop without being one of its ends.
    assert {r["kind"] for r in b.json("route", "ls")["rules"]} == \
        {"intermediary"}
    assert app.close_loop(lport, c.pk, 10) == (True, None)
    app.close()


def test_failed_loop_is_an_error_with_its_reason(tmp_path, control_plane,
                                                 visors):
    """A seed-protocol app on A and hopwire-hello (our SDK, loop-fd) on C:
    when the transport under their loop goes, both learn that the loop
    failed and why, the seed app from the Close's "error", hello from
    hw_app_read's -ENETRESET and hw_app_loop_error."""
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, c = visors("a", discovery=disc.url), visors("c", discovery=disc.url)
    with_apps(c, {"name": "hello", "binary": bin_path("hopwire-hello"),
                  "args": ["server"], "port": 10})
    for v in (a, c):
        trust(v, s.pk)
        v.start()
    link(a, c)
    wait_for(lambda: registered(disc.url, a, c), what="A-C in discovery")
    wait_for(lambda: app_state(c, "hello")["connected"], what="hello up")
    app = SeedApp(apps_sock(a), "py-client")
    ok, local = app.dial(c.pk, 10)
    assert ok, local
    lport = local["port"]
    assert app.write(lport, c.pk, 10, b"ping\n") == (True, None)
    assert app.read(len(b"pong: ping\n")) == b"pong: ping\n"

    tp = next(t for t in a.transports() if t["pk"] == c.pk)
    assert a.cli("tp", "rm", tp["id"]).returncode == 0
    closed = app.wait_event(CLOSE)
    assert closed["port"] == lport and closed["remote"]["port"] == 10
    assert closed["error"].startswith("route failed: "), closed
    log = c.dir / "local" / "apps" / "hello.log"
    wait_for(lambda: f"loop from {a.pk}:{lport} failed: route failed: "
             in log.read_text(), what="hello to tell the failure")
    app.close()
