"""TCP port forwarding (docs/forward.md): hopwire-forward on a and on c,
two hops apart on a line a - b - c, started by hand with a settings file
each; the sad paths of ../shared/seeds/004_* with the seed's numbering:
P1 the TCP end client (this test), P2 a's app, P3 b, P4 c's app, P5 a
TCP server of this test."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import bin_path, free_port, wait_for
from test_apps import apps_sock
from test_routing import line_of_three, link

BLOB = os.urandom(8 << 20)


class EchoServer:
    """P5: echoes every connection; counts the ones that ended."""

    def __init__(self, banner=b""):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(1024)
        self.port = self.s.getsockname()[1]
        self.banner = banner
        self.ended = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            if self.banner:
                c.sendall(self.banner)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()
        with self.lock:
            self.ended += 1

    def close(self):
        self.s.close()


class Forward:
    """A hopwire-forward started by hand on visor v, with its settings
    file, status file and log in v's folder."""

    def __init__(self, v, name="forward"):
        self.v = v
        self.settings = v.dir / f"{name}.settings.json"
        self.status_path = v.dir / f"{name}.status.json"
        self.log_path = v.dir / f"{name}.log"
        self.revision = 0
        self.p = None

    def set(self, expose=(), maps=()):
        self.revision += 1
        doc = {"revision": self.revision, "expose": list(expose),
               "map": list(maps)}
        tmp = self.settings.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.settings)
        if self.p:
            wait_for(lambda: self.status().get("revision") == self.revision,
                     what=f"settings revision {self.revision} in force")

    def start(self):
        env = dict(os.environ, HOPWIRE_APP_SOCKET=apps_sock(self.v))
        self.p = subprocess.Popen(
            [bin_path("hopwire-forward"), "--settings", str(self.settings),
             "--status", str(self.status_path)], env=env,
            stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT)
        wait_for(lambda: "on port 47" in self.log(), what="forward up")
        wait_for(lambda: self.status().get("revision") == self.revision,
                 what="its status")
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.p and self.p.poll() is None:
            self.p.send_signal(sig)
            self.p.wait(timeout=10)
        self.p = None

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def status(self):
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}


def expose(name, port, *allow):
    return {"name": name, "target": f"127.0.0.1:{port}",
            "allow": list(allow)}


def mapping(port, pk, service):
    return {"listen": f"127.0.0.1:{port}", "pk": pk, "service": service}


def echo_once(port, data=b"ping", timeout=10):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            if not d:
                break
            got += d
        return got


def works(port):
    try:
        return echo_once(port, b"up?", timeout=3) == b"up?"
    except OSError:
        return False


def closed_within(port, seconds):
    """Connects, sends, and says whether the connection was closed with
    no byte echoed within seconds."""
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(b"hello?")
        try:
            d = s.recv(16)
        except ConnectionResetError:
            d = b""
    return d == b"" and time.monotonic() - t < seconds


@pytest.fixture
def line(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    p5 = EchoServer()
    made = []

    def fwd(v):
        f = Forward(v)
        made.append(f)
        return f
    yield a, b, c, p5, fwd
    for f in made:
        f.stop()
    p5.close()


def test_forward_bytes_identifiers_and_refusals(line):
    a, b, c, p5, fwd = line
    p4 = fwd(c)
    p4.set(expose=[expose("echo", p5.port, a.pk),
                   expose("only-b", p5.port, b.pk),
                   expose("dead", free_port(), "any")])
    p4.start()
    p2 = fwd(a)
    ports = [free_port() for _ in range(4)]
    p2.set(maps=[mapping(ports[0], c.pk, "echo"),
                 mapping(ports[1], c.pk, "only-b"),
                 mapping(ports[2], c.pk, "nosuch"),
                 mapping(ports[3], c.pk, "dead")])
    p2.start()
    wait_for(lambda: works(ports[0]), timeout=15, what="the mapping")

    # 8 MiB each way, intact; the four identifiers while it is open.
    with socket.create_connection(("127.0.0.1", ports[0]), timeout=20) as s:
        got = bytearray()

        def reader():
            while len(got) < len(BLOB):
                d = s.recv(1 << 20)
                if not d:
                    break
                got.extend(d)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(BLOB)
        t.join(30)
        assert hashlib.sha256(got).digest() == hashlib.sha256(BLOB).digest()
        me = s.getsockname()[1]
        wait_for(lambda: any(x["client_port"] == me
                             for x in p2.status()["conns"]),
                 what="the connection in a's status")
        cl = [x for x in p2.status()["conns"] if x["client_port"] == me][0]
        assert (cl["side"], cl["client_pk"], cl["server_pk"],
                cl["service"], cl["service_port"]) == \
            ("client", a.pk, c.pk, "echo", p5.port)
        assert cl["bytes_up"] == cl["bytes_down"] == len(BLOB)
        sv = [x for x in p4.status()["conns"] if x["client_port"] == me][0]
        assert (sv["side"], sv["client_pk"], sv["server_pk"]) == \
            ("server", a.pk, c.pk)
    wait_for(lambda: not p2.status()["conns"] and not p4.status()["conns"],
             what="both sides forget the closed connection")

    # Refusals: each closes the local connection at once, logged at both
    # ends with the reason; P5 not listening within a second.
    assert closed_within(ports[1], 5)
    assert closed_within(ports[2], 5)
    assert closed_within(ports[3], 1)
    wait_for(lambda: "only-b: not allowed" in p2.log() and
             "nosuch: no such service" in p2.log() and
             "dead: refused" in p2.log(), what="a's reasons")
    assert f"visor {a.pk[:16]} may not use 'only-b'" in p4.log()
    assert "no service 'nosuch' is exposed" in p4.log()
    # The mapping still works after all that.
    assert echo_once(ports[0]) == b"ping"
    assert p2.alive() and p4.alive()


def test_forward_order_restarts_and_p1_closing(line):
    a, b, c, p5, fwd = line
    port = free_port()
    # P2 before P4 (the seed's swapped order): it works once P4 is up.
    p2 = fwd(a)
    p2.set(maps=[mapping(port, c.pk, "echo")])
    p2.start()
    time.sleep(1)
    assert not works(port)
    p4 = fwd(c)
    p4.set(expose=[expose("echo", p5.port, a.pk)])
    p4.start()
    wait_for(lambda: works(port), timeout=15, what="the mapping after P4")

    # P1 closes while another connection is open: the other goes on, P5
    # sees the close, P2 and P4 stay up.
    keep = socket.create_connection(("127.0.0.1", port), timeout=10)
    keep.sendall(b"one")
    assert keep.recv(3) == b"one"
    ended = p5.ended
    gone = socket.create_connection(("127.0.0.1", port), timeout=10)
    gone.sendall(b"two")
    assert gone.recv(3) == b"two"
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    b"\x01\x00\x00\x00\x00\x00\x00\x00")
    gone.close()  # a reset, as a killed client leaves
    wait_for(lambda: p5.ended == ended + 1, what="P5 sees the close")
    keep.sendall(b"still")
    assert keep.recv(5) == b"still"
    keep.close()
    assert p2.alive() and p4.alive()

    # P4's app restarts: the mapping comes back by itself.
    p4.stop(signal.SIGKILL)
    wait_for(lambda: not works(port), timeout=10, what="P4 gone")
    p4.start()
    wait_for(lambda: works(port), timeout=15, what="the mapping after P4")
    # P2's app restarts: its mapping comes back from its settings.
    p2.stop(signal.SIGKILL)
    p2.start()
    wait_for(lambda: works(port), timeout=15, what="the mapping after P2")
    # P4's whole visor restarts.
    c.stop()
    c.start()
    link(b, c)
    p4.stop(signal.SIGKILL)  # its channel went with the visor
    p4.start()
    wait_for(lambda: works(port), timeout=15,
             what="the mapping after P4's visor")
    # P2's whole visor restarts.
    a.stop()
    a.start()
    link(a, b)
    p2.stop(signal.SIGKILL)
    p2.start()
    wait_for(lambda: works(port), timeout=15,
             what="the mapping after P2's visor")


def test_forward_middle_hop_restart(line):
    a, b, c, p5, fwd = line
    p4, p2 = fwd(c), fwd(a)
    port = serve_echo(p4, p2, p5, c.pk, "any")
    # P3 dies: with no other path, the open connection ends (no hang).
    ends_when(port, lambda: b.stop(signal.SIGKILL))
    b.start()
    link(a, b)
    link(b, c)
    t = time.monotonic()
    wait_for(lambda: works(port), timeout=15, what="a new connection")
    assert time.monotonic() - t < 15
    assert p2.alive() and p4.alive()


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_forward_1000_dropped(line):
    """1000 connections opened and dropped at once, twice: descriptors
    come back to where they were, and the second round leaves memory
    where the first did (the first may keep malloc arenas and thread
    stacks cached; a leak would grow with every round)."""
    a, b, c, p5, fwd = line
    p4, p2 = fwd(c), fwd(a)
    port = serve_echo(p4, p2, p5, c.pk, a.pk)
    procs = {"a's forward": p2.p.pid, "c's forward": p4.p.pid,
             "visor a": a.proc.pid, "visor c": c.proc.pid}
    before = {k: fds(p) for k, p in procs.items()}
    rss = []
    for _ in range(2):
        socks = []
        for i in range(1000):
            try:
                s = socket.create_connection(("127.0.0.1", port),
                                             timeout=5)
            except OSError:
                continue
            if i % 2:
                s.sendall(b"abandoned")
            socks.append(s)
        for s in socks:
            s.close()
        assert len(socks) >= 900
        # Everything settles back: no connection, no descriptor left.
        wait_for(lambda: not p2.status().get("conns") and
                 not p4.status().get("conns"), timeout=30,
                 what="both sides without connections")
        wait_for(lambda: all(fds(p) <= before[k] + 2
                             for k, p in procs.items()), timeout=30,
                 what="descriptors back to where they were")
        time.sleep(1)
        rss.append({k: rss_kib(p) for k, p in procs.items()})
    for k in procs:
        assert rss[1][k] <= rss[0][k] + 2048, (k, rss)
    assert works(port)


def test_forward_relay_restart(tmp_path, control_plane, visors):
    """P3 is a relay: a and c have no TCP listener and link only through
    it. The relay restarts under an open connection: it ends (no hang),
    and new connections succeed within 15 s, no command repeated."""
    from test_relay import registered_at, relay_up, tp_state
    from test_routing import trust
    disc = control_plane.discovery()
    relay = control_plane.relay(disc.url)
    s = control_plane.setup(disc.url)
    a = visors("a", discovery=disc.url, tcp_listen="")
    c = visors("c", discovery=disc.url, tcp_listen="")
    for v in (a, c):
        trust(v, s.pk)
        v.start()
        wait_for(lambda v=v: relay_up(v, relay.pk), what="relay session")
        wait_for(lambda v=v: registered_at(disc.url, v, relay.pk),
                 what="visor entry listing the relay")
    r = a.cli("tp", "add", c.pk, "--type", "relay", "--persistent")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: (tp_state(c, a.pk) or {}).get("state") == "up",
             what="transport up at c")
    p5 = EchoServer()
    p4, p2 = Forward(c), Forward(a)
    try:
        port = serve_echo(p4, p2, p5, c.pk, a.pk)
        ends_when(port, lambda: relay.stop(signal.SIGKILL))
        relay.start()
        t = time.monotonic()
        wait_for(lambda: works(port), timeout=15,
                 what="a new connection after the relay's restart")
        assert time.monotonic() - t < 15
        assert p2.alive() and p4.alive()
    finally:
        p2.stop()
        p4.stop()
        p5.close()


def serve_echo(p4, p2, p5, server_pk, allow):
    """P4 exposes P5 as "echo" to allow, P2 maps a free port to it; both
    started; returns the port once a connection works."""
    port = free_port()
    p4.set(expose=[expose("echo", p5.port, allow)])
    p4.start()
    p2.set(maps=[mapping(port, server_pk, "echo")])
    p2.start()
    wait_for(lambda: works(port), timeout=15, what="the mapping")
    return port


def ends_when(port, cut):
    """Opens a connection through port, checks it echoes, calls cut(),
    and waits (40 s at most) for the connection to end: an end of file
    or a reset, never a hang."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    cut()
    s.settimeout(40)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    s.close()


def frame(t, sid, payload=b""):
    return bytes([t]) + sid.to_bytes(4, "big") + \
        len(payload).to_bytes(2, "big") + payload


def read_frames(pipe, want, timeout=10):
    """Reads mux frames from a `route dial` pipe until want(frames)."""
    buf, frames = b"", []
    deadline = time.time() + timeout
    while time.time() < deadline and not want(frames):
        buf += pipe.read(1, timeout=1)
        while len(buf) >= 7 and len(buf) >= 7 + int.from_bytes(buf[5:7],
                                                               "big"):
            n = 7 + int.from_bytes(buf[5:7], "big")
            frames.append((buf[0], int.from_bytes(buf[1:5], "big"),
                           buf[7:n]))
            buf = buf[n:]
    return frames


def test_forward_hostile_streams(line):
    """A visor speaking the mux by hand (`hopwire route dial c 47`): a
    malformed open request, a service it may not use, then a good one;
    each gets its answer on its own stream and the loop goes on."""
    from test_routing import Pipe
    a, b, c, p5, fwd = line
    p4 = fwd(c)
    p4.set(expose=[expose("echo", p5.port, a.pk),
                   expose("only-b", p5.port, b.pk)])
    p4.start()
    pipe = Pipe(a, "dial", c.pk, "47")
    try:
        pipe.send(frame(0, 0, b"\x01\x00\x04\x00\x00"))  # HELLO, 256 KiB
        for sid, req in ((1, b"\x09\x00\x01\x03abc"),       # version 9
                         (3, b"\x01\x00\x01\x00"),           # empty name
                         (5, b"\x01\x00\x01\x06only-b"),     # not for a
                         (7, b"\x01\x00\x01\x04echo")):      # fine
            pipe.send(frame(1, sid) + frame(2, sid, req))
        data = {}

        def answered(frames):
            for t, sid, p in frames:
                if t == 2:
                    data[sid] = data.get(sid, b"") + p
            return all(len(data.get(s, b"")) >= 5 for s in (1, 3, 5, 7))
        read_frames(pipe, answered)
        status = {s: data[s][1] for s in (1, 3, 5, 7)}
        assert status == {1: 6, 3: 6, 5: 1, 7: 0}, data
        # The good stream carries bytes to P5 and back.
        pipe.send(frame(2, 7, b"hello p5"))
        echoed = {}

        def got_echo(frames):
            for t, sid, p in frames:
                if t == 2 and sid == 7:
                    echoed[7] = echoed.get(7, b"") + p
            return echoed.get(7, b"").endswith(b"hello p5")
        read_frames(pipe, got_echo)
        assert echoed[7].endswith(b"hello p5")
        assert "malformed open request" in p4.log()
        assert f"visor {a.pk[:16]} may not use 'only-b'" in p4.log()
        assert p4.alive()
    finally:
        pipe.stop()
