"""The namespace harness the VPN tests and bench/bench_vpn.py stand on
(tests/e2e/netns.py): each topology comes up, world is reachable from
server only, the NATs let nothing in, and everything is gone afterwards,
also when the body of the `with` fails."""
import os
import subprocess

import pytest

import netns
from conftest import BIN_DIR

pytestmark = netns.skip_unless_root()


def namespaces():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True,
                              text=True, check=True).stdout.split())


@pytest.mark.parametrize("kind", netns.Net.KINDS)
def test_topology_up_world_from_server_only_and_removed(kind):
    with netns.Net(kind) as net:
        names = list(net.created)
        assert names and all(n.startswith(net.prefix) for n in names)
        assert set(names) <= namespaces()
        assert net.tcp_ok("server", netns.WORLD, netns.HTTP_PORT)
        assert net.tcp_ok("server", netns.WORLD, netns.IPERF_PORT)
        for key in ("client", *(("mid",) if kind == "mid" else ()),
                    *(("relay", "natc") if kind == "relayed" else ())):
            assert not net.tcp_ok(key, netns.WORLD, netns.HTTP_PORT,
                                  timeout=0.5), key
        world_pids = net.pids("world")
        assert len(world_pids) == 2, world_pids
        if kind == "direct":
            r = net.run("client", "ping", "-c", "1", "-W", "1",
                        net.addr["server"], check=False)
            assert r.returncode == 0, r.stdout
        if kind == "mid":
            # mid does not forward: client cannot reach server.
            r = net.run("client", "ping", "-c", "1", "-W", "1",
                        net.addr["server"], check=False)
            assert r.returncode != 0
        if kind == "relayed":
            relay = net.addr["relay"]
            for key in ("client", "server"):
                r = net.run(key, "ping", "-c", "1", "-W", "1", relay,
                            check=False)
                assert r.returncode == 0, (key, r.stdout)
            # The LANs cannot reach each other, nor the NATs' inside.
            for key, other in (("client", "server"), ("server", "client")):
                r = net.run(key, "ping", "-c", "1", "-W", "1",
                            net.addr[other], check=False)
                assert r.returncode != 0, (key, other)
            # A connection from the relay to a NAT's wan is dropped.
            assert not net.tcp_ok("relay", net.addr["natc"], 22,
                                  timeout=0.5)
            assert "hwv_nat" in net.nft_tables("natc")
    assert not set(names) & namespaces()
    for pid in world_pids:
        assert not os.path.exists(f"/proc/{pid}"), pid


def test_removed_when_the_body_fails():
    net = netns.Net("direct")
    with pytest.raises(ZeroDivisionError):
        with net:
            names = list(net.created)
            sleeper = net.popen("client", "sleep", "sleep", "600")
            1 / 0
    assert names and not set(names) & namespaces()
    assert sleeper.poll() is not None


def test_two_runs_do_not_collide_and_names_are_checked():
    with netns.Net("direct", world=False) as a, \
            netns.Net("direct", world=False, clients=2) as b:
        assert a.prefix != b.prefix
        assert not set(a.created) & set(b.created)
        r = b.run("client2", "ping", "-c", "1", "-W", "1",
                  b.addr["server"], check=False)
        assert r.returncode == 0, r.stdout
    with pytest.raises(ValueError, match="unknown topology"):
        netns.Net("ring")
    with pytest.raises(ValueError, match="direct topology only"):
        netns.Net("relayed", clients=2)


def test_stale_namespaces_of_dead_runs_are_removed():
    # A run that died by SIGKILL: its namespace carries a dead pid.
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"{netns.prefix_of(dead.pid)}x0-client"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in netns.cleanup_stale()
        assert name not in namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_visors_link_in_each_topology(tmp_path):
    if not (BIN_DIR / "hopwire-visor").exists():
        pytest.fail(f"{BIN_DIR}/hopwire-visor is missing: build first "
                    f"(make)")
    for kind in netns.Net.KINDS:
        with netns.Net(kind, world=False) as net:
            hw = netns.hopwire(net, BIN_DIR, tmp_path / kind)
            paths = hw.clients["client"].json("route", "find",
                                              hw.server.pk)["paths"]
            hops = paths[0]["hops"] if paths else None
            assert hops == (2 if kind == "mid" else 1), paths
            types = {t["type"] for t in hw.clients["client"].json("tp",
                                                                  "ls")}
            assert types == ({"relay"} if kind == "relayed" else {"tcp"})
            for v in (*hw.clients.values(), hw.server, hw.mid):
                if v:
                    assert v.stop() == 0, v.log.read_text()
