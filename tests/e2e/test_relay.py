"""Visors behind no listener link through a relay they found in discovery:
the relay carries only their end-to-end encrypted connection."""
import signal

from conftest import http_get, wait_for


def relay_up(v, relay_pk):
    for s in v.json("info")["network"]["relays"]:
        if s["relay"] == relay_pk and s["up"]:
            return True
    return False


def entry(url, v):
    try:
        return http_get(f"{url}/v1/visors/{v.pk}")
    except OSError:  # 404 until the visor registered
        return None


def registered_at(url, v, relay_pk):
    e = entry(url, v)
    return e is not None and relay_pk in e["relays"]


def tp_state(v, pk):
    for t in v.transports():
        if t["pk"] == pk:
            return t
    return None


def network(control_plane, visors):
    disc = control_plane.discovery()
    relay = control_plane.relay(disc.url)
    wait_for(lambda: any(r["pk"] == relay.pk for r in
                         http_get(f"{disc.url}/v1/relays")["relays"]),
             what="the relay in discovery")
    a = visors("a", discovery=disc.url, tcp_listen="").start()
    b = visors("b", discovery=disc.url, tcp_listen="").start()
    for v in (a, b):
        wait_for(lambda v=v: relay_up(v, relay.pk), what="relay session")
        wait_for(lambda v=v: registered_at(disc.url, v, relay.pk),
                 what="visor entry listing the relay")
    return disc, relay, a, b


def test_link_through_relay(control_plane, visors):
    disc, relay, a, b = network(control_plane, visors)

    # No address given: the visor finds b's relay in discovery.
    r = a.cli("tp", "add", b.pk, "--type", "relay", "--persistent", "--json")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: (tp_state(b, a.pk) or {}).get("state") == "up",
             what="transport up at b")
    ta, tb = tp_state(a, b.pk), tp_state(b, a.pk)
    assert ta["type"] == tb["type"] == "relay"
    assert ta["id"] == tb["id"]
    assert "relay" in ta["remote_addr"]

    r = a.cli("ping", b.pk, "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    r = b.cli("ping", a.pk, "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr

    # Data both ways, checked by the receiver's counters.
    for src, dst in ((a, b), (b, a)):
        before = tp_state(dst, src.pk)["rx_bytes"]
        t = tp_state(src, dst.pk)
        r = src.cli("tp", "throughput", t["id"], "--bytes", "20000000")
        assert r.returncode == 0, r.stderr
        assert tp_state(dst, src.pk)["rx_bytes"] - before >= 20000000

    # Both edges registered the transport in discovery.
    tps = http_get(f"{disc.url}/v1/transports?edge={a.pk}")["transports"]
    assert any(t["id"] == ta["id"] and t["type"] == "relay" for t in tps)


def test_relay_restart_brings_everything_back(control_plane, visors):
    disc, relay, a, b = network(control_plane, visors)
    r = a.cli("tp", "add", b.pk, "--type", "relay", "--persistent")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: (tp_state(b, a.pk) or {}).get("state") == "up",
             what="transport up at b")

    relay.stop(signal.SIGKILL)
    wait_for(lambda: tp_state(a, b.pk)["state"] != "up", timeout=10,
             what="transport down at a")
    relay.start()
    # No command: sessions re-dial, the persistent transport follows.
    for v in (a, b):
        wait_for(lambda v=v: relay_up(v, relay.pk), timeout=15,
                 what="relay session back")
    wait_for(lambda: tp_state(a, b.pk)["state"] == "up", timeout=15,
             what="persistent relay transport back")
    r = a.cli("ping", b.pk, "--count", "2")
    assert r.returncode == 0, r.stdout + r.stderr


def test_add_without_type_falls_back_to_relay(control_plane, visors):
    disc, relay, a, b = network(control_plane, visors)
    # b has no TCP address in discovery, so a has to use the relay.
    r = a.cli("tp", "add", b.pk, "--json")
    assert r.returncode == 0, r.stderr
    assert tp_state(a, b.pk)["type"] == "relay"


def test_add_without_discovery_entry_fails_clearly(control_plane, visors):
    disc = control_plane.discovery()
    a = visors("a", discovery=disc.url, tcp_listen="").start()
    stranger = visors("stranger")  # a key that never registered
    r = a.cli("tp", "add", stranger.pk, "--type", "relay")
    assert r.returncode != 0
    assert "not in discovery" in r.stderr, r.stderr


def test_tcp_visor_registers_its_address(control_plane, visors):
    disc = control_plane.discovery()
    a = visors("a", discovery=disc.url).start()
    b = visors("b", discovery=disc.url).start()
    wait_for(lambda: (entry(disc.url, b) or {}).get("addrs") == [b.addr],
             what="b's address in discovery")
    # No type, no address: tcp from discovery.
    r = a.cli("tp", "add", b.pk, "--json")
    assert r.returncode == 0, r.stderr
    assert tp_state(a, b.pk)["type"] == "tcp"
