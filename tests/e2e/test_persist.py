"""Persistent transports that follow their peer: a peer that comes back on
another address is found through discovery (docs/transport.md)."""
import json

from conftest import free_port, wait_for


def up_transports(v):
    return [t for t in v.transports() if t["state"] == "up"]


def advertised(disc_url, pk):
    """The TCP addresses of pk's visor entry in discovery ([] if none)."""
    import urllib.error
    from conftest import http_get
    try:
        return http_get(f"{disc_url}/v1/visors/{pk}").get("addrs", [])
    except urllib.error.HTTPError:
        return []


def move(v):
    """Points v's config at a new TCP port (v must be stopped)."""
    cfg = json.loads(v.config.read_text())
    v.port = free_port()
    v.addr = f"127.0.0.1:{v.port}"
    cfg["transport"]["tcp_listen"] = v.addr
    v.config.write_text(json.dumps(cfg, indent=2))


def test_persistent_transport_follows_moved_peer(control_plane, visors):
    disc = control_plane.discovery()
    a = visors("a", discovery=disc.url, relay_sessions=0).start()
    b = visors("b", discovery=disc.url, relay_sessions=0).start()
    old = b.addr
    wait_for(lambda: advertised(disc.url, b.pk) == [old],
             what="b registered in discovery")
    r = a.cli("tp", "add", b.pk, "--type", "tcp", "--addr", old,
              "--persistent")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: up_transports(a) and up_transports(b),
             what="transport up on both ends")
    [tp] = a.transports()

    # b stops; a redials the saved address, which refuses; discovery
    # still has that address, so a backs off and keeps asking.
    assert b.stop() == 0
    wait_for(lambda: a.transports()[0]["state"] != "up",
             what="transport down at a")
    wait_for(lambda: "discovery: the same address"
             in a.transports()[0].get("last_error", ""),
             what="a asking discovery after a refused dial")
    assert a.transports()[0]["addr"] == old

    # b comes back elsewhere and registers its new address; a finds it
    # by itself.
    move(b)
    b.start()
    wait_for(lambda: up_transports(a) and up_transports(b), timeout=15,
             what="persistent transport back at b's new address")
    [now] = a.transports()
    assert now["id"] == tp["id"] and now["persistent"] is True
    assert now["addr"] == b.addr and now["remote_addr"] == b.addr
    assert "last_error" not in now
    assert a.cli("ping", b.pk, "--count", "1").returncode == 0
    log = a.log.read_text()
    assert f"transport {tp['id']}: {b.pk} moved from {old} to {b.addr} " \
        "(discovery)" in log
    r = a.cli("tp", "ls")
    assert b.addr in r.stdout and old not in r.stdout

    # The state file keeps the new address: a restarted a dials it.
    state = a.dir / "local" / "transports.json"

    def saved():
        return [e["addr"] for e in json.loads(state.read_text())["persistent"]]
    wait_for(lambda: saved() == [b.addr], what="new address in the state file")
    assert a.stop() == 0
    a.start()
    wait_for(lambda: up_transports(a), timeout=15, what="redial after restart")
    assert a.transports()[0]["addr"] == b.addr


def test_no_lookup_without_discovery(visors):
    """Without discovery a persistent transport just backs off at its saved
    address, and says nothing of discovery."""
    a, b = visors("a").start(), visors("b").start()
    r = a.cli("tp", "add", b.pk, "--type", "tcp", "--addr", b.addr,
              "--persistent")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: up_transports(a) and up_transports(b),
             what="transport up")
    old = b.addr
    assert b.stop() == 0
    move(b)
    b.start()
    wait_for(lambda: a.transports()[0].get("last_error", "").startswith(
        f"dial {old}: "), what="a redialing the saved address")
    [t] = a.transports()
    assert t["addr"] == old and t["state"] != "up"
    assert "discovery" not in t["last_error"]
    assert "moved from" not in a.log.read_text()
