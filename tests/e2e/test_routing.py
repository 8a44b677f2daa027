"""Multi-hop routes: visors A - B - C in a line (transports A-B and B-C
only), a setup node that builds route groups, and the CLI's route
listen/dial piping bytes end to end."""
import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import threading
import time

from conftest import bin_path, http_get, wait_for


def trust(v, *setup_pks, tap=False):
    cfg = json.loads(v.config.read_text())
    cfg["routing"] = {"setup_nodes": list(setup_pks)}
    if tap:
        cfg["routing"]["tap_file"] = "tap.bin"
    v.config.write_text(json.dumps(cfg))


def link(a, b):
    r = a.cli("tp", "add", b.pk, "--addr", b.addr)
    assert r.returncode == 0, r.stderr


def registered(url, a, b):
    tps = http_get(f"{url}/v1/transports?edge={a.pk}")["transports"]
    return any(b.pk in t["edges"] for t in tps)


class Pipe:
    """A `hopwire route listen|dial` process with its stdin and stdout."""

    def __init__(self, v, *args):
        self.p = subprocess.Popen(
            [bin_path("hopwire"), "--visor", v.socket, "route", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)

    def wait_stderr(self, word, timeout=20):
        deadline = time.time() + timeout
        seen = b""
        while time.time() < deadline:
            r, _, _ = select.select([self.p.stderr], [], [], 0.2)
            if r:
                line = self.p.stderr.readline()
                seen += line
                if word.encode() in line:
                    return line.decode()
                if not line:
                    break
        raise AssertionError(f"no '{word}' from route: {seen!r}")

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def read(self, n, timeout=10):
        got = b""
        deadline = time.time() + timeout
        while len(got) < n and time.time() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 0.2)
            if r:
                chunk = os.read(self.p.stdout.fileno(), n - len(got))
                if not chunk:
                    break
                got += chunk
        return got

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@contextlib.contextmanager
def piped(dialing, listening, port):
    """`route listen PORT` on listening and `route dial` to it from
    dialing, both past the start of their group; stopped on the way
    out."""
    listener = Pipe(listening, "listen", str(port))
    dialer = None
    try:
        # Dial once the port is bound: before, the setup node would
        # rightly find nothing listening.
        listener.wait_stderr("listening")
        dialer = Pipe(dialing, "dial", listening.pk, str(port))
        dialer.wait_stderr("connected")
        listener.wait_stderr("accepted")
        yield listener, dialer
    finally:
        if dialer:
            dialer.stop()
        listener.stop()


def line_of_three(tmp_path, control_plane, visors):
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c = (visors(n, discovery=disc.url) for n in "abc")
    for v in (a, b, c):
        trust(v, s.pk, tap=v is b)
        v.start()
    link(a, b)
    link(b, c)
    wait_for(lambda: registered(disc.url, a, b) and
             registered(disc.url, b, c), what="transports in discovery")
    return disc, s, a, b, c


def rules(v):
    return v.json("route", "ls")["rules"]


def test_route_group_over_two_hops(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)

    paths = a.json("route", "find", c.pk)["paths"]
    assert paths and paths[0]["hops"] == 2
    assert paths[0]["transports"][0]["to"] == b.pk

    with piped(a, c, 7) as (listener, dialer):
        secret_a = b"a secret from A " * 64
        secret_c = b"the answer from C " * 64
        dialer.send(secret_a)
        assert listener.read(len(secret_a)) == secret_a
        listener.send(secret_c)
        assert dialer.read(len(secret_c)) == secret_c

        out = a.cli("route", "ls").stdout
        assert f"-> {c.pk}:7  initiator, open" in out, out
        # B forwards both directions and knows neither end.
        rb = rules(b)
        assert sorted(r["kind"] for r in rb) == ["intermediary"] * 2
        assert all("src" not in r and "dst" not in r for r in rb)
        assert {r["kind"] for r in rules(a)} == {"forward", "consume"}
        assert {r["kind"] for r in rules(c)} == {"forward", "consume"}
        # Route IDs are random, not a counter.
        ids = sorted(r["id"] for v in (a, b, c) for r in rules(v))
        assert max(y - x for x, y in zip(ids, ids[1:])) > 1000
        # What B's router forwarded is ciphertext only.
        tap = (b.dir / "tap.bin").read_bytes()
        assert len(tap) > len(secret_a) + len(secret_c)
        assert b"a secret from A" not in tap
        assert b"the answer from C" not in tap


def test_route_dial_listen_bulk_both_ways(tmp_path, control_plane, visors):
    """Both ends pipe 24 MiB at once and each receives the other's bytes
    whole and in order. (The pump writes the group only as far as it
    takes bytes, so it keeps reading while the group is full; here the
    visors' buffers were deep enough that the old blocking pump passed
    too.)"""
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    n = 24 << 20
    data = {end: os.urandom(n) for end in ("dialer", "listener")}
    got = {}
    with piped(a, c, 11) as (listener, dialer):
        ends = {"dialer": dialer, "listener": listener}

        def feed(end):
            try:
                ends[end].p.stdin.write(data[end])
                ends[end].p.stdin.flush()
            except BrokenPipeError:
                pass

        def drain(end):
            got[end] = ends[end].read(n, timeout=120)

        threads = [threading.Thread(target=f, args=(e,), daemon=True)
                   for e in ends for f in (feed, drain)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=150)
        for e, other in (("dialer", "listener"), ("listener", "dialer")):
            assert len(got.get(e, b"")) == n, (e, len(got.get(e, b"")))
            assert hashlib.sha256(got[e]).digest() == \
                hashlib.sha256(data[other]).digest(), e
        dialer.p.stdin.close()
        assert dialer.p.wait(timeout=20) == 0
        assert listener.p.wait(timeout=20) == 0


def test_route_bench_over_two_hops(tmp_path, control_plane, visors):
    """The visors' own throughput test: C discards, A sends 8 MiB of
    zeros; both report every byte, and B saw only ciphertext."""
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    listener = Pipe(c, "listen", "9", "--discard")
    try:
        listener.wait_stderr("listening")
        r = a.cli("route", "bench", c.pk, "9", "--bytes", "8M")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"sent {8 << 20} bytes in "), r.stdout
        assert r.stdout.rstrip().endswith("MB/s")
        out, err = listener.p.communicate(timeout=20)
        assert listener.p.returncode == 0, err
        assert out.decode().startswith(f"received {8 << 20} bytes in ")
        tap = (b.dir / "tap.bin").read_bytes()
        assert len(tap) > 8 << 20
        assert b"\0" * 64 not in tap
    finally:
        listener.stop()
    # Bad sizes and options are refused before anything is dialed.
    for args in (["--bytes", "0"], ["--bytes", "12Q"], ["--bytes", "2T"],
                 ["--frob"]):
        r = a.cli("route", "bench", c.pk, "9", *args)
        assert r.returncode == 2 and r.stderr, (args, r.stderr)
    r = a.cli("route", "dial", c.pk, "9", "--bytes", "5")
    assert r.returncode == 2
    # Nothing listens now: the test fails with the reason.
    r = a.cli("route", "bench", c.pk, "9", "--bytes", "1K")
    assert r.returncode == 1 and "nothing listens on port 9" in r.stderr


def test_dead_hop_is_reported_at_both_ends(tmp_path, control_plane, visors):
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    with piped(a, c, 9) as (listener, dialer):
        dialer.send(b"ping")
        assert listener.read(4) == b"ping"
        b.stop(signal.SIGKILL)
        # Both ends' groups die within the rules' keepalive period (a few
        # transport keepalive intervals): the piping processes end.
        wait_for(lambda: dialer.p.poll() is not None, timeout=15,
                 what="the dialing end to notice")
        wait_for(lambda: listener.p.poll() is not None, timeout=15,
                 what="the listening end to notice")
        # A failure, not an end: both say so.
        for end in (dialer, listener):
            assert end.p.returncode == 1
            assert b" failed: " in end.p.stderr.read()


def test_untrusted_setup_node_installs_nothing(tmp_path, control_plane,
                                               visors):
    disc = control_plane.discovery()
    rogue = control_plane.setup(disc.url, "rogue")
    s = control_plane.setup(disc.url)
    # D and C trust the rogue setup node; B, in the middle, does not.
    b, c, d = (visors(n, discovery=disc.url) for n in "bcd")
    trust(b, s.pk)
    trust(c, s.pk, rogue.pk)
    trust(d, rogue.pk)
    for v in (b, c, d):
        v.start()
    link(d, b)
    link(b, c)
    wait_for(lambda: registered(disc.url, d, b) and
             registered(disc.url, b, c), what="D-B-C in discovery")
    listener = Pipe(c, "listen", "11")
    try:
        listener.wait_stderr("listening")
        r = subprocess.run([bin_path("hopwire"), "--visor", d.socket,
                            "route", "dial", c.pk, "11"],
                           capture_output=True, text=True, timeout=40,
                           input="")
        assert r.returncode != 0
        assert "not a trusted setup node" in r.stderr, r.stderr
        wait_for(lambda: "refused reserve" in b.log.read_text(),
                 what="B's log line")
        # Nothing was left behind anywhere.
        for v in (b, c, d):
            assert rules(v) == []
    finally:
        listener.stop()


def test_stream_socket_refuses_garbage(tmp_path, control_plane, visors):
    import socket
    disc = control_plane.discovery()
    a = visors("a", discovery=disc.url).start()
    path = a.json("info")["streams_socket"]
    cases = [b"not json\n", b'{"op": "fly"}\n',
             b'{"op": "dial", "pk": "zz", "port": 1}\n',
             b'{"op": "listen", "port": 70000}\n',
             b'{"op": "listen", "port": 5, "discard": 1}\n',
             b'{"op": "dial", "pk": "' + a.pk.encode() +
             b'", "port": 5, "send": 0}\n',
             b'{"op": "dial", "pk": "' + a.pk.encode() +
             b'", "port": 5, "send": "lots"}\n',
             b'{"op": "dial", "pk": "' + a.pk.encode() + b'", "port": 5}\n',
             b"x" * 5000 + b"\n"]
    for req in cases:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(req)
        reply = json.loads(s.makefile("rb").readline())
        assert "error" in reply, (req[:40], reply)
        s.close()
    # Still serving: a listener works, and the API answers.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"op": "listen", "port": 5}\n')
    assert json.loads(s.makefile("rb").readline())["listening"] == 5
    s.close()
    assert a.cli("info").returncode == 0


def ended(pipe):
    """Waits for a Pipe's process to end (its stdin left as it is) and
    returns its stderr."""
    pipe.p.wait(timeout=20)
    return pipe.p.stderr.read()


def test_route_dial_and_listen_say_how_the_group_ended(tmp_path,
                                                       control_plane, visors):
    """An orderly close (the dialer's stdin ends) leaves both ends with
    exit 0; a group that fails (its transport removed under it) makes both
    exit 1 saying why, and the visor's record of it says the same."""
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, c = visors("a", discovery=disc.url), visors("c", discovery=disc.url)
    for v in (a, c):
        trust(v, s.pk)
        v.start()
    link(a, c)
    wait_for(lambda: registered(disc.url, a, c), what="A-C in discovery")

    with piped(a, c, 7) as (listener, dialer):
        dialer.send(b"last words")
        assert listener.read(10) == b"last words"
        listener.send(b"reply")
        assert dialer.read(5) == b"reply"
        dialer.p.stdin.close()
        err = ended(dialer)
        assert dialer.p.returncode == 0, err
        err = ended(listener)
        assert listener.p.returncode == 0, err
        assert b"failed" not in err
    rec = a.json("route", "ls")["ended"]
    assert rec and rec[0]["error"] is None and rec[0]["role"] == "initiator"
    assert rec[0]["peer"] == f"{c.pk}:7"

    with piped(a, c, 8) as (listener, dialer):
        dialer.send(b"ping")
        assert listener.read(4) == b"ping"
        tp = next(t for t in a.transports() if t["pk"] == c.pk)
        r = a.cli("tp", "rm", tp["id"])
        assert r.returncode == 0, r.stderr
        err = ended(dialer)
        assert dialer.p.returncode == 1, err
        assert f"hopwire: route group to {c.pk}:8 failed: ".encode() in err
        err = ended(listener)
        assert listener.p.returncode == 1, err
        assert b"hopwire: route group from " in err and b"failed: " in err
    rec = a.json("route", "ls")["ended"]
    assert rec[0]["error"] and rec[0]["peer"] == f"{c.pk}:8", rec
    assert rec[1]["error"] is None  # the first group, older
    out = a.cli("route", "ls").stdout
    assert f"to {c.pk}:8, " in out and ": failed: " in out, out

