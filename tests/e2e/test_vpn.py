"""The VPN (issue 17, docs/vpn.md): hopwire-vpn-server on visor C in
namespace `server`, hopwire-vpn-client on visor A in `client`, set up
with `hopwire vpn serve|up|down|status`, in the topologies of netns.py:
direct, through a mid visor, relayed behind two NATs. world (an HTTP
server and iperf3 -s) is reachable from server only, so anything client
gets from it came through the tunnel.

It fails (does not skip) when the apps or the CLI are missing. Needs
root: skipped otherwise."""
import json
import os
import pathlib
import secrets
import signal
import subprocess
import time

import pytest

import netns
from conftest import BIN_DIR, bin_path, wait_for

pytestmark = netns.skip_unless_root()

WORLD = netns.WORLD
URL = f"http://{WORLD}:{netns.HTTP_PORT}"
SUBNET_SERVER = "10.44.0.1"
BLOB = 2 << 20


@pytest.fixture
def vpn(tmp_path):
    """make(kind, clients=1) -> (net, hw, marker): the topology, its
    visors linked, world serving /blob (BLOB bytes of lines that carry
    the random marker). Logs are printed (shown when a test fails);
    everything is removed at the end."""
    made = []

    def make(kind="direct", clients=1):
        bin_path("hopwire-vpn-server")  # fails, naming it, when missing
        bin_path("hopwire-vpn-client")
        www = tmp_path / "www"
        www.mkdir(exist_ok=True)
        marker = "hw-vpn-marker-" + secrets.token_hex(16)
        line = (marker + " ").encode() * 16 + b"\n"
        (www / "blob").write_bytes(line * (BLOB // len(line) + 1))
        net = netns.Net(kind, www=str(www), clients=clients)
        made.append(net)
        net.__enter__()
        keys = ("client", "client2")[:clients]
        hw = netns.hopwire(net, BIN_DIR, tmp_path / f"hw-{kind}",
                           clients=keys)
        made[-1] = (net, hw)
        return net, hw, marker
    yield make
    errors = []
    for item in made:
        net, hw = item if isinstance(item, tuple) else (item, None)
        if hw:
            for v in (hw.server, hw.mid, *hw.clients.values()):
                if v:
                    print(f"==== {v.name} visor\n{v.log.read_text()}")
                    for app in ("vpn-server", "vpn-client"):
                        print(f"==== {v.name} {app}: "
                              f"{v.app_status(app)}\n{v.app_log(app)}")
        errors += net.close()
    assert not errors, "cleanup: " + "; ".join(errors)


def ok(r, what):
    assert r.returncode == 0, f"{what}: {r.stdout} {r.stderr}"
    return r


def serve(v, *allow, extra=()):
    args = [a for pk in allow for a in ("--allow", pk)]
    ok(v.cli("vpn", "serve", *args, *extra), "vpn serve")


def up(v, server, *routes):
    extra = ["--routes", ",".join(routes)] if routes else []
    ok(v.cli("vpn", "up", server.pk, *extra), "vpn up")


def client_state(v):
    return (v.app_status("vpn-client") or {}).get("state")


def connected(v, timeout=30):
    wait_for(lambda: client_state(v) == "connected", timeout=timeout,
             what=f"{v.name}'s VPN client connected (status "
                  f"{v.app_status('vpn-client')})")
    return v.app_status("vpn-client")


def curl(net, key, path="/blob", timeout=20):
    return net.run(key, "curl", "-sS", "--max-time", timeout, "-o",
                   "/dev/null", "-w", "%{size_download}", URL + path,
                   check=False, timeout=timeout + 10)


def fetch_ok(net, key):
    r = ok(curl(net, key), f"curl {URL}/blob from {key}")
    assert int(r.stdout) >= BLOB, r.stdout


def unreachable(net, key):
    r = curl(net, key, timeout=3)
    return r.returncode != 0


def ping_ok(net, key, addr, n=5):
    r = net.run(key, "ping", "-n", "-c", n, "-i", "0.2", "-W", "2", addr,
                check=False, timeout=30)
    return r.returncode == 0 and f"{n} received" in r.stdout


def iperf_ok(net, key):
    r = net.run(key, "iperf3", "-c", WORLD, "-p", netns.IPERF_PORT, "-t",
                2, "-J", check=False, timeout=60)
    if r.returncode:
        return False
    try:
        # iperf3 -J may exit 0 with {"error": ...} and no sums
        end = json.loads(r.stdout)["end"]
        return end["sum_received"]["bytes"] > 0
    except (ValueError, KeyError):
        return False


def status_json(v):
    r = ok(v.cli("vpn", "status", "--json"), f"vpn status on {v.name}")
    return json.loads(r.stdout)


def server_status(hw):
    return hw.server.app_status("vpn-server") or {}


def server_client(hw, pk):
    for c in server_status(hw).get("clients", []):
        if c.get("pk") == pk:
            return c
    return None


def app_pid(net, key, binary):
    """The pid of the app (not of its --cleanup run) in namespace key."""
    for pid in net.pids(key):
        try:
            if (os.path.basename(os.readlink(f"/proc/{pid}/exe")) == binary
                    and b"--cleanup" not in pathlib.Path(
                        f"/proc/{pid}/cmdline").read_bytes()):
                return pid
        except OSError:
            pass
    return None


class Capture:
    """tcpdump on a device in a namespace, writing a pcap file."""

    def __init__(self, net, key, dev, path):
        self.path = path
        self.p = net.popen(key, "tcpdump", "tcpdump", "-n", "-i", dev,
                           "-B", "65536", "-U", "-s", "0", "-w", path,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        line = self.p.stderr.readline()
        assert b"listening on" in line, line

    def stop(self):
        time.sleep(1)  # what the filter took is written out, not cut off
        self.p.send_signal(signal.SIGINT)
        self.p.wait(timeout=10)
        # "N packets dropped by kernel": a short capture proves nothing
        self.report = self.p.stderr.read().decode(errors="replace")
        return self.path.read_bytes()


def test_vpn_direct_world_only_while_up_no_plaintext_routes_restored(
        vpn, tmp_path):
    net, hw, marker = vpn("direct")
    a, c = hw.clients["client"], hw.server
    before = net.routes("client")
    tables_before = net.nft_tables("client")
    assert unreachable(net, "client")
    assert not iperf_ok(net, "client")

    serve(c, a.pk)
    up(a, c)
    st = connected(a)
    assert st["server"] == c.pk, st
    addr = st["address"]
    assert addr and addr != SUBNET_SERVER and addr.startswith("10.44.0."), st
    assert st["tun"] == "hwvpnc0", st
    srv = server_status(hw)
    assert srv["role"] == "server" and srv["address"] == SUBNET_SERVER
    assert srv["nat"] is True, srv
    assert "hopwire_vpn_hwvpns0" in net.nft_tables("server")
    wait_for(lambda: (server_client(hw, a.pk) or {}).get("connected"),
             what="the client listed connected in the server's status")
    assert server_client(hw, a.pk)["address"] == addr

    # Through the tunnel: HTTP, iperf3, ping; the underlay veth carries
    # the transfer without its plaintext.
    cap = Capture(net, *net.underlay, tmp_path / "underlay.pcap")
    try:
        fetch_ok(net, "client")
    finally:
        pcap = cap.stop()
    assert len(pcap) > BLOB, \
        f"the transfer did not cross the underlay: {cap.report}"
    assert marker.encode() not in pcap, "plaintext on the underlay veth"
    assert iperf_ok(net, "client")
    assert ping_ok(net, "client", WORLD)
    assert ping_ok(net, "client", SUBNET_SERVER)

    # The counters, in the app's status and in `vpn status --json`.
    wait_for(lambda: (a.app_status("vpn-client") or {}).get(
        "bytes_in", 0) >= BLOB, what="bytes_in to count the transfer")
    st = a.app_status("vpn-client")
    assert st["packets_in"] > 0 and st["bytes_out"] > 0, st
    text = json.dumps(status_json(a))
    assert c.pk in text and addr in text, text
    text = a.cli("vpn", "status").stdout
    assert c.pk in text and addr in text, text

    # Down: the namespace as it was, world out of reach again.
    ok(a.cli("vpn", "down"), "vpn down")
    assert net.routes("client") == before
    assert net.nft_tables("client") == tables_before
    assert "hwvpnc0" not in net.ip("client", "-br", "link").stdout
    assert unreachable(net, "client")
    assert not ping_ok(net, "client", WORLD, n=1)
    # The server keeps serving; stopping its visor removes its table.
    assert hw.server.stop() == 0
    assert "hopwire_vpn_hwvpns0" not in net.nft_tables("server")


def test_vpn_allow_list_two_clients_and_spoofing(vpn):
    net, hw, marker = vpn("direct", clients=2)
    a, b, c = hw.clients["client"], hw.clients["client2"], hw.server
    before_b = net.routes("client2")

    # Only a allowed: b is refused and gets no address.
    serve(c, a.pk)
    up(a, c)
    up(b, c)
    connected(a)
    wait_for(lambda: client_state(b) == "refused", timeout=30,
             what="b refused")
    st = b.app_status("vpn-client")
    assert not st.get("address"), st
    assert st.get("error"), st
    assert server_status(hw)["refused"] >= 1
    assert server_client(hw, b.pk) is None or \
        not server_client(hw, b.pk).get("address")
    assert unreachable(net, "client2")
    assert "10.44.0." not in net.ip("client2", "addr").stdout
    ok(b.cli("vpn", "down"), "vpn down on b")
    assert net.routes("client2") == before_b

    # Both allowed: two addresses, no way between them.
    serve(c, a.pk, b.pk)
    up(b, c)
    sa, sb = connected(a), connected(b)
    assert sa["address"] != sb["address"], (sa, sb)
    fetch_ok(net, "client")
    fetch_ok(net, "client2")
    assert not ping_ok(net, "client", sb["address"], n=2)
    assert not ping_ok(net, "client2", sa["address"], n=2)

    # A packet from a with a source it was not given: dropped at the
    # server and counted; one from its own address gets through.
    rx = net.popen("world", "udp receiver", netns.PY, "-c", RECEIVER,
                   WORLD, 9999, stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    dropped0 = (server_client(hw, a.pk) or {}).get("spoofed_dropped", 0)
    for src, word in (("10.44.0.200", "spoofed"), (sa["address"], "own"),
                      ("10.201.1.2", "underlay")):
        ok(net.run("client", netns.PY, "-c", SPOOF, src, WORLD, 9999,
                   word), f"raw send from {src}")
    wait_for(lambda: (server_client(hw, a.pk) or {}).get(
        "spoofed_dropped", 0) >= dropped0 + 2,
             what="the spoofed packets counted at the server")
    assert server_status(hw)["spoofed_dropped"] >= 2
    time.sleep(1)
    rx.terminate()
    got = rx.communicate(timeout=10)[0].split()
    assert "own" in got and "spoofed" not in got and "underlay" not in got, \
        got


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, _ = s.recvfrom(2048)
    print(data.decode(errors="replace"), flush=True)
"""

# A UDP datagram with a source address of our choosing, written whole
# (IPPROTO_RAW implies IP_HDRINCL): the kernel routes it by destination,
# here into the client's TUN, and fills in the IP checksum.
SPOOF = """
import socket, struct, sys
src, dst, port, word = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
payload = word.encode()
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, (dst, 0))
"""


def test_vpn_server_killed_client_recovers(vpn):
    net, hw, _ = vpn("direct")
    a, c = hw.clients["client"], hw.server
    serve(c, a.pk)
    up(a, c)
    addr = connected(a)["address"]
    fetch_ok(net, "client")
    pid = app_pid(net, "server", "hopwire-vpn-server")
    assert pid, net.pids("server")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: client_state(a) in ("reconnecting", "connecting"),
             timeout=10, what="the client to see the server gone")
    text = json.dumps(status_json(a))
    # `vpn status` says so, unless the client is back already.
    assert "connecting" in text or client_state(a) == "connected", text
    # The launcher cleans up and restarts the server; the client redials
    # by itself, keeping its address (leases are per key).
    st = connected(a, timeout=60)
    assert st["address"] == addr, st
    new = app_pid(net, "server", "hopwire-vpn-server")
    assert new and new != pid
    assert net.nft_tables("server").count("hopwire_vpn_hwvpns0") == 1
    fetch_ok(net, "client")


def test_vpn_client_killed_is_cleaned_up(vpn):
    net, hw, _ = vpn("direct")
    a, c = hw.clients["client"], hw.server
    before = net.routes("client")
    serve(c, a.pk)
    up(a, c)
    connected(a)
    pid = app_pid(net, "client", "hopwire-vpn-client")
    assert pid
    os.kill(pid, signal.SIGKILL)
    # The launcher runs --cleanup, then restarts it.
    wait_for(lambda: (app_pid(net, "client", "hopwire-vpn-client")
                      not in (None, pid)), timeout=30,
             what="the client restarted by the launcher")
    connected(a)
    fetch_ok(net, "client")
    ok(a.cli("vpn", "down"), "vpn down")
    assert net.routes("client") == before


def test_vpn_through_a_mid_visor(vpn):
    net, hw, marker = vpn("mid")
    a, c = hw.clients["client"], hw.server
    assert unreachable(net, "client")
    serve(c, a.pk)
    up(a, c)
    connected(a)
    fetch_ok(net, "client")
    assert ping_ok(net, "client", WORLD)
    # mid forwards the route group and knows neither end's traffic.
    kinds = {r["kind"] for r in hw.mid.json("route", "ls")["rules"]}
    assert kinds == {"intermediary"}, kinds


def test_vpn_relayed_behind_nat(vpn, tmp_path):
    net, hw, marker = vpn("relayed")
    a, c = hw.clients["client"], hw.server
    before = net.routes("client")
    assert unreachable(net, "client")
    serve(c, a.pk)
    up(a, c)
    connected(a)
    cap = Capture(net, *net.underlay, tmp_path / "lan.pcap")
    try:
        fetch_ok(net, "client")
    finally:
        pcap = cap.stop()
    assert len(pcap) > BLOB and marker.encode() not in pcap
    assert iperf_ok(net, "client")
    assert ping_ok(net, "client", WORLD)
    # The client's own transport (to the relay, discovery, setup) stays
    # outside the tunnel: a host route for the relay's address.
    assert net.addr["relay"] in net.ip("client", "route").stdout
    ok(a.cli("vpn", "down"), "vpn down")
    assert net.routes("client") == before


def test_vpn_ipv6_pool_and_named_routes(vpn):
    """--subnet6 gives the client an IPv6 address too; --routes sends only
    the networks named through the tunnel and leaves the rest alone."""
    net, hw, _ = vpn("direct")
    a, c = hw.clients["client"], hw.server
    before = net.routes("client")
    serve(c, a.pk, extra=("--subnet6", "fd44::/64"))
    up(a, c, f"{WORLD}/32", "fd99::/16")
    st = connected(a)
    assert st["address6"] and st["address6"].startswith("fd44::"), st
    wait_for(lambda: set((a.app_status("vpn-client") or {}).get(
        "routes", [])) == {f"{WORLD}/32 dev hwvpnc0",
                           "fd99::/16 dev hwvpnc0"},
             what="the named routes through the TUN")
    # Only the world's address goes through: nothing covers the visor's
    # own peer, so no host route is added for it.
    assert a.app_status("vpn-client")["underlay_routes"] == []
    fetch_ok(net, "client")
    assert ping_ok(net, "client", WORLD)
    # IPv6 across the loop: the server's tunnel address answers.
    r = net.run("client", "ping", "-6", "-n", "-c", 3, "-i", "0.2", "-W",
                2, "fd44::1", check=False, timeout=30)
    assert r.returncode == 0 and "3 received" in r.stdout, r.stdout
    srv = server_status(hw)
    assert srv["subnet6"] == "fd44::/64", srv
    ok(a.cli("vpn", "down"), "vpn down")
    assert net.routes("client") == before


@pytest.mark.parametrize("garbage,why", [
    (bytes([9, 0, 1, 0]), "unexpected type 9 frame"),
    (bytes([3, 0xff, 0xff]), "over the MTU"),
    (bytes([3, 0, 20]) + bytes(20), "PACKET of IP version 0"),
    (bytes([1, 0, 45]) + bytes(45), "unexpected ASSIGN frame"),
])
def test_vpn_server_closes_a_hostile_loop_and_serves_on(vpn, garbage, why):
    """A client that breaks the protocol (written from the seed's app
    protocol, not our SDK) gets a CLOSE naming the error; the server
    keeps running and serves the real client."""
    from seedapp import SeedApp
    net, hw, _ = vpn("direct")
    a, c = hw.clients["client"], hw.server
    serve(c, a.pk)
    wait_for(lambda: server_status(hw).get("role") == "server",
             what="the VPN server up")
    pid = app_pid(net, "server", "hopwire-vpn-server")
    bad = SeedApp(str(a.local / "apps.sock"), "hostile")
    try:
        okay, local = bad.dial(c.pk, 44)
        assert okay, local
        lport = local["port"]
        first = bad.read(48)  # (a Send's payload may hold more)
        assert first[:3] == bytes([1, 0, 45]) and len(first) == 48, first
        assert bad.write(lport, c.pk, 44, garbage)[0]
        # The CLOSE frame: type 4, length, "protocol error: ...".
        got = bad.read(3)
        assert got[0] == 4, got
        n = 3 + (got[1] << 8 | got[2])
        if len(got) < n:
            got += bad.read(n - len(got))
        reason = got[3:n].decode()
        assert reason.startswith("protocol error") and why in reason, \
            reason
    finally:
        bad.close()
    assert app_pid(net, "server", "hopwire-vpn-server") == pid
    up(a, c)
    connected(a)
    fetch_ok(net, "client")
