"""`hopwire vpn serve|up|down|status` (README "VPN", docs/vpn.md) and the
launcher under them (docs/apps.md): capabilities, cleanup after a crash,
HOPWIRE_VISOR_API. The VPN programs are stood in for by fakevpn.py,
installed beside a copy of hopwire-visor (where the launcher looks
first), so these tests touch no network device."""
import ctypes
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from conftest import Visor, bin_path, wait_for

HERE = pathlib.Path(__file__).resolve().parent
CAP_NET_ADMIN = 1 << 12
PR_CAPBSET_DROP = 24

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the launcher's capabilities are tested on "
    "a root visor (it gives apps CAP_NET_ADMIN from its own)")


def install(bindir):
    """hopwire-visor and the two fakes in bindir."""
    bindir.mkdir()
    shutil.copy(bin_path("hopwire-visor"), bindir / "hopwire-visor")
    for role in ("client", "server"):
        p = bindir / f"hopwire-vpn-{role}"
        p.write_text(f"#!/bin/sh\nexec /usr/bin/python3 "
                     f"{HERE / 'fakevpn.py'} {role} \"$@\"\n")
        p.chmod(0o755)


class FakeVisor(Visor):
    """A visor run from bindir; drop_net_admin: without CAP_NET_ADMIN
    (dropped from the bounding set before the exec, so a root visor has
    all its capabilities but that one)."""

    def __init__(self, root, name, bindir, drop_net_admin=False):
        super().__init__(root, name)
        self.bindir = bindir
        self.drop = drop_net_admin

    def start(self):
        def drop():
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_CAPBSET_DROP, 12, 0, 0, 0):
                raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")

        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(self.bindir / "hopwire-visor"), "--config",
             str(self.config)], stdout=self.logf, stderr=self.logf,
            preexec_fn=drop if self.drop else None)
        wait_for(lambda: self.proc.poll() is not None or
                 self.cli("info").returncode == 0, 10, "the visor")
        assert self.proc.poll() is None, self.log.read_text()
        return self


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    install(bindir)
    made = []

    def make(name, **kw):
        v = FakeVisor(tmp_path, name, bindir, **kw)
        made.append(v)
        return v
    yield make
    for v in made:
        v.stop()


def app_dir(v, name):
    return v.dir / "local" / "apps" / name


def events(v, name):
    try:
        return (app_dir(v, name) / "events.txt").read_text().splitlines()
    except FileNotFoundError:
        return []


def entry(v, name):
    return next((e for e in v.json("app", "ls") if e["name"] == name),
                None)


def config_app(v, name):
    cfg = json.loads(v.config.read_text())
    return next(e for e in cfg["apps"] if e["name"] == name)


def test_bad_input_is_refused_before_anything_is_sent(tmp_path, hopwire):
    # No visor: every one of these fails on its input first (exit 2).
    pk = Visor(tmp_path, "k").pk
    sock = ["--visor", str(tmp_path / "none.sock")]
    cases = [
        (["vpn"], "usage: hopwire vpn up PK"),
        (["vpn", "up"], "name the server's visor key"),
        (["vpn", "up", "abc"], "'abc' is not a visor's public key: not "
         "64 hex characters"),
        (["vpn", "up", "zz" * 32], "not hex"),
        (["vpn", "up", pk, pk], "one server only"),
        (["vpn", "up", pk, "--routes"], "--routes needs a value"),
        (["vpn", "up", pk, "--routes", "10.0.0.1/8"], "'10.0.0.1/8' is "
         "not a network CIDR: host bits set (the network is 10.0.0.0/8)"),
        (["vpn", "up", pk, "--routes", "10.0.0.0/33"], "the prefix length "
         "must be 0..32"),
        (["vpn", "up", pk, "--routes", "10.0.0.0"], "no /PREFIX"),
        (["vpn", "up", pk, "--routes", "300.1.2.0/24"],
         "not an IPv4 address"),
        (["vpn", "up", pk, "--routes", "2001:db8::/129"],
         "must be 0..128"),
        (["vpn", "up", pk, "--routes", "10.0.0.0/8,,10.1.0.0/16"],
         "separated by commas"),
        (["vpn", "up", pk, "--colour"], "unknown option '--colour'"),
        (["vpn", "down", "now"], "vpn down takes no arguments"),
        (["vpn", "status", "x"], "vpn status: unexpected 'x'"),
        (["vpn", "serve", "--allow", "bob"], "--allow 'bob' is neither a "
         "visor's public key"),
        (["vpn", "serve", "--allow", "any", "--allow", pk],
         "--allow any and --allow PK together"),
        (["vpn", "serve", "--subnet", "fd00::/64"], "not an IPv4 network"),
        (["vpn", "serve", "--subnet6", "10.0.0.0/8"],
         "not an IPv6 network"),
        (["vpn", "serve", "--subnet"], "--subnet needs a value"),
        (["vpn", "serve", "--nat"], "unknown option '--nat'"),
        (["vpn", "sideways"], "unknown command 'sideways'"),
    ]
    for args, want in cases:
        r = hopwire(*sock, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert want in r.stderr, (args, r.stderr)
    r = hopwire("vpn", "--help")
    assert r.returncode == 0
    for word in ("vpn up PK [--routes CIDR,...]", "vpn down",
                 "vpn status [--json]", "--client-to-client",
                 "AmbientCapabilities=CAP_NET_ADMIN", "docs/vpn.md"):
        assert word in r.stdout
    # Good input gets as far as the (missing) visor: exit 1.
    r = hopwire(*sock, "vpn", "up", pk, "--routes",
                "10.0.0.0/8,2001:db8::/32")
    assert r.returncode == 1 and "visor" in r.stderr, r.stderr


@needs_root
def test_up_status_crash_cleanup_down(fake):
    a = fake("a").start()
    server = Visor(a.dir.parent, "s").pk
    r = a.cli("vpn", "up", server, "--routes", "10.0.0.0/8,192.168.0.0/16")
    assert r.returncode == 0, r.stderr + a.log.read_text()
    assert f"through {server}, routing 10.0.0.0/8,192.168.0.0/16" in \
        r.stdout
    e = config_app(a, "vpn-client")
    assert e["binary"] == "hopwire-vpn-client"
    assert e["args"] == ["--server", server, "--routes",
                         "10.0.0.0/8,192.168.0.0/16"]
    assert e["port"] == 0 and e["autostart"] is True
    assert e["capabilities"] == ["CAP_NET_ADMIN"]
    assert e["cleanup_args"] == ["--cleanup"]
    listed = entry(a, "vpn-client")
    assert listed["capabilities"] == ["CAP_NET_ADMIN"]
    assert listed["cleanup_args"] == ["--cleanup"]
    assert listed["state"] == "running"

    # Exactly CAP_NET_ADMIN, through the wrapper's exec too.
    caps = json.loads((app_dir(a, "vpn-client") / "caps.txt").read_text())
    assert caps["CapEff"] == CAP_NET_ADMIN
    assert caps["CapPrm"] == CAP_NET_ADMIN
    assert caps["CapBnd"] == CAP_NET_ADMIN
    assert caps["CapAmb"] == CAP_NET_ADMIN
    api = (app_dir(a, "vpn-client") / "env.txt").read_text().strip()
    assert api == a.socket and os.path.isabs(api)

    wait_for(lambda: (app_dir(a, "vpn-client") / "status.json").exists(),
             5, "the client's status")
    r = a.cli("vpn", "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "client: vpn-client (running)" in out
    assert "state:     connected" in out
    assert f"server:    {server}" in out
    assert "address:   10.44.0.2" in out
    assert "routes:    10.0.0.0/8, 192.168.0.0/16" in out
    assert "3.0 MiB in, 1.5 KiB out" in out
    assert "2200 in, 30 out, 7 dropped" in out
    assert "server:" not in out.split("client:")[0]
    doc = a.json("vpn", "status")
    assert doc["client_status"]["packets_dropped"] == 7
    assert doc["client"]["name"] == "vpn-client"
    assert "server" not in doc or doc["server"] is None

    # kill -9: the cleanup runs before the restart.
    pid = listed["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: events(a, "vpn-client").count("start --server "
             f"{server} --routes 10.0.0.0/8,192.168.0.0/16") == 2, 10,
             "the restart")
    ev = events(a, "vpn-client")
    assert ev.index("cleanup") < len(ev) - 1, ev
    assert ev.count("cleanup") == 1
    log = (a.dir / "local" / "apps" / "vpn-client.log").read_text()
    assert "was killed by SIGKILL" in log
    assert "cleanup of vpn-client exited with status 0" in log

    # An orderly down: SIGTERM, exit 0, no cleanup; autostart off.
    r = a.cli("vpn", "down")
    assert r.returncode == 0, r.stderr
    assert "vpn-client: stopped, autostart off" in r.stdout
    assert events(a, "vpn-client")[-1] == "term"
    assert events(a, "vpn-client").count("cleanup") == 1
    assert config_app(a, "vpn-client")["autostart"] is False
    assert entry(a, "vpn-client")["state"] == "stopped"
    # Again: nothing to stop, still fine.
    r = a.cli("vpn", "down")
    assert r.returncode == 0, r.stderr
    out = a.cli("vpn", "status").stdout
    assert "client: vpn-client (stopped)" in out
    assert "(not running: what follows is the last status it wrote)" in out


@needs_root
def test_down_waits_for_the_kill_and_the_cleanup(fake):
    a = fake("a").start()
    server = Visor(a.dir.parent, "s").pk
    assert a.cli("vpn", "up", server).returncode == 0
    assert config_app(a, "vpn-client")["args"] == ["--server", server]
    (app_dir(a, "vpn-client") / "ignore-term").write_text("")
    # A client already running ignores SIGTERM only from its next start.
    assert a.cli("app", "stop", "vpn-client").returncode == 0
    assert a.cli("app", "start", "vpn-client").returncode == 0
    wait_for(lambda: len([x for x in events(a, "vpn-client")
                          if x.startswith("start")]) == 2, 5, "restart")
    t0 = time.time()
    r = a.cli("vpn", "down")
    took = time.time() - t0
    assert r.returncode == 0, r.stderr
    # SIGKILL after the 3 s grace, then the cleanup, then the answer.
    assert took >= 2.5, took
    assert "was killed by signal 9" in r.stdout, r.stdout
    assert events(a, "vpn-client")[-1] == "cleanup"
    assert entry(a, "vpn-client")["state"] == "stopped"


@needs_root
def test_serve_and_status(fake):
    c = fake("c").start()
    pk = Visor(c.dir.parent, "x").pk
    r = c.cli("vpn", "serve", "--allow", pk, "--subnet", "10.9.0.0/24",
              "--route-only")
    assert r.returncode == 0, r.stderr + c.log.read_text()
    assert "vpn-server: on port 44, subnet 10.9.0.0/24, route only" in \
        r.stdout
    e = config_app(c, "vpn-server")
    assert e["binary"] == "hopwire-vpn-server" and e["port"] == 44
    assert e["args"] == ["--allow", pk, "--subnet", "10.9.0.0/24",
                         "--route-only"]
    assert e["capabilities"] == ["CAP_NET_ADMIN"]
    caps = json.loads((app_dir(c, "vpn-server") / "caps.txt").read_text())
    assert caps["CapEff"] == CAP_NET_ADMIN
    wait_for(lambda: (app_dir(c, "vpn-server") / "status.json").exists(),
             5, "the server's status")
    out = c.cli("vpn", "status").stdout
    assert "client: none (hopwire vpn up PK)" in out
    assert "server: vpn-server (running)" in out
    assert f"allows:    {pk}" in out
    assert "subnet 10.9.0.0/24" in out
    assert "nat:       off (route only)" in out
    assert f"{'cc' * 32}  10.44.0.2  connected" in out
    # Serve again with other settings: the entry is replaced.
    r = c.cli("vpn", "serve", "--allow", "any")
    assert r.returncode == 0, r.stderr
    assert config_app(c, "vpn-server")["args"] == ["--allow", "any"]
    assert "allows any visor" in r.stdout


@needs_root
def test_an_app_without_capabilities_gets_none(fake):
    a = fake("a").start()
    r = a.cli("app", "ls")
    assert r.returncode == 0
    # The fake as a plain app: no capabilities named, none given, and it
    # says so as the real programs do.
    import http.client
    import socket

    class UnixHTTP(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(a.socket)

    conn = UnixHTTP("localhost", timeout=15)
    conn.request("PUT", "/v1/apps/plain", body=json.dumps(
        {"binary": "hopwire-vpn-client", "args": ["--server", "x"],
         "port": 0, "autostart": True}),
        headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert resp.status == 200, body
    assert body["capabilities"] == [] and body["cleanup_args"] == []
    wait_for(lambda: (app_dir(a, "plain") / "caps.txt").exists(), 5,
             "caps.txt")
    caps = json.loads((app_dir(a, "plain") / "caps.txt").read_text())
    assert caps == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0,
                    "CapAmb": 0}
    log = a.dir / "local" / "apps" / "plain.log"
    wait_for(lambda: "needs CAP_NET_ADMIN (run by a visor" in
             log.read_text(), 5, "the app's message")


@needs_root
def test_a_visor_without_net_admin_says_so(fake):
    a = fake("a", drop_net_admin=True).start()
    server = Visor(a.dir.parent, "s").pk
    r = a.cli("vpn", "up", server)
    assert r.returncode == 1
    want = ("app 'vpn-client' needs CAP_NET_ADMIN, which this visor does "
            "not have (docs/vpn.md)")
    assert want in r.stderr, r.stderr
    e = entry(a, "vpn-client")
    assert e["state"] in ("failed", "stopped") and e["error"] == want
    assert not (app_dir(a, "vpn-client") / "caps.txt").exists()
    # A new app that did not come up is left stopped, autostart off.
    assert config_app(a, "vpn-client")["autostart"] is False
    assert want in a.log.read_text()
