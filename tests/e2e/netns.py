"""Network-namespace topologies for the VPN tests and bench/bench_vpn.py
(issue 17). Every name carries this run's prefix (hwv<pid><n>-), so two
runs never collide, and a Net removes everything it made (the processes
it started, nft tables, veths, namespaces) when its `with` block ends,
however it ends. A process killed so hard that no finally runs (SIGKILL)
leaves namespaces named after its dead pid: cleanup_stale() removes
those.

Topologies (addresses exist only inside the namespaces):

direct:   client 10.201.1.2 --- 10.201.1.1 server 10.201.2.1 --- world
          10.201.2.2
mid:      client 10.201.1.2 --- 10.201.1.1 mid 10.201.3.1 --- 10.201.3.2
          server 10.201.2.1 --- world 10.201.2.2
relayed:  client 10.201.4.2 --- 10.201.4.1 natc 10.201.0.11 --+
                                                      relay 10.201.0.1
          server 10.201.5.2 --- 10.201.5.1 nats 10.201.0.12 --+  (bridge)
          server 10.201.2.1 --- world 10.201.2.2

world runs an HTTP server (port 8080, serving a folder) and `iperf3 -s`
(port 5201) and has a route back only to server's link, so it is
reachable from server only: client has no route to it, mid and relay do
not forward, and nothing routes client's addresses. server forwards
(net.ipv4.ip_forward=1, what a VPN server's host needs). natc and nats
masquerade out of their wan side and drop new connections coming in
from it, like home routers; relay forwards nothing, so the only way
between the two LANs is a relay process in the relay namespace.

Run a program inside: net.run(NS, ...) or net.popen(NS, ...) (through
`ip netns exec`, which execs it in place: the pid is the program's).
Needs root: Net() raises Unavailable otherwise (tests turn it into a
skip, see skip_unless_root)."""
import itertools
import os
import re
import signal
import subprocess
import sys
import time


def terminate(p, timeout=10):
    """Stops process p: SIGTERM, then SIGKILL after timeout seconds.
    Returns True when it had to be killed."""
    if p.poll() is not None:
        return False
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return True


def nat_ruleset(table, wan, lan):
    """An nftables table like a home router's: masquerade out of wan,
    forward only lan -> wan and what answers it, no new connection in
    from wan."""
    return f"""
table ip {table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan}" oifname "{wan}" accept
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{wan}" ct state new drop
    }}
}}
"""

PY = sys.executable
HTTP_PORT = 8080
IPERF_PORT = 5201
WORLD = "10.201.2.2"
SERVER_WORLD = "10.201.2.1"

_seq = itertools.count()


class Unavailable(Exception):
    """Namespaces cannot be made here (not root, no tools)."""


def skip_unless_root():
    """For pytest modules: pytestmark = netns.skip_unless_root()."""
    import pytest
    return pytest.mark.skipif(
        os.geteuid() != 0,
        reason="needs root to create network namespaces, veths and "
               "nftables tables")


def sh(*cmd, check=True, timeout=30, input=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True,
                       text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed "
                           f"({r.returncode}): {r.stderr.strip()}")
    return r


def prefix_of(pid):
    return f"hwv{pid}"


def cleanup_stale():
    """Deletes namespaces named hwv<pid>... whose pid no longer runs
    (left by a run killed with SIGKILL), with what runs inside them.
    Returns the names deleted."""
    gone = []
    for line in sh("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"hwv(\d+)x\d+-[a-z]+", name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        _kill_inside(name)
        sh("ip", "netns", "del", name, check=False)
        gone.append(name)
    return gone


def _kill_inside(ns):
    pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(100):
        if not sh("ip", "netns", "pids", ns, check=False).stdout.split():
            return
        time.sleep(0.02)


class Net:
    """One topology ("direct", "mid" or "relayed"). Use as a context
    manager; everything is removed on the way out."""

    KINDS = ("direct", "mid", "relayed")

    def __init__(self, kind="direct", world=True, www=None, clients=1):
        if kind not in self.KINDS:
            raise ValueError(f"unknown topology {kind!r}: one of "
                             f"{', '.join(self.KINDS)}")
        if os.geteuid() != 0:
            raise Unavailable("needs root to create network namespaces")
        for tool in ("ip", "nft", "iperf3"):
            if subprocess.run(["which", tool], capture_output=True
                              ).returncode:
                raise Unavailable(f"{tool} is not installed")
        self.kind = kind
        if clients not in (1, 2) or (clients == 2 and kind != "direct"):
            raise ValueError("a second client namespace is made in the "
                             "direct topology only")
        self.clients = clients
        self.prefix = f"{prefix_of(os.getpid())}x{next(_seq)}"
        self.created = []       # namespace names, in order
        self.procs = []         # (name, Popen), in order
        self.tables = []        # (ns key, family, table)
        self.with_world = world
        self.www = www          # folder world's HTTP server serves
        self.addr = {}          # ns key -> its address the others use

    # ---- names and commands ----

    def name(self, key):
        return f"{self.prefix}-{key}"

    def exec(self, key, *cmd):
        return ["ip", "netns", "exec", self.name(key), *map(str, cmd)]

    def run(self, key, *cmd, **kw):
        return sh(*self.exec(key, *cmd), **kw)

    def ip(self, key, *args, **kw):
        return sh("ip", "-n", self.name(key), *args, **kw)

    def popen(self, key, name, *cmd, **kw):
        """Starts cmd in namespace key; stopped (SIGTERM, then SIGKILL)
        when the Net closes, last started first."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.exec(key, *cmd), **kw)
        self.procs.append((name, p))
        return p

    # ---- building ----

    def add_ns(self, key):
        sh("ip", "netns", "add", self.name(key))
        self.created.append(self.name(key))
        self.ip(key, "link", "set", "lo", "up")
        # Link-local addresses at once, not after DAD: the routes a test
        # records before a VPN client are then the settled ones.
        self.run(key, "sysctl", "-q", "-w",
                 "net.ipv6.conf.default.accept_dad=0")

    def veth(self, a, dev_a, addr_a, b, dev_b, addr_b):
        # Made inside the namespaces directly: never in the host's.
        sh("ip", "link", "add", dev_a, "netns", self.name(a), "type",
           "veth", "peer", "name", dev_b, "netns", self.name(b))
        for key, dev, addr in ((a, dev_a, addr_a), (b, dev_b, addr_b)):
            if addr:
                self.ip(key, "addr", "add", addr, "dev", dev)
            self.ip(key, "link", "set", dev, "up")

    def forward(self, key):
        self.run(key, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

    def nft(self, key, table, rules):
        self.run(key, "nft", "-f", "-", input=rules)
        self.tables.append((key, "ip", table))

    def nat(self, key, wan, lan):
        table = "hwv_nat"
        self.nft(key, table, nat_ruleset(table, wan, lan))
        self.forward(key)

    def build(self):
        getattr(self, "_build_" + self.kind)()
        if self.with_world:
            self._world()
        return self

    def _server_world(self):
        self.add_ns("world")
        self.veth("server", "sw0", f"{SERVER_WORLD}/24",
                  "world", "ws0", f"{WORLD}/24")
        # world answers only server's link: nothing else is routed.
        self.forward("server")
        self.addr["world"] = WORLD

    def _build_direct(self):
        for k in ("client", "server"):
            self.add_ns(k)
        self.veth("client", "cs0", "10.201.1.2/24",
                  "server", "sc0", "10.201.1.1/24")
        self.addr.update(client="10.201.1.2", server="10.201.1.1")
        self.underlay = ("client", "cs0")
        if self.clients == 2:
            # client2 on a link of its own; server's services on
            # 10.201.1.1 reached through it (delivered locally).
            self.add_ns("client2")
            self.veth("client2", "cs0", "10.201.7.2/24",
                      "server", "sc2", "10.201.7.1/24")
            self.ip("client2", "route", "add", "10.201.1.1/32", "via",
                    "10.201.7.1")
            self.addr["client2"] = "10.201.7.2"
        self._server_world()

    def _build_mid(self):
        for k in ("client", "mid", "server"):
            self.add_ns(k)
        self.veth("client", "cm0", "10.201.1.2/24",
                  "mid", "mc0", "10.201.1.1/24")
        self.veth("mid", "ms0", "10.201.3.1/24",
                  "server", "sm0", "10.201.3.2/24")
        self.addr.update(client="10.201.1.2", mid="10.201.1.1",
                         mid_server="10.201.3.1", server="10.201.3.2")
        # One address for mid's services: server reaches 10.201.1.1
        # through mid's other side (delivered locally, not forwarded).
        self.ip("server", "route", "add", "10.201.1.1/32", "via",
                "10.201.3.1")
        self.underlay = ("client", "cm0")
        self._server_world()

    def _build_relayed(self):
        for k in ("relay", "natc", "nats", "client", "server"):
            self.add_ns(k)
        self.ip("relay", "link", "add", "br0", "type", "bridge")
        self.ip("relay", "addr", "add", "10.201.0.1/24", "dev", "br0")
        self.ip("relay", "link", "set", "br0", "up")
        for nat, host, wan_ip, lan in (("natc", "client", "10.201.0.11",
                                        "10.201.4"),
                                       ("nats", "server", "10.201.0.12",
                                        "10.201.5")):
            self.veth("relay", f"p{nat}", None, nat, "wan0",
                      f"{wan_ip}/24")
            self.ip("relay", "link", "set", f"p{nat}", "master", "br0")
            self.veth(nat, "lan0", f"{lan}.1/24", host, "up0",
                      f"{lan}.2/24")
            self.ip(host, "route", "add", "default", "via", f"{lan}.1")
            self.ip(nat, "route", "add", "default", "via", "10.201.0.1")
            self.nat(nat, "wan0", "lan0")
            self.addr[host] = f"{lan}.2"
            self.addr[nat] = wan_ip
        self.addr["relay"] = "10.201.0.1"
        self.underlay = ("client", "up0")
        self._server_world()
        # server's default route is its NAT: world stays a side link.

    def _world(self):
        www = self.www
        if www is None:
            import tempfile
            www = self.www = tempfile.mkdtemp(prefix=f"{self.prefix}-www-")
            self._own_www = True
        http = self.popen("world", "http.server", PY, "-m", "http.server",
                          "--bind", WORLD, HTTP_PORT, cwd=www,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        iperf = self.popen("world", "iperf3 -s", "iperf3", "-s", "-B",
                           WORLD, "-p", IPERF_PORT,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.wait(lambda: self.listening("world", HTTP_PORT) and
                  self.listening("world", IPERF_PORT), "world's servers",
                  procs=(http, iperf))

    # ---- probes ----

    def listening(self, key, port):
        """Whether a TCP socket listens on port in namespace key."""
        out = self.run(key, "ss", "-Htln", f"sport = :{port}",
                       check=False).stdout
        return bool(out.strip())

    def wait(self, cond, what, timeout=10, procs=()):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{what}: {p.args} exited "
                                       f"{p.returncode}")
            if cond():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def tcp_ok(self, key, host, port, timeout=2):
        """Whether a TCP connect from key to host:port succeeds."""
        code = ("import socket,sys\n"
                "socket.create_connection((sys.argv[1], int(sys.argv[2])),"
                " timeout=float(sys.argv[3])).close()\n")
        return self.run(key, PY, "-c", code, host, port, timeout,
                        check=False, timeout=timeout + 10).returncode == 0

    def routes(self, key):
        """What `ip route`, `ip -6 route` and `ip rule` (both families)
        print in key: compared before and after a VPN client."""
        return {what: self.ip(key, *args).stdout for what, args in (
            ("route", ("route", "show", "table", "all")),
            ("route6", ("-6", "route", "show", "table", "all")),
            ("rule", ("rule", "show")),
            ("rule6", ("-6", "rule", "show")))}

    def nft_tables(self, key):
        return self.run(key, "nft", "list", "tables").stdout

    def pids(self, key):
        """The pids running in namespace key."""
        return [int(p) for p in sh("ip", "netns", "pids", self.name(key),
                                   check=False).stdout.split()]

    # ---- teardown ----

    def close(self):
        """Stops the processes, deletes tables, namespaces (and with them
        the veths and the bridge); returns the errors."""
        errors = []
        for name, p in reversed(self.procs):
            if terminate(p):
                errors.append(f"{name} ignored SIGTERM (killed)")
        self.procs = []
        for key, family, table in reversed(self.tables):
            r = self.run(key, "nft", "delete", "table", family, table,
                         check=False)
            if r.returncode:
                errors.append(f"nft delete table {table} in {key}: "
                              f"{r.stderr.strip()}")
        self.tables = []
        for ns in reversed(self.created):
            # Whatever still runs inside was started by this run (a
            # daemon a tool forked, say): it goes with its namespace.
            _kill_inside(ns)
            r = sh("ip", "netns", "del", ns, check=False)
            if r.returncode:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        left = set(sh("ip", "netns", "list").stdout.split())
        errors += [f"namespace left: {ns}" for ns in self.created
                   if ns in left]
        self.created = []
        if getattr(self, "_own_www", False):
            import shutil
            shutil.rmtree(self.www, ignore_errors=True)
        return errors

    def __enter__(self):
        try:
            return self.build()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        errors = self.close()
        if errors and exc[0] is None:
            raise RuntimeError("cleanup: " + "; ".join(errors))
        return False


def on_sigterm_raise():
    """Makes SIGTERM raise SystemExit so `with Net()` blocks unwind."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


# ---- Hopwire processes inside a Net (the VPN tests and bench_vpn.py) ----

DISC_PORT, SETUP_PORT, RELAY_PORT, VISOR_PORT = 9090, 7100, 7000, 7777


class Visor:
    """A hopwire-visor in namespace key of net, its folder root/name;
    listen: the underlay address it listens on (None: no listener).
    The CLI talks to it through its socket, from any namespace."""

    def __init__(self, net, key, bindir, root, name, listen=None,
                 discovery=None, setup=(), fast=True):
        import json
        import pathlib
        self.net, self.key, self.bin = net, key, pathlib.Path(bindir)
        self.dir = pathlib.Path(root) / name
        self.dir.mkdir(parents=True)
        self.name = name
        self.config = self.dir / "hopwire.json"
        self.addr = f"{listen}:{VISOR_PORT}" if listen else None
        sh(self.bin / "hopwire", "config", "init", "--out", self.config,
           "--tcp-listen", self.addr or "")
        cfg = json.loads(self.config.read_text())
        if fast:
            cfg["transport"].update({"keepalive_interval_ms": 500,
                                     "handshake_timeout_ms": 2000,
                                     "redial_min_ms": 100,
                                     "redial_max_ms": 1000})
        if discovery:
            cfg["discovery"].update({"url": discovery, "refresh_ms": 500})
        cfg["routing"]["setup_nodes"] = list(setup)
        self.config.write_text(json.dumps(cfg, indent=2))
        self.pk = sh(self.bin / "hopwire", "pk", "--key",
                     self.dir / "visor.key").stdout.strip()
        self.socket = self.dir / "local" / "visor.sock"
        self.local = self.dir / "local"
        self.log = self.dir / "visor.log"
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = self.net.popen(self.key, f"visor {self.name}",
                                   self.bin / "hopwire-visor", "--config",
                                   self.config, stdout=self.logf,
                                   stderr=self.logf)
        self.net.wait(lambda: self.cli("info").returncode == 0,
                      f"visor {self.name} on its control socket",
                      procs=(self.proc,))
        return self

    def stop(self):
        """SIGTERM; the exit status (or a message if it had to be
        killed)."""
        if self.proc is None:
            return None
        killed = terminate(self.proc, 15)
        self.logf.close()
        if killed:
            return f"visor {self.name} ignored SIGTERM (killed)"
        return self.proc.returncode

    def cli(self, *args, timeout=60):
        return subprocess.run([str(self.bin / "hopwire"), "--visor",
                               str(self.socket), *map(str, args)],
                              capture_output=True, text=True,
                              timeout=timeout)

    def json(self, *args):
        import json
        r = self.cli(*args, "--json")
        if r.returncode:
            raise RuntimeError(f"hopwire {' '.join(map(str, args))} on "
                               f"{self.name}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def app_status(self, app):
        """The app's status.json (LOCAL_DIR/apps/APP/), or None."""
        import json
        try:
            return json.loads((self.local / "apps" / app /
                               "status.json").read_text())
        except (OSError, ValueError):
            return None

    def app_log(self, app):
        try:
            return (self.local / "apps" / f"{app}.log").read_text(
                errors="replace")
        except OSError:
            return ""


class ControlPlane:
    """hopwire-discovery and hopwire-setup (and with relay=True a
    hopwire-relay) in namespace key, listening on host."""

    def __init__(self, net, key, host, bindir, root, relay=False):
        import pathlib
        b = pathlib.Path(bindir)
        d = pathlib.Path(root) / "control"
        d.mkdir(parents=True)
        self.url = f"http://{host}:{DISC_PORT}"
        self.procs = []

        def start(name, port, *cmd):
            log = open(d / f"{name}.log", "ab")
            p = net.popen(key, name, *cmd, stdout=log, stderr=log)
            self.procs.append(p)
            net.wait(lambda: net.listening(key, port), name, procs=(p,))
            return p
        start("discovery", DISC_PORT, b / "hopwire-discovery", "--listen",
              f"{host}:{DISC_PORT}", "--store", f"sqlite:{d}/disc.db")
        sh(b / "hopwire", "keygen", "--out", d / "setup.key")
        self.setup_pk = sh(b / "hopwire", "pk", "--key",
                           d / "setup.key").stdout.strip()
        start("setup", SETUP_PORT, b / "hopwire-setup", "--key",
              d / "setup.key", "--discovery", self.url, "--tcp-listen",
              f"{host}:{SETUP_PORT}", "--dir", d / "setup")
        self.relay_pk = self.relay = None
        if relay:
            sh(b / "hopwire", "keygen", "--out", d / "relay.key")
            self.relay_pk = sh(b / "hopwire", "pk", "--key",
                               d / "relay.key").stdout.strip()
            self.relay = start("relay", RELAY_PORT, b / "hopwire-relay",
                               "--key", d / "relay.key", "--listen",
                               f"{host}:{RELAY_PORT}", "--discovery",
                               self.url, "--keepalive-ms", "500")
        self.dir = d

    def get(self, net, key, path):
        """GET path from discovery, from namespace key: JSON or None."""
        import json
        r = net.run(key, "curl", "-sf", "--max-time", "3",
                    self.url + path, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None


def hopwire(net, bindir, root, clients=("client",)):
    """The Hopwire network of net's topology: the control plane (in
    server for direct, in mid for mid, discovery + setup + relay in relay
    for relayed), a visor in server and in each of clients (and in mid),
    each client linked to server (through mid; through the relay).
    Returns a SimpleNamespace(cp, server, mid, clients={key: Visor})."""
    import types
    kind = net.kind
    if kind == "direct":
        cpk, host = "server", net.addr["server"]
    elif kind == "mid":
        cpk, host = "mid", net.addr["mid"]
    else:
        cpk, host = "relay", net.addr["relay"]
    cp = ControlPlane(net, cpk, host, bindir, root, relay=kind == "relayed")
    kw = dict(discovery=cp.url, setup=[cp.setup_pk])
    hw = types.SimpleNamespace(cp=cp, mid=None, clients={})
    # The setup node dials every visor of a route: in mid, server listens
    # on its side of mid's link (like a VPN server with an address).
    listen = {"direct": host, "mid": net.addr["server"]}.get(kind)
    hw.server = Visor(net, "server", bindir, root, "server", listen=listen,
                      **kw)
    hw.server.start()
    if kind == "mid":
        hw.mid = Visor(net, "mid", bindir, root, "mid", listen=host,
                       **kw).start()
    for key in clients:
        hw.clients[key] = Visor(net, key, bindir, root, f"visor-{key}",
                                **kw).start()

    def registered(a, b):
        got = cp.get(net, cpk, f"/v1/transports?edge={a.pk}") or {}
        return any(b.pk in t["edges"] for t in got.get("transports", []))

    def link(a, b, *how):
        r = a.cli("tp", "add", b.pk, *how)
        if r.returncode:
            raise RuntimeError(f"tp add {b.name} on {a.name}: "
                               f"{r.stderr.strip()}")
        net.wait(lambda: registered(a, b), f"{a.name} - {b.name} in "
                 f"discovery", timeout=20)
    if kind == "direct":
        for v in hw.clients.values():
            link(v, hw.server, "--addr", hw.server.addr)
    elif kind == "mid":
        link(hw.server, hw.mid, "--addr", hw.mid.addr)
        for v in hw.clients.values():
            link(v, hw.mid, "--addr", hw.mid.addr)
    else:
        for v in (hw.server, *hw.clients.values()):
            net.wait(lambda v=v: any(
                r["up"] for r in v.json("info")["network"]["relays"]),
                f"{v.name}'s relay session", timeout=20)
            net.wait(lambda v=v: (cp.get(net, cpk, f"/v1/visors/{v.pk}")
                                  or {}).get("relays"),
                     f"{v.name} listed with its relay", timeout=20)
        for v in hw.clients.values():
            link(v, hw.server, "--type", "relay")
    return hw
