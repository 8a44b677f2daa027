"""Two visors on loopback, driven through the CLI as an operator would."""
import json
import os
import signal
import socket
import stat
import subprocess

from conftest import bin_path, wait_for


def up_transports(v):
    return [t for t in v.transports() if t["state"] == "up"]


def link(a, b, *extra):
    r = a.cli("tp", "add", b.pk, "--type", "tcp", "--addr", b.addr, *extra)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: up_transports(b), what="transport up on both ends")
    return up_transports(a)[0]


def test_link_ping_same_id(visors):
    a, b = visors("a").start(), visors("b").start()
    tp = link(a, b)
    [tb] = up_transports(b)
    assert tp["id"] == tb["id"] and len(tp["id"]) == 32
    assert tp["pk"] == b.pk and tb["pk"] == a.pk
    assert tp["initiator"] is True and tb["initiator"] is False

    r = a.cli("ping", b.pk, "--count", "3")
    assert r.returncode == 0, r.stderr
    assert "3 sent, 0 lost" in r.stdout and "min/avg/max" in r.stdout
    p = b.json("ping", a.pk, "--count", "2")
    assert p["sent"] == 2 and p["lost"] == 0 and len(p["rtt_ms"]) == 2
    assert 0 < p["min_ms"] <= p["avg_ms"] <= p["max_ms"] < 1000

    # Counters move both ways, and the plain listing shows the transport.
    [tp] = a.transports()
    assert tp["tx_packets"] > 0 and tp["rx_packets"] > 0
    assert tp["rtt_ms"] is not None
    r = a.cli("tp", "ls")
    assert tp["id"] in r.stdout and b.pk in r.stdout
    info = a.json("info")
    assert info["pk"] == a.pk and info["transports_up"] == 1
    assert info["tcp_addr"] == a.addr


def test_throughput_and_data_dropped_without_route(visors):
    a, b = visors("a").start(), visors("b").start()
    tp = link(a, b)
    r = a.json("tp", "throughput", tp["id"], "--bytes", 10_000_000)
    assert r["bytes"] == 10_000_000 and r["mbytes_per_s"] > 0
    # No router yet: data packets for route 0 are dropped and counted.
    assert b.json("info")["stats"]["dropped_packets"] >= 10_000_000 // 16384


def test_tp_rm_closes_both_ends(visors):
    a, b = visors("a").start(), visors("b").start()
    tp = link(a, b)
    r = b.cli("tp", "rm", tp["id"])
    assert r.returncode == 0, r.stderr
    wait_for(lambda: a.transports() == [], what="transport gone at a")
    assert b.transports() == []
    assert "removed by the peer" in a.log.read_text()
    r = a.cli("tp", "rm", tp["id"])
    assert r.returncode == 1 and "no transport" in r.stderr


def test_persistent_transport_comes_back(visors):
    a, b = visors("a").start(), visors("b").start()
    tp = link(a, b, "--persistent")
    assert tp["persistent"] is True
    # Kill b hard, restart it: a re-dials by itself.
    b.stop(signal.SIGKILL)
    wait_for(lambda: not up_transports(a), what="transport down at a")
    b.start()
    wait_for(lambda: up_transports(a) and up_transports(b), timeout=15,
             what="persistent transport back")
    assert up_transports(a)[0]["id"] == tp["id"]
    assert a.cli("ping", b.pk, "--count", "1").returncode == 0

    # Restart a: the persistent entry survives in its state file, and the
    # counters carry on from where they were.
    before = a.transports()[0]["tx_packets"]
    assert a.stop() == 0
    a.start()
    wait_for(lambda: up_transports(a), timeout=15, what="redial after restart")
    assert a.transports()[0]["tx_packets"] >= before


def test_hostile_connections_do_not_disturb(visors):
    a, b = visors("a", max_pending_handshakes=8).start(), visors("b").start()
    tp = link(b, a)
    host, port = "127.0.0.1", a.port

    def conn():
        return socket.create_connection((host, port), timeout=5)

    # Garbage: a length prefix shorter than any handshake message.
    s = conn()
    s.sendall(b"\x00\x05hello")
    assert s.recv(100) == b""
    # An oversized record header.
    s = conn()
    s.sendall(b"\xff\xff" + os.urandom(100))
    assert s.recv(100) == b""
    # A well-formed first message that is not a handshake for a's key.
    s = conn()
    s.sendall(b"\x00\x30" + os.urandom(48))
    assert s.recv(100) == b""
    # Random bytes of every kind.
    for _ in range(20):
        s = conn()
        s.sendall(os.urandom(300))
        s.close()
    wait_for(lambda: a.json("info")["stats"]["pending_handshakes"] == 0,
             what="garbage connections dropped")
    # Half a handshake that never finishes: dropped at the timeout.
    half = conn()
    half.sendall(b"\x00\x30")
    wait_for(lambda: a.json("info")["stats"]["pending_handshakes"] == 1,
             what="the half handshake pending")
    # More unfinished handshakes than allowed: the excess is refused.
    idle = [conn() for _ in range(12)]
    wait_for(lambda: a.json("info")["stats"]["inbound_refused"] > 0,
             what="refusals over the handshake limit")

    # The established transport never noticed.
    assert a.cli("ping", b.pk, "--count", "2").returncode == 0
    [t] = up_transports(a)
    assert t["id"] == tp["id"]
    log = a.log.read_text()
    assert "handshake failed" in log
    # Each bad connection is logged once.
    assert log.count("handshake failed") <= 30

    # The unfinished ones time out (2 s here) and are logged.
    wait_for(lambda: a.json("info")["stats"]["pending_handshakes"] == 0,
             timeout=10, what="handshake timeouts")
    assert "timed out" in a.log.read_text()
    for s in idle + [half]:
        s.close()
    assert a.cli("ping", b.pk, "--count", "1").returncode == 0


def test_wrong_key_is_refused(visors, tmp_path):
    a, b = visors("a").start(), visors("b").start()
    other = subprocess.run([bin_path("hopwire"), "keygen", "--out",
                            str(tmp_path / "other.key")], capture_output=True,
                           text=True, check=True).stdout.strip()
    # b's address, someone else's key: the handshake cannot succeed.
    r = a.cli("tp", "add", other, "--addr", b.addr)
    assert r.returncode == 1
    assert "dial" in r.stderr
    assert a.transports() == [] and b.transports() == []
    wait_for(lambda: "handshake failed" in b.log.read_text(),
             what="b logs the refused handshake")


def test_clean_stop_leaves_nothing(visors):
    a = visors("a").start()
    assert stat.S_IMODE(os.stat(a.socket).st_mode) == 0o600
    assert a.stop() == 0
    assert not os.path.exists(a.socket)
    assert "stopped" in a.log.read_text()
    # Not running: a clear message, exit code 1.
    r = a.cli("info")
    assert r.returncode == 1
    assert r.stderr.strip() == \
        f"hopwire: cannot reach visor at {a.socket}: is it running?"


def test_bad_config_names_the_field(visors):
    a = visors("a")
    cfg = json.loads(a.config.read_text())
    cfg["transport"]["tcp_listen"] = "127.0.0.1:99999"
    a.config.write_text(json.dumps(cfg))
    r = subprocess.run([bin_path("hopwire-visor"), "--config", str(a.config)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "transport.tcp_listen: '127.0.0.1:99999' is not HOST:PORT" in r.stderr

    cfg["transport"]["tcp_listen"] = "127.0.0.1:0"
    cfg["transport"]["keepalive_ms"] = 5
    a.config.write_text(json.dumps(cfg))
    r = subprocess.run([bin_path("hopwire-visor"), "--config", str(a.config)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "transport.keepalive_ms: unknown setting" in r.stderr

    a.config.write_text("{ not json")
    r = subprocess.run([bin_path("hopwire-visor"), "--config", str(a.config)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "line 1" in r.stderr


def test_cli_usage_errors(visors):
    a = visors("a").start()
    r = a.cli("tp", "add", "zz", "--addr", "127.0.0.1:1")
    assert r.returncode == 1 and "pk: 'zz'" in r.stderr
    r = a.cli("tp", "add", a.pk, "--addr", "127.0.0.1:1")
    assert r.returncode == 1 and "own key" in r.stderr
    r = a.cli("tp", "add", "a" * 64, "--addr", "nope")
    assert r.returncode == 1
    r = a.cli("ping", "b" * 64)
    assert r.returncode == 1
    r = a.cli("tp")
    assert r.returncode == 2 and "usage" in r.stderr
    r = a.cli("tp", "--help")
    assert r.returncode == 0 and "--persistent" in r.stdout


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def test_replayed_first_message(visors):
    import threading
    a, b = visors("a").start(), visors("b").start()
    # a dials b through a relay that records a's first handshake message.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    captured = {}

    def pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def relay():
        c, _ = lsock.accept()
        u = socket.create_connection(("127.0.0.1", b.port))
        captured["msg1"] = recv_exact(c, 2 + 49)
        u.sendall(captured["msg1"])
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
        pump(c, u)

    threading.Thread(target=relay, daemon=True).start()
    r = a.cli("tp", "add", b.pk, "--addr",
              f"127.0.0.1:{lsock.getsockname()[1]}")
    assert r.returncode == 0, r.stderr
    assert captured["msg1"][:2] == b"\x00\x31"

    # The replay gets a message 2 that only the real a could answer;
    # whatever the replayer sends next ends the connection.
    s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
    s.sendall(captured["msg1"])
    assert len(recv_exact(s, 2 + 49)) == 51
    s.sendall(b"\x00\x61" + os.urandom(97))
    assert s.recv(100) == b""
    wait_for(lambda: "authentication failed" in b.log.read_text(),
             what="b logs the failed replay")
    # The real transport is untouched.
    assert a.cli("ping", b.pk, "--count", "2").returncode == 0
    assert len(up_transports(b)) == 1


def test_memory_stays_flat_under_garbage(visors):
    a, b = visors("a").start(), visors("b").start()
    link(a, b)

    def rss():
        for line in open(f"/proc/{a.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def bad_connections(n):
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            s.sendall(os.urandom(2 + (i % 200)))
            s.close()

    bad_connections(200)  # warm up allocator pools
    wait_for(lambda: a.json("info")["stats"]["pending_handshakes"] == 0,
             what="bad connections dropped")
    before = rss()
    bad_connections(1000)
    wait_for(lambda: a.json("info")["stats"]["pending_handshakes"] == 0,
             what="bad connections dropped")
    assert rss() - before < 1024, f"RSS grew {rss() - before} KiB"
    assert a.cli("ping", b.pk, "--count", "1").returncode == 0


def test_failed_start_keeps_persistent_transports(visors):
    a, b = visors("a").start(), visors("b").start()
    link(a, b, "--persistent")
    assert a.stop() == 0
    # Someone else holds a's port: a refuses to start, naming the problem,
    # and must not touch its stored transports on the way out.
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", a.port))
    blocker.listen(1)
    r = subprocess.run([bin_path("hopwire-visor"), "--config", str(a.config)],
                       capture_output=True, text=True, timeout=10)
    blocker.close()
    assert r.returncode == 1
    assert "address already in use" in r.stderr
    a.start()
    wait_for(lambda: up_transports(a), timeout=15,
             what="the persistent transport after the failed start")
    assert a.transports()[0]["persistent"] is True
