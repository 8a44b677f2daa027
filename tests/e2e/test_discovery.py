"""hopwire-discovery end to end: the real binary on loopback, on SQLite and
on a real redis-server, driven over HTTP.

Entries are signed here in Python (cryptography's Ed25519) from the
canonical encoding in docs/discovery.md: a second implementation, written
from the document, that the C server must agree with byte for byte."""
import hashlib
import http.client
import json
import random
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey, Ed25519PublicKey)
from cryptography.hazmat.primitives.serialization import (Encoding,
                                                          PublicFormat)

from conftest import bin_path, free_port, wait_for

KIND = {"visor": 1, "relay": 2, "transport": 3, "transport_del": 4,
        "service": 5, "service_del": 6}


# ---- the canonical encoding (docs/discovery.md) ----

def enc_str(s):
    b = s.encode("ascii")
    assert len(b) <= 255
    return bytes([len(b)]) + b


def encode(kind, e):
    """The bytes an entry's signature covers."""
    out = b"HWD1" + bytes([KIND[kind]]) + bytes.fromhex(e["pk"])
    out += struct.pack(">QQ", e["seq"], e["ts"])
    if kind == "visor":
        out += enc_str(e["version"]) + bytes([len(e["relays"])])
        out += b"".join(bytes.fromhex(r) for r in e["relays"])
        out += bytes([len(e["addrs"])])
        out += b"".join(enc_str(a) for a in e["addrs"])
    elif kind == "relay":
        out += enc_str(e["addr"]) + struct.pack(">I", e["capacity"])
    elif kind == "transport":
        out += bytes.fromhex(e["id"]) + enc_str(e["type"])
        out += bytes.fromhex(e["edges"][0]) + bytes.fromhex(e["edges"][1])
        out += struct.pack(">I", e["rtt_us"])
    elif kind == "transport_del":
        out += bytes.fromhex(e["id"])
    elif kind == "service":
        out += enc_str(e["type"]) + struct.pack(">H", e["port"])
    elif kind == "service_del":
        out += enc_str(e["type"])
    return out


def tp_id(pk_a, pk_b, type_):
    """The transport ID both ends derive (transport/manager.c hw_tp_id)."""
    a, b = sorted([bytes.fromhex(pk_a), bytes.fromhex(pk_b)])
    h = hashlib.blake2b(digest_size=16)
    h.update(b"hopwire/1 transport id\0" + a + b + type_.encode() + b"\0")
    return h.hexdigest()


class Key:
    def __init__(self):
        self.priv = Ed25519PrivateKey.generate()
        self.pk = self.priv.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw).hex()
        self.seq = 0

    def sign(self, kind, seq=None, ts=None, **body):
        """A signed entry of kind with body fields, next sequence number
        and the current time unless given."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        e = {"pk": self.pk, "seq": seq,
             "ts": int(time.time()) if ts is None else ts}
        e.update(body)
        e["sig"] = self.priv.sign(encode(kind, e)).hex()
        return e


def verify(kind, e):
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(e["pk"])).verify(
        bytes.fromhex(e["sig"]), encode(kind, e))


def visor_entry(key, **kw):
    body = {"version": "0.1.0", "relays": [], "addrs": ["127.0.0.1:7777"]}
    body.update(kw)
    return key.sign("visor", **body)


def transport_entry(key, a, b, type_="tcp", rtt_us=1000, **kw):
    return key.sign("transport", id=tp_id(a.pk, b.pk, type_), type=type_,
                    edges=[a.pk, b.pk], rtt_us=rtt_us, **kw)


# ---- processes ----

class Discovery:
    def __init__(self, tmp_path, name, store=None, ttl=None, window=None):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.dir = tmp_path / name
        self.dir.mkdir(exist_ok=True)
        self.store = store or f"sqlite:{self.dir / 'discovery.db'}"
        self.args = ["--listen", self.addr, "--store", self.store,
                     "--log-level", "debug"]
        if ttl:
            self.args += ["--ttl", str(ttl)]
        if window:
            self.args += ["--ts-window", str(window)]
        self.log = self.dir / "discovery.log"
        self.proc = None

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [bin_path("hopwire-discovery"), *self.args],
            stdout=self.logf, stderr=self.logf)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"discovery exited: {self.log.read_text()}")
            try:
                return self.req("GET", "/health")[0] == 200
            except OSError:
                return False
        wait_for(up, what="discovery /health")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("discovery did not stop on SIGTERM")
        if self.proc:
            self.logf.close()
        return self.proc.returncode if self.proc else None

    def req(self, method, path, body=None, raw=None):
        """(status, parsed JSON or text, headers)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = raw if raw is not None else (
                json.dumps(body).encode() if body is not None else None)
            headers = {"Content-Type": "application/json"} if data else {}
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            text = r.read().decode()
            ctype = r.getheader("Content-Type", "")
            value = json.loads(text) if ctype == "application/json" else text
            return r.status, value, dict(r.getheaders())
        finally:
            conn.close()

    def put_visor(self, e):
        return self.req("PUT", f"/v1/visors/{e['pk']}", e)

    def metrics(self):
        status, text, headers = self.req("GET", "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return text


@pytest.fixture
def redis_url(tmp_path):
    """A fresh redis-server on a free loopback port; its URL."""
    exe = shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server is missing: install the Debian package "
                    "redis-server")
    port = free_port()
    rdir = tmp_path / "redis"
    rdir.mkdir()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir",
                             str(rdir), "--logfile", str(rdir / "redis.log")])

    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False
    try:
        wait_for(up, what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    """A store spec: a SQLite file, or a fresh redis-server."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'shared.db'}"
    return request.getfixturevalue("redis_url")


@pytest.fixture
def discoveries(tmp_path):
    """Makes discovery processes on demand; stops them at the end and
    checks each one stopped cleanly."""
    made = []

    def make(name="d", **kw):
        d = Discovery(tmp_path, name, **kw)
        made.append(d)
        return d
    yield make
    codes = [d.stop() for d in made]
    assert all(c in (0, None) for c in codes), codes


# ---- tests ----

def test_visor_round_trip(discoveries, store):
    d = discoveries(store=store).start()
    k, relay = Key(), Key()
    e = visor_entry(k, relays=[relay.pk],
                    addrs=["127.0.0.1:7777", "[::1]:7777"])
    status, body, _ = d.put_visor(e)
    assert (status, body) == (200, {"ok": True, "seq": e["seq"]})
    status, got, headers = d.req("GET", f"/v1/visors/{k.pk}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert got == e
    verify("visor", got)  # what discovery hands out can be checked
    # Upper-case hex in the path names the same visor.
    assert d.req("GET", f"/v1/visors/{k.pk.upper()}")[1] == e
    status, body, _ = d.req("GET", "/v1/visors")
    assert status == 200 and body == {"visors": [e]}
    # An update replaces the entry.
    e2 = visor_entry(k, addrs=["10.0.0.1:1"])
    assert d.put_visor(e2)[0] == 200
    assert d.req("GET", f"/v1/visors/{k.pk}")[1] == e2
    status, body, _ = d.req("GET", f"/v1/visors/{Key().pk}")
    assert status == 404 and "error" in body


def test_relay_and_service(discoveries, store):
    d = discoveries(store=store).start()
    r = Key()
    e = r.sign("relay", addr="127.0.0.1:8000", capacity=4096)
    assert d.req("PUT", f"/v1/relays/{r.pk}", e)[:2] == \
        (200, {"ok": True, "seq": e["seq"]})
    assert d.req("GET", f"/v1/relays/{r.pk}")[1] == e
    assert d.req("GET", "/v1/relays")[1] == {"relays": [e]}

    a, b = Key(), Key()
    sa = a.sign("service", type="socks", port=3)
    sb = b.sign("service", type="socks", port=3)
    va = a.sign("service", type="vpn", port=44)
    for k, s in ((a, sa), (b, sb), (a, va)):
        status, body, _ = d.req("PUT", f"/v1/services/{k.pk}/{s['type']}", s)
        assert status == 200, body
    status, body, _ = d.req("GET", "/v1/services?type=socks")
    assert status == 200
    assert sorted(x["pk"] for x in body["services"]) == sorted([a.pk, b.pk])
    assert d.req("GET", "/v1/services?type=vpn")[1] == {"services": [va]}
    assert len(d.req("GET", "/v1/services")[1]["services"]) == 3
    assert d.req("GET", f"/v1/services/{a.pk}/vpn")[1] == va
    # The body's type must be the path's.
    s = a.sign("service", type="socks", port=3)
    status, body, _ = d.req("PUT", f"/v1/services/{a.pk}/vpn", s)
    assert status == 400 and "type" in body["error"]
    # Delete is signed too; the entry goes.
    dl = a.sign("service_del", type="socks")
    assert d.req("DELETE", f"/v1/services/{a.pk}/socks", dl)[0] == 200
    assert d.req("GET", "/v1/services?type=socks")[1] == {"services": [sb]}
    dl = a.sign("service_del", type="socks")
    assert d.req("DELETE", f"/v1/services/{a.pk}/socks", dl)[0] == 404
    assert d.req("GET", "/v1/services?type=SOCKS")[0] == 400


def test_forged_signature_refused(discoveries, store):
    d = discoveries(store=store).start()
    k = Key()
    e = visor_entry(k)
    e["version"] = "9.9.9"  # changed after signing
    assert d.put_visor(e)[:2] == (401, {"error": "bad signature"})
    # Signed by someone else.
    other = Key()
    e = visor_entry(other)
    e["pk"] = k.pk
    assert d.put_visor(e)[:2] == (401, {"error": "bad signature"})
    assert d.req("GET", f"/v1/visors/{k.pk}")[0] == 404
    # A refused write does not use up its sequence number.
    e = visor_entry(k, seq=e["seq"])
    assert d.put_visor(e)[0] == 200


def test_replayed_sequence_refused(discoveries, store):
    d = discoveries(store=store).start()
    k = Key()
    first = visor_entry(k, seq=5)
    assert d.put_visor(first)[0] == 200
    status, body, _ = d.put_visor(visor_entry(k, seq=5, version="2"))
    assert (status, body) == (409, {
        "error": "replayed sequence number 5 (last accepted 5)"})
    assert d.put_visor(visor_entry(k, seq=4))[0] == 409
    assert d.req("GET", f"/v1/visors/{k.pk}")[1] == first
    # One counter per signer across all kinds.
    r = k.sign("relay", seq=3, addr="127.0.0.1:1", capacity=1)
    status, body, _ = d.req("PUT", f"/v1/relays/{k.pk}", r)
    assert status == 409 and "last accepted 5" in body["error"]
    assert d.put_visor(visor_entry(k, seq=2**63 - 1))[0] == 200
    status, body, _ = d.put_visor(visor_entry(k, seq=2**63 - 2))
    assert status == 409
    assert body["error"].endswith(f"(last accepted {2**63 - 1})")


def test_stale_timestamp_refused(discoveries):
    d = discoveries(window=60).start()
    k = Key()
    now = int(time.time())
    for ts in (now - 3600, now + 3600, 0):
        status, body, _ = d.put_visor(visor_entry(k, ts=ts))
        assert status == 400
        assert body["error"].startswith(
            f"stale timestamp: ts {ts} is outside +-60 s of the server "
            "clock ")
    assert d.put_visor(visor_entry(k, ts=now - 30))[0] == 200


def test_strict_json(discoveries):
    d = discoveries().start()
    k = Key()
    e = visor_entry(k)
    e["extra"] = 1
    status, body, _ = d.put_visor(e)
    assert status == 400 and "extra" in body["error"]
    # A field that is wrong names itself.
    e = visor_entry(k)
    e["relays"] = ["zz"]
    status, body, _ = d.put_visor(e)
    assert status == 400 and body["error"].startswith("relays[0]")
    e = visor_entry(k)
    del e["addrs"]
    status, body, _ = d.put_visor(e)
    assert status == 400 and "addrs" in body["error"]
    for raw in (b"{not json", b"", b"[1,2]", b'{"pk":1,"pk":2}',
                b"\xff\xfe", b"null"):
        status, body, _ = d.req("PUT", f"/v1/visors/{k.pk}", raw=raw)
        assert status == 400, raw
        assert isinstance(body, dict) and body["error"], raw
    status, body, _ = d.req("PUT", f"/v1/visors/{k.pk}", raw=b"{not json")
    assert body["error"].startswith("bad JSON: ")
    # The path names the signer.
    status, body, _ = d.req("PUT", f"/v1/visors/{Key().pk}", visor_entry(k))
    assert status == 400 and "path" in body["error"]
    status, body, _ = d.req("PUT", "/v1/visors/xyz", visor_entry(k))
    assert status == 400
    assert d.req("GET", f"/v1/visors/{k.pk}")[0] == 404


def test_oversized_body(discoveries):
    d = discoveries().start()
    k = Key()
    status, body, _ = d.req("PUT", f"/v1/visors/{k.pk}",
                            raw=b" " * (64 * 1024 + 1))
    assert status == 413 and "65536" in body["error"]
    # Announced far too big: answered at once, connection closed.
    with socket.create_connection(("127.0.0.1", d.port), 5) as s:
        s.sendall(f"PUT /v1/visors/{k.pk} HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 100000000\r\n\r\n".encode() + b"{" * 1000)
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    # Exactly 64 KiB is read (and is bad JSON, not too big).
    status, body, _ = d.req("PUT", f"/v1/visors/{k.pk}",
                            raw=b"{" + b" " * (64 * 1024 - 1))
    assert status == 400
    assert d.req("GET", "/health")[0] == 200


def test_unknown_route_and_method(discoveries):
    d = discoveries().start()
    status, body, _ = d.req("GET", "/v2/nothing")
    assert status == 404 and "error" in body
    status, body, _ = d.req("GET", "/v1/visors/a/b")
    assert status == 404 and "error" in body
    status, body, headers = d.req("POST", "/v1/visors", {"x": 1})
    assert status == 405 and "error" in body
    assert headers["Allow"] == "GET, HEAD"
    status, body, headers = d.req("PATCH", f"/v1/visors/{Key().pk}")
    assert status == 405 and headers["Allow"] == "GET, HEAD, PUT"
    assert d.req("GET", "/v1/visors?limit=0")[0] == 400
    assert d.req("GET", "/v1/visors?limit=10001")[0] == 400
    assert d.req("GET", "/v1/visors?limit=10000")[0] == 200
    assert d.req("GET", "/v1/transports?edge=nothex")[0] == 400


def test_transports(discoveries, store):
    d = discoveries(store=store).start()
    a, b, c = Key(), Key(), Key()
    t = transport_entry(a, a, b)
    status, body, _ = d.req("POST", "/v1/transports", t)
    assert (status, body) == (200, {"ok": True, "seq": t["seq"]})
    assert d.req("GET", f"/v1/transports/{t['id']}")[1] == t
    assert d.req("GET", f"/v1/transports?edge={a.pk}")[1] == \
        {"transports": [t]}
    assert d.req("GET", f"/v1/transports?edge={b.pk}")[1] == \
        {"transports": [t]}
    assert d.req("GET", f"/v1/transports?edge={c.pk}")[1] == \
        {"transports": []}
    assert d.req("GET", "/v1/transports")[1] == {"transports": [t]}
    # Registering for others: the signer must be an edge.
    bad = transport_entry(c, a, b)
    status, body, _ = d.req("POST", "/v1/transports", bad)
    assert status == 400 and "pk" in body["error"]
    # The ID is the one both ends derive.
    bad = transport_entry(a, a, b)
    bad["id"] = "00" * 16
    bad["sig"] = a.priv.sign(encode("transport", bad)).hex()
    status, body, _ = d.req("POST", "/v1/transports", bad)
    assert status == 400 and body["error"].startswith("id")

    # Deleted only by an edge.
    dl = c.sign("transport_del", id=t["id"])
    status, body, _ = d.req("DELETE", f"/v1/transports/{t['id']}", dl)
    assert status == 403 and c.pk in body["error"]
    dl = b.sign("transport_del", id=t["id"])
    status, body, _ = d.req("DELETE", f"/v1/transports/{'11' * 16}", dl)
    assert status == 400
    assert d.req("DELETE", f"/v1/transports/{t['id']}", dl)[0] == 200
    assert d.req("GET", f"/v1/transports/{t['id']}")[0] == 404
    assert d.req("GET", f"/v1/transports?edge={a.pk}")[1] == \
        {"transports": []}
    dl = b.sign("transport_del", id=t["id"])
    assert d.req("DELETE", f"/v1/transports/{t['id']}", dl)[0] == 404


def test_routes(discoveries, store):
    d = discoveries(store=store).start()
    a, b, c, x = Key(), Key(), Key(), Key()
    ab = transport_entry(a, a, b, rtt_us=1000)
    bc = transport_entry(c, b, c, rtt_us=2000)
    for t in (ab, bc):
        assert d.req("POST", "/v1/transports", t)[0] == 200
    status, body, _ = d.req("GET", f"/v1/routes?src={a.pk}&dst={c.pk}")
    assert status == 200
    assert body == {"paths": [{"hops": 2, "rtt_us": 3000, "transports": [
        {"id": ab["id"], "type": "tcp", "from": a.pk, "to": b.pk},
        {"id": bc["id"], "type": "tcp", "from": b.pk, "to": c.pk}]}]}
    # Backwards: the same transports walked the other way.
    body = d.req("GET", f"/v1/routes?src={c.pk}&dst={a.pk}&k=2")[1]
    assert [(h["from"], h["to"]) for h in body["paths"][0]["transports"]] \
        == [(c.pk, b.pk), (b.pk, a.pk)]
    # A second, unknown-RTT transport A-C: the direct path comes first.
    ac = transport_entry(a, a, c, type_="relay", rtt_us=0)
    assert d.req("POST", "/v1/transports", ac)[0] == 200
    body = d.req("GET", f"/v1/routes?src={a.pk}&dst={c.pk}&k=3")[1]
    assert [p["hops"] for p in body["paths"]] == [1, 2]
    assert body["paths"][0]["rtt_us"] is None
    body = d.req("GET",
                 f"/v1/routes?src={a.pk}&dst={c.pk}&min_hops=2")[1]
    assert [p["hops"] for p in body["paths"]] == [2]
    body = d.req("GET", f"/v1/routes?src={a.pk}&dst={x.pk}")[1]
    assert body == {"paths": []}
    for q in (f"src={a.pk}&dst={a.pk}", f"src={a.pk}", "src=zz&dst=zz",
              f"src={a.pk}&dst={c.pk}&k=0", f"src={a.pk}&dst={c.pk}&k=17",
              f"src={a.pk}&dst={c.pk}&max_hops=17",
              f"src={a.pk}&dst={c.pk}&min_hops=3&max_hops=2"):
        status, body, _ = d.req("GET", f"/v1/routes?{q}")
        assert status == 400 and body["error"], q


def test_entries_expire(discoveries, store):
    d = discoveries(store=store, ttl=2).start()
    a, b = Key(), Key()
    e = visor_entry(a)
    t = transport_entry(a, a, b)
    assert d.put_visor(e)[0] == 200
    assert d.req("POST", "/v1/transports", t)[0] == 200
    assert d.req("GET", f"/v1/visors/{a.pk}")[0] == 200
    assert 'hw_discovery_entries{kind="visor"} 1' in d.metrics()
    time.sleep(2.3)
    assert d.req("GET", f"/v1/visors/{a.pk}")[0] == 404
    assert d.req("GET", "/v1/visors")[1] == {"visors": []}
    assert d.req("GET", f"/v1/transports?edge={b.pk}")[1] == \
        {"transports": []}
    m = d.metrics()
    assert 'hw_discovery_entries{kind="visor"} 0' in m
    assert 'hw_discovery_entries{kind="transport"} 0' in m
    # The sequence record outlives the entry: a replay stays refused.
    assert d.put_visor(visor_entry(a, seq=e["seq"]))[0] == 409
    assert d.put_visor(visor_entry(a))[0] == 200


def test_restart_keeps_entries(discoveries, tmp_path):
    db = tmp_path / "keep.db"
    d = discoveries("one", store=f"sqlite:{db}").start()
    k = Key()
    e = visor_entry(k)
    assert d.put_visor(e)[0] == 200
    assert d.stop() == 0
    d2 = discoveries("two", store=f"sqlite:{db}").start()
    assert d2.req("GET", f"/v1/visors/{k.pk}")[1] == e
    assert d2.put_visor(visor_entry(k, seq=e["seq"]))[0] == 409
    assert d2.put_visor(visor_entry(k))[0] == 200


def test_replicas_share_redis(discoveries, redis_url):
    d1 = discoveries("r1", store=redis_url).start()
    d2 = discoveries("r2", store=redis_url).start()
    a, b = Key(), Key()
    e = visor_entry(a)
    assert d1.put_visor(e)[0] == 200
    assert d2.req("GET", f"/v1/visors/{a.pk}")[1] == e
    status, body, _ = d2.put_visor(visor_entry(a, seq=e["seq"]))
    assert status == 409 and f"last accepted {e['seq']}" in body["error"]
    t = transport_entry(b, a, b)
    assert d2.req("POST", "/v1/transports", t)[0] == 200
    assert d1.req("GET", f"/v1/transports?edge={a.pk}")[1] == \
        {"transports": [t]}
    dl = a.sign("transport_del", id=t["id"])
    assert d1.req("DELETE", f"/v1/transports/{t['id']}", dl)[0] == 200
    assert d2.req("GET", f"/v1/transports/{t['id']}")[0] == 404
    assert d2.req("GET", "/health")[1]["store"] == "redis"
    # A replica restarted on the same Redis sees everything.
    assert d1.stop() == 0
    d3 = discoveries("r3", store=redis_url).start()
    assert d3.req("GET", f"/v1/visors/{a.pk}")[1] == e


def test_health_and_metrics(discoveries):
    d = discoveries().start()
    status, body, _ = d.req("GET", "/health")
    assert status == 200
    assert body["status"] == "ok" and body["store"] == "sqlite"
    assert isinstance(body["version"], str) and body["uptime_s"] >= 0
    k = Key()
    assert d.put_visor(visor_entry(k))[0] == 200
    for _ in range(3):
        assert d.req("GET", f"/v1/visors/{k.pk}")[0] == 200
    assert d.req("GET", f"/v1/visors/{Key().pk}")[0] == 404
    assert d.req("GET", "/nope")[0] == 404
    m = d.metrics()
    assert 'hw_discovery_requests_total{endpoint="/v1/visors/{pk}",' \
        'status="200"} 4' in m  # the PUT and three GETs
    assert 'hw_discovery_requests_total{endpoint="/v1/visors/{pk}",' \
        'status="404"} 1' in m
    assert 'hw_discovery_requests_total{endpoint="other",status="404"} 1' \
        in m
    assert 'hw_discovery_entries{kind="visor"} 1' in m
    assert 'hw_discovery_entries{kind="transport"} 0' in m
    assert "# TYPE hw_discovery_requests_total counter" in m
    assert "# TYPE hw_discovery_entries gauge" in m


def test_survives_garbage(discoveries):
    d = discoveries().start()
    rng = random.Random(1234)
    k = Key()
    shapes = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600))),
        lambda: b"GET /v1/visors/" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n",
        lambda: b"PUT /v1/visors/" + k.pk.encode() +
        b" HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"pk\":",
        lambda: b"POST /v1/transports HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + b"\x00" * 50,
        lambda: b"GET /health HTTP/1.1\r\nHost: x\r\n" +
        b"X-Long: " + b"y" * 70000 + b"\r\n\r\n",
        lambda: b"GET /%ff%fe/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        lambda: b"PUT /v1/services/" + k.pk.encode() + b"/../../x "
        b"HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        lambda: b"GET /v1/routes?src=" + b"%" * 300 + b" HTTP/1.0\r\n\r\n",
        lambda: b"\r\n" * 100,
        lambda: b"DELETE /v1/transports/" + b"0" * 32 +
        b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n[1]",
    ]
    for i in range(200):
        payload = shapes[i % len(shapes)]()
        try:
            with socket.create_connection(("127.0.0.1", d.port), 2) as s:
                s.settimeout(0.3)
                s.sendall(payload)
                try:
                    s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert d.proc.poll() is None
    assert d.req("GET", "/health")[0] == 200
    assert d.put_visor(visor_entry(k))[0] == 200
    assert d.req("GET", f"/v1/visors/{k.pk}")[0] == 200


def test_command_line(tmp_path):
    exe = bin_path("hopwire-discovery")

    def run(*args):
        return subprocess.run([exe, *args], capture_output=True, text=True,
                              timeout=10)
    r = run("--help")
    assert r.returncode == 0
    for flag in ("--listen", "--store", "--ttl", "--ts-window",
                 "--log-level", "sqlite:PATH", "redis://"):
        assert flag in r.stdout
    r = run("--ttl", "soon")
    assert r.returncode == 2 and "--ttl" in r.stderr and "soon" in r.stderr
    r = run("--listen", "nowhere")
    assert r.returncode == 2 and "--listen" in r.stderr
    r = run("--ts-window", "0")
    assert r.returncode == 2 and "--ts-window" in r.stderr
    r = run("--log-level", "loud")
    assert r.returncode == 2 and "--log-level" in r.stderr
    r = run("--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr
    r = run("--store", "mysql://x", "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "--store" in r.stderr
    r = run("--store", f"sqlite:{tmp_path}/no/such/dir/x.db",
            "--listen", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "--store" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run("--listen", f"127.0.0.1:{port}", "--store", "sqlite::memory:")
    assert r.returncode == 1 and "--listen" in r.stderr
    assert "in use" in r.stderr
