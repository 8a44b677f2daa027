"""The mesh handshake on every transport (docs/mesh.md): HELLOs with the
address each visor listens on and the one it sees the other at, the
address a visor learns from what its peers agree on, and PEERS."""
import json

from conftest import wait_for


def wildcard(v):
    """Makes v listen on 0.0.0.0 (its port kept); before start."""
    cfg = json.loads(v.config.read_text())
    cfg["transport"]["tcp_listen"] = f"0.0.0.0:{v.port}"
    v.config.write_text(json.dumps(cfg))
    return v


def mesh(v):
    return v.json("info")["mesh"]


def link(a, b, *flags):
    r = a.cli("tp", "add", b.pk, "--addr", b.addr, *flags)
    assert r.returncode == 0, r.stderr


def done_links(v):
    return [l for l in mesh(v)["links"] if l["state"] == "done"]


def test_a_wildcard_visor_learns_its_address_from_two_peers(visors):
    hub = wildcard(visors("hub")).start()
    a = wildcard(visors("a")).start()
    b = visors("b").start()
    m = mesh(hub)
    assert m["configured"] == f"tcp://0.0.0.0:{hub.port}"
    assert m["observed"] is None and m["advertised"] is None
    # A wildcard is never advertised as such; a plain address is.
    assert mesh(b)["advertised"] == b.addr
    # The hub dials a; b dials the hub.
    link(hub, a)
    wait_for(lambda: len(done_links(hub)) == 1, what="hub - a handshake")
    # One peer alone does not move the address.
    assert mesh(hub)["observed"] is None
    assert mesh(hub)["votes"] == [{"addr": f"tcp://127.0.0.1:{hub.port}",
                                   "peers": 1}]
    link(b, hub)
    wait_for(lambda: len(done_links(hub)) == 2, what="b - hub handshake")
    wait_for(lambda: mesh(hub)["observed"] == f"127.0.0.1:{hub.port}",
             what="the hub's observed address")
    m = mesh(hub)
    assert m["advertised"] == f"127.0.0.1:{hub.port}", m
    assert {(l["pk"], l["me"], l["seen"]) for l in m["links"]} == {
        (a.pk, f"tcp://0.0.0.0:{a.port}", f"tcp://127.0.0.1:{a.port}"),
        (b.pk, f"tcp://{b.addr}", f"tcp://{b.addr}")}
    # a heard where it is from one peer only.
    assert mesh(a)["observed"] is None
    r = hub.cli("info")
    assert f"observed    127.0.0.1:{hub.port}" in r.stdout, r.stdout
    assert f"configured  tcp://0.0.0.0:{hub.port}" in r.stdout


def test_peers_are_shared_once_linked(visors):
    hub = visors("hub").start()
    a = visors("a").start()
    b = visors("b").start()
    link(a, hub)
    link(b, hub)
    # a and b are not linked, yet each learns the other from the hub.
    for me, other in ((a, b), (b, a)):
        wait_for(lambda me=me, other=other: any(
            p["pk"] == other.pk for p in mesh(me)["learned"]),
            what=f"{me.dir.name} learning of {other.dir.name}")
        got = [p for p in mesh(me)["learned"] if p["pk"] == other.pk][0]
        assert got == {"pk": other.pk, "addr": f"tcp://{other.addr}",
                       "from": hub.pk}, got
    # Nobody is told of itself or of the one telling.
    for v in (a, b, hub):
        assert all(p["pk"] not in (v.pk, p["from"])
                   for p in mesh(v)["learned"])


def test_a_new_connection_runs_the_handshake_again(visors):
    a = visors("a").start()
    b = visors("b").start()
    link(a, b, "--persistent")
    wait_for(lambda: len(done_links(b)) == 1, what="handshake")
    b.stop()
    b.start()
    wait_for(lambda: len(done_links(b)) == 1, timeout=15,
             what="handshake after b restarted (a redials: persistent)")
