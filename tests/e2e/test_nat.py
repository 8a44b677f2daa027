"""Two visors, each behind its own masquerading NAT (nftables in network
namespaces), link through a relay on the "public" side and exchange data.

Topology (all addresses exist only inside namespaces this test creates;
every namespace name carries a random suffix so an aborted run cannot
collide with this one):

    pub   10.99.0.1/24 on a bridge: hopwire-discovery :9090, hopwire-relay :7000
     |-- nat1  10.99.0.11 (wan) | 10.99.1.1 (lan) -- lan1  10.99.1.2  visor A
     `-- nat2  10.99.0.12 (wan) | 10.99.2.1 (lan) -- lan2  10.99.2.2  visor B

The routers masquerade out of their wan side and drop new connections
coming in from it; pub has no route to either LAN. Veth pairs are created
directly inside the namespaces, so the host's own interfaces, routes and
sysctls are never touched.

Needs root (network namespaces, nftables): skipped otherwise."""
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import Visor, bin_path, wait_for
from netns import nat_ruleset

TOOLS = ("ip", "nft", "sysctl")
MISSING = [t for t in TOOLS if shutil.which(t) is None]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root to create network namespaces "
                              "and nftables NAT"),
    pytest.mark.skipif(bool(MISSING),
                       reason=f"missing tools: {', '.join(MISSING)}"),
]

PUB_IP = "10.99.0.1"
DISC_PORT = 9090
RELAY_PORT = 7000
DISC_URL = f"http://{PUB_IP}:{DISC_PORT}"
WAN_IP = {1: "10.99.0.11", 2: "10.99.0.12"}
LAN_ROUTER = {1: "10.99.1.1", 2: "10.99.2.1"}
LAN_HOST = {1: "10.99.1.2", 2: "10.99.2.2"}
LANS = [ipaddress.ip_network("10.99.1.0/24"),
        ipaddress.ip_network("10.99.2.0/24")]
PY = sys.executable


def run(*cmd, check=True, timeout=15, input=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True,
                       text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed "
                             f"({r.returncode}): {r.stderr.strip()}")
    return r


class Net:
    """The namespaces, veths, bridge and nft tables of one run; records
    everything it creates so teardown removes exactly that."""

    def __init__(self):
        sfx = secrets.token_hex(3)
        self.sfx = sfx
        self.ns = {k: f"hw{sfx}-{k}"
                   for k in ("pub", "nat1", "nat2", "lan1", "lan2")}
        self.created_ns = []
        self.devs = []      # (namespace, device): deleting one veth end
        self.tables = []    # (namespace, table)  deletes its peer too

    def exec(self, ns, *cmd):
        return ["ip", "netns", "exec", self.ns[ns], *map(str, cmd)]

    def sh(self, ns, *cmd, **kw):
        return run(*self.exec(ns, *cmd), **kw)

    def ip(self, ns, *args, **kw):
        return run("ip", "-n", self.ns[ns], *args, **kw)

    def add_ns(self, key):
        r = run("ip", "netns", "add", self.ns[key], check=False)
        if r.returncode != 0:
            if not self.created_ns:
                pytest.skip("cannot create network namespaces here: "
                            + r.stderr.strip())
            raise AssertionError(f"ip netns add: {r.stderr.strip()}")
        self.created_ns.append(self.ns[key])
        self.ip(key, "link", "set", "lo", "up")

    def veth(self, ns_a, dev_a, ns_b, dev_b):
        # Created inside the namespaces directly: never in the host's.
        run("ip", "link", "add", dev_a, "netns", self.ns[ns_a], "type",
            "veth", "peer", "name", dev_b, "netns", self.ns[ns_b])
        self.devs.append((ns_a, dev_a))

    def build(self):
        for key in ("pub", "nat1", "nat2", "lan1", "lan2"):
            self.add_ns(key)
        br = f"hw{self.sfx}br"
        self.ip("pub", "link", "add", br, "type", "bridge")
        self.devs.append(("pub", br))
        self.ip("pub", "addr", "add", f"{PUB_IP}/24", "dev", br)
        self.ip("pub", "link", "set", br, "up")
        for i in (1, 2):
            nat, lan = f"nat{i}", f"lan{i}"
            wan_pub, wan = f"hw{self.sfx}p{i}", f"hw{self.sfx}w{i}"
            lan_nat, lan_host = f"hw{self.sfx}l{i}", f"hw{self.sfx}h{i}"
            self.veth("pub", wan_pub, nat, wan)
            self.ip("pub", "link", "set", wan_pub, "master", br, "up")
            self.ip(nat, "addr", "add", f"{WAN_IP[i]}/24", "dev", wan)
            self.ip(nat, "link", "set", wan, "up")
            self.veth(nat, lan_nat, lan, lan_host)
            self.ip(nat, "addr", "add", f"{LAN_ROUTER[i]}/24", "dev",
                    lan_nat)
            self.ip(nat, "link", "set", lan_nat, "up")
            self.ip(lan, "addr", "add", f"{LAN_HOST[i]}/24", "dev",
                    lan_host)
            self.ip(lan, "link", "set", lan_host, "up")
            self.ip(lan, "route", "add", "default", "via", LAN_ROUTER[i])
            # Like a home router: everything not local goes upstream.
            self.ip(nat, "route", "add", "default", "via", PUB_IP)
            self.sh(nat, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.nat_rules(nat, wan, lan_nat)

    def nat_rules(self, nat, wan, lan):
        table = f"hwnat{self.sfx}"
        rules = nat_ruleset(table, wan, lan)
        r = self.sh(nat, "nft", "-f", "-", input=rules, check=False)
        if r.returncode != 0:
            # Only the first router can tell us nftables is unusable here.
            if not self.tables:
                pytest.skip(f"nftables unusable: {r.stderr.strip()}")
            raise AssertionError(f"nft -f: {r.stderr.strip()}")
        self.tables.append((nat, table))

    def destroy(self):
        """Removes what build() made, in reverse; returns the errors."""
        errors = []
        for ns, table in reversed(self.tables):
            r = self.sh(ns, "nft", "delete", "table", "ip", table,
                        check=False)
            if r.returncode:
                errors.append(f"nft delete table {table} in {ns}: "
                              f"{r.stderr.strip()}")
        for ns, dev in reversed(self.devs):
            r = self.ip(ns, "link", "del", dev, check=False)
            if r.returncode:
                errors.append(f"ip link del {dev} in {ns}: "
                              f"{r.stderr.strip()}")
        for ns in reversed(self.created_ns):
            r = run("ip", "netns", "del", ns, check=False)
            if r.returncode:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
        left = run("ip", "netns", "list", check=False).stdout
        errors += [f"namespace left: {ns}" for ns in self.created_ns
                   if ns in left]
        return errors

    # ---- probes run inside the namespaces ----

    def connects(self, ns, host, port, timeout=1.5):
        """Whether a TCP connect from ns to host:port succeeds and the
        server closes it (a Listener closes after noting the peer, so
        a True means the peer has been noted)."""
        code = ("import socket,sys\n"
                "s = socket.create_connection((sys.argv[1],"
                " int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
                "assert s.recv(1) == b''\n")
        r = self.sh(ns, PY, "-c", code, host, port, timeout, check=False,
                    timeout=timeout + 10)
        return r.returncode == 0

    def tcp_sockets(self, ns):
        """(local, remote, state) of the namespace's IPv4 TCP sockets."""
        out = self.sh(ns, "cat", "/proc/net/tcp").stdout.splitlines()[1:]

        def addr(s):
            h, p = s.split(":")
            return (socket.inet_ntoa(struct.pack("=I", int(h, 16))),
                    int(p, 16))
        socks = []
        for line in out:
            f = line.split()
            socks.append((addr(f[1]), addr(f[2]), int(f[3], 16)))
        return socks

    def listening(self, ns, port):
        return any(loc[1] == port and st == 0x0A
                   for loc, _, st in self.tcp_sockets(ns))

    def http_get(self, ns, url):
        """GET url from inside ns: the JSON body, or None on any error."""
        code = ("import sys,urllib.request\n"
                "print(urllib.request.urlopen(sys.argv[1], timeout=3)"
                ".read().decode())")
        r = self.sh(ns, PY, "-c", code, url, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None


class Listener:
    """A plain TCP server inside a namespace that reports the address each
    connection came from."""

    CODE = ("import socket,sys\n"
            "s = socket.socket()\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind((sys.argv[1], int(sys.argv[2])))\n"
            "s.listen(16)\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    c, a = s.accept()\n"
            "    print(a[0], flush=True)\n"
            "    c.close()\n")

    def __init__(self, net, ns, host, port):
        self.port = port
        self.proc = subprocess.Popen(
            net.exec(ns, PY, "-u", "-c", self.CODE, host, port),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise AssertionError(f"listener in {ns} on {host}:{port}: "
                                 f"{line} {self.proc.stderr.read()}")

    def close(self):
        """Stops the server; returns the peer addresses it saw."""
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out.split()


class NsService:
    """A process run with `ip netns exec` (which execs it in place, so the
    pid and the exit status are the program's own)."""

    def __init__(self, net, ns, name, args, logdir):
        self.name = name
        self.cmd = net.exec(ns, *args)
        self.log = logdir / f"{name}.log"
        self.proc = None
        self.logf = None

    def start(self, ready, timeout=10):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=self.logf,
                                     stderr=self.logf)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited "
                                     f"({self.proc.returncode}): "
                                     f"{self.log.read_text()}")
            if ready():
                return self
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not get ready")

    def stop(self):
        """SIGTERM, wait; returns the exit status (killed: not 0)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.logf.close()
                return f"{self.name} ignored SIGTERM (killed)"
        self.logf.close()
        return self.proc.returncode


class NsVisor(Visor):
    """conftest's Visor, run inside a namespace."""

    def __init__(self, root, name, net, ns, **kw):
        super().__init__(root, name, **kw)
        self.addr = None  # listens on nothing
        self.svc = NsService(net, ns, name,
                             [bin_path("hopwire-visor"), "--config",
                              self.config], self.dir)
        self.log = self.svc.log

    def start(self):
        self.svc.start(lambda: self.cli("info").returncode == 0)
        self.proc = self.svc.proc
        return self

    def stop(self, sig=None):
        return self.svc.stop()


@pytest.fixture
def net():
    n = Net()
    try:
        n.build()
        yield n
    finally:
        errors = n.destroy()
        assert not errors, "cleanup: " + "; ".join(errors)


@pytest.fixture
def procs(net):
    """Collects started processes; SIGTERMs any still running at the end
    (before the namespaces go: a fixture `net` is torn down after this)."""
    made = []
    yield made
    errors = []
    for p in reversed(made):
        try:
            p.stop()
        except Exception as e:  # keep stopping the others
            errors.append(f"{p.name}: {e!r}")
    assert not errors, "; ".join(errors)


def dump_logs(items):
    for p in items:
        try:
            print(f"==== {p.log}\n{p.log.read_text()}")
        except OSError as e:
            print(f"==== {p.log}: {e}")


def tp_state(v, pk):
    for t in v.transports():
        if t["pk"] == pk:
            return t
    return None


def relay_up(v, relay_pk):
    return any(s["relay"] == relay_pk and s["up"]
               for s in v.json("info")["network"]["relays"])


def in_lans(ip):
    return any(ipaddress.ip_address(ip) in lan for lan in LANS)


def test_nat_blocks_inbound_and_masquerades(net):
    """The topology itself: what the relay test below relies on."""
    # pub knows only its own segment.
    routes = net.ip("pub", "route", "show").stdout
    assert "default" not in routes and "10.99.1." not in routes \
        and "10.99.2." not in routes, routes
    for i in (1, 2):
        assert net.ip("pub", "route", "get", LAN_HOST[i],
                      check=False).returncode != 0

    # A listener in lan1 is reachable on its LAN, not from outside: even
    # with a route to it, the router drops new inbound connections.
    srv = Listener(net, "lan1", LAN_HOST[1], 7100)
    try:
        assert net.connects("nat1", LAN_HOST[1], 7100)
        assert not net.connects("pub", LAN_HOST[1], 7100, timeout=0.5)
        net.ip("pub", "route", "add", "10.99.1.0/24", "via", WAN_IP[1])
        try:
            assert not net.connects("pub", LAN_HOST[1], 7100, timeout=1)
            assert not net.connects("nat2", LAN_HOST[1], 7100, timeout=0.5)
        finally:
            net.ip("pub", "route", "del", "10.99.1.0/24", "via", WAN_IP[1])
    finally:
        peers = srv.close()
    assert peers == [LAN_ROUTER[1]], peers  # only the router's own connect
    assert "10.99.1." not in net.ip("pub", "route", "show").stdout

    # Outbound works and arrives from the router's public address.
    srv = Listener(net, "pub", PUB_IP, 7101)
    try:
        assert net.connects("lan1", PUB_IP, 7101)
        assert net.connects("lan2", PUB_IP, 7101)
    finally:
        peers = srv.close()
    assert peers == [WAN_IP[1], WAN_IP[2]], peers

    # The LANs cannot reach each other either.
    assert not net.connects("lan1", LAN_HOST[2], 7100, timeout=0.5)


def test_visors_behind_nat_link_through_relay(net, procs, tmp_path):
    items = []
    try:
        _link_through_relay(net, procs, tmp_path, items)
    except BaseException:
        dump_logs(items)
        raise


def _link_through_relay(net, procs, tmp_path, items):
    pub = tmp_path / "pub"
    pub.mkdir()
    key = pub / "relay.key"
    run(bin_path("hopwire"), "keygen", "--out", key)
    relay_pk = run(bin_path("hopwire"), "pk", "--key", key).stdout.strip()

    disc = NsService(net, "pub", "discovery", [
        bin_path("hopwire-discovery"), "--listen", f"{PUB_IP}:{DISC_PORT}",
        "--store", f"sqlite:{pub}/d.db"], pub)
    procs.append(disc)
    items.append(disc)
    disc.start(lambda: net.listening("pub", DISC_PORT))

    relay = NsService(net, "pub", "relay", [
        bin_path("hopwire-relay"), "--key", key, "--listen",
        f"{PUB_IP}:{RELAY_PORT}", "--discovery", DISC_URL,
        "--keepalive-ms", "500"], pub)
    procs.append(relay)
    items.append(relay)
    relay.start(lambda: net.listening("pub", RELAY_PORT))
    wait_for(lambda: any(r["pk"] == relay_pk for r in
                         (net.http_get("pub", f"{DISC_URL}/v1/relays")
                          or {"relays": []})["relays"]),
             what="the relay in discovery")

    a = NsVisor(tmp_path, "a", net, "lan1", discovery=DISC_URL,
                tcp_listen="")
    b = NsVisor(tmp_path, "b", net, "lan2", discovery=DISC_URL,
                tcp_listen="")
    for v in (a, b):
        procs.append(v.svc)
        items.append(v)
        v.start()
    for v in (a, b):
        wait_for(lambda v=v: relay_up(v, relay_pk), what="relay session up")
        wait_for(lambda v=v: relay_pk in (net.http_get(
                     "pub", f"{DISC_URL}/v1/visors/{v.pk}") or
                     {"relays": []})["relays"],
                 what="visor entry listing the relay")

    # The relay sees its two sessions from the routers' public addresses;
    # nothing in pub ever talks to a LAN address.
    socks = net.tcp_sockets("pub")
    sessions = sorted(rem[0] for loc, rem, st in socks
                      if loc == (PUB_IP, RELAY_PORT) and st == 0x01)
    assert sessions == [WAN_IP[1], WAN_IP[2]], socks
    assert not [s for s in socks if in_lans(s[1][0])], socks

    # No direct path: dialing b's LAN address or its router's public one
    # from a fails within the handshake timeout (2 s). (Done before the
    # relay transport: an add to a pk that already has a transport is
    # answered with that transport.)
    for addr in (f"{LAN_HOST[2]}:7777", f"{WAN_IP[2]}:7777"):
        t0 = time.time()
        r = a.cli("tp", "add", b.pk, "--type", "tcp", "--addr", addr)
        took = time.time() - t0
        assert r.returncode != 0, r.stdout
        assert took < 2.0 + 2.0, f"dial {addr} took {took:.1f} s: {r.stderr}"
        assert tp_state(a, b.pk) is None

    r = a.cli("tp", "add", b.pk, "--type", "relay", "--json")
    assert r.returncode == 0, r.stderr
    ta = json.loads(r.stdout)
    assert ta["type"] == "relay" and ta["pk"] == b.pk, ta
    wait_for(lambda: (tp_state(b, a.pk) or {}).get("state") == "up",
             what="transport up at b")
    ta, tb = tp_state(a, b.pk), tp_state(b, a.pk)
    assert ta["type"] == tb["type"] == "relay"
    assert ta["id"] == tb["id"]

    for src, dst in ((a, b), (b, a)):
        r = src.cli("ping", dst.pk, "--count", "3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 sent, 0 lost" in r.stdout, r.stdout

    for src, dst in ((a, b), (b, a)):
        before = tp_state(dst, src.pk)["rx_bytes"]
        r = src.cli("tp", "throughput", tp_state(src, dst.pk)["id"],
                    "--bytes", "20000000")
        assert r.returncode == 0, r.stderr
        got = tp_state(dst, src.pk)["rx_bytes"] - before
        assert got >= 20000000, got

    # Still nothing but the routers' addresses reached pub.
    socks = net.tcp_sockets("pub")
    assert not [s for s in socks if in_lans(s[1][0])], socks

    # Everything stops cleanly on SIGTERM, visors first.
    for p in (a.svc, b.svc, relay, disc):
        rc = p.stop()
        assert rc == 0, f"{p.name} exited {rc}: {p.log.read_text()}"
