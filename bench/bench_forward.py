#!/usr/bin/env python3
"""TCP port forwarding figures (docs/forward.md), each beside baselines
measured in the same run:
- bulk throughput: a 1 GiB download with curl through a mapping of
  hopwire-forward (visor A maps a local port to service "bulk" exposed
  by hopwire-forward on visor B, A and B linked directly: a 1-hop route),
  beside the same download straight from the server, through `ssh -L` on
  loopback (OpenSSH, chacha20-poly1305 and aes128-gcm) and through
  `socat` (a plain TCP relay, no encryption); the CPU time each process
  spent per GiB;
- new-connection latency: TCP connect to the first echoed byte, median
  and p99 over 200 connections (after 20 to warm up) through the mapping
  (the route group already up), beside `ssh -L`, socat and a direct
  connection.
The server (this file with --serve) answers HTTP GET /N with N bytes of
a sparse file through sendfile(2), and echoes on a second port.
Run by `make bench` (scripts/bench.sh) with the build's bin directory."""
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench_socks
from bench_heal import pct
from bench_socks import GIB, SSH_CIPHERS, download, linked_pair, \
    listening, recv_exact, ssh_tunnel, sshd, start_server, status_kib, stop
from bench_visor import BIN, free_port, port_open, wait

ROUNDS = 3  # best of, for the 1 GiB downloads
LATENCY_N, LATENCY_WARMUP = 200, 20


# --- the server side (a process of its own: `bench_forward.py --serve`) ---

def echo(conn):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)
            except OSError:
                return


def serve(path):
    """Prints the HTTP port and the echo port, then serves both."""
    bench_socks.serve(path, lambda c: threading.Thread(
        target=echo, args=(c,), daemon=True).start())


# --- the ways to the server ---

def echo_time(port):
    """TCP connect to 127.0.0.1:port, one byte out: ms until it is
    echoed."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"x")
        if recv_exact(s, 1, b"") != b"x":
            raise RuntimeError("wrong byte echoed")
    finally:
        s.close()
    return (time.perf_counter() - t0) * 1000


def round_trips(port, n):
    """On one open connection through port: ms per one-byte echo, n
    times."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            t0 = time.perf_counter()
            s.sendall(b"x")
            if recv_exact(s, 1, b"") != b"x":
                raise RuntimeError("wrong byte echoed")
            out.append((time.perf_counter() - t0) * 1000)
    return out


def socat(root, procs, target):
    """socat relaying a local port to target (forking per connection,
    as one runs it); returns the port and socat's pid."""
    port = free_port()
    log = root / f"socat-{target}.log"
    p = subprocess.Popen(
        ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
         f"TCP:127.0.0.1:{target}"], stderr=open(log, "wb"))
    procs.append(p)
    listening(p, port, "socat", log)
    return port, p.pid


class Forward:
    """hopwire-forward started by hand on visor v with a settings file;
    set() writes the settings and waits until the app runs them."""

    def __init__(self, root, procs, v, name):
        self.settings = root / f"{name}.settings.json"
        self.status = root / f"{name}.status.json"
        self.log = root / f"{name}.log"
        self.revision = 1
        self.write([], [])
        env = dict(os.environ, HOPWIRE_APP_SOCKET=v.api("info")[
            "apps_socket"])
        self.p = subprocess.Popen(
            [BIN / "hopwire-forward", "--settings", self.settings,
             "--status", self.status], env=env,
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        procs.append(self.p)
        self.applied()

    def write(self, expose, maps):
        tmp = self.settings.with_suffix(".tmp")
        tmp.write_text(json.dumps({"revision": self.revision,
                                   "expose": expose, "map": maps}))
        tmp.rename(self.settings)

    def applied(self):
        def now():
            if self.p.poll() is not None:
                raise SystemExit("bench_forward: hopwire-forward exited: "
                                 + self.log.read_text().strip())
            try:
                st = json.loads(self.status.read_text())
            except (OSError, ValueError):
                return False
            return st.get("revision") == self.revision
        wait(now, f"hopwire-forward settings revision {self.revision}")

    def set(self, expose=(), maps=()):
        self.revision += 1
        self.write(list(expose), list(maps))
        self.applied()


def start(root, procs, visors):
    """The server, visors A - B with hopwire-forward on each (B exposes
    "bulk" and "echo", A maps a port to each), sshd, one `ssh -L` per
    cipher and socat. Every process goes into procs or visors, for the
    caller to stop."""
    srv, http_port, echo_port = start_server(root, procs, __file__)
    a, b = linked_pair(root, procs, visors)
    fa = Forward(root, procs, a, "forward-a")
    fb = Forward(root, procs, b, "forward-b")
    fb.set(expose=[{"name": n, "target": f"127.0.0.1:{p}",
                    "allow": [a.pk]}
                   for n, p in (("bulk", http_port), ("echo", echo_port))])
    mp = {"bulk": free_port(), "echo": free_port()}
    fa.set(maps=[{"listen": f"127.0.0.1:{p}", "pk": b.pk, "service": n}
                 for n, p in mp.items()])
    wait(lambda: port_open(mp["bulk"]) and port_open(mp["echo"]),
         "the mapped ports")
    sport, key, sshd_pid = sshd(root, procs)
    ssh = {c: ssh_tunnel(root, procs, sport, key, c, "-L",
                         (http_port, echo_port)) for c in SSH_CIPHERS}
    so = {n: socat(root, procs, p) for n, p in (("bulk", http_port),
                                                ("echo", echo_port))}
    ours = {"visor A": a.proc.pid, "visor B": b.proc.pid,
            "forward (A)": fa.p.pid, "forward (B)": fb.p.pid}
    # name -> (bulk port, echo port, {process: pid} to watch)
    ways = {"direct (no relay)": (http_port, echo_port, {}),
            "hopwire-forward, 1 hop": (mp["bulk"], mp["echo"], ours)}
    for c in SSH_CIPHERS:
        (lb, le), pid = ssh[c]
        ways[f"ssh -L, {c.split('@')[0]}"] = (lb, le, {
            "ssh": pid, "sshd": sshd_pid})
    ways["socat"] = (so["bulk"][0], so["echo"][0], {
        "socat": so["bulk"][1]})
    return srv, ways, ours


def main():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-forward-"))
    procs, visors = [], []
    try:
        srv, ways, ours = start(root, procs, visors)
        idle = {n: status_kib(p, "VmRSS") for n, p in ours.items()}
        download(None, f"http://127.0.0.1:{ways['direct (no relay)'][0]}/"
                 f"{GIB}")  # the sparse file into the page cache

        print("== forward: curl through hopwire-forward on visor A, mapped "
              "to service 'bulk' of hopwire-forward on visor B, A - B "
              "linked: a 1-hop route")
        best, cpu_of = {}, {}
        for _ in range(ROUNDS):  # interleaved, so load elsewhere on the
            for name, (bulk, _, watch) in ways.items():  # machine hits
                w = dict(watch, server=srv.pid)             # all alike
                try:
                    mbs, cpu = download(
                        None, f"http://127.0.0.1:{bulk}/{GIB}", w.items())
                except RuntimeError as e:
                    print(f"1 GiB {name}: FAILED: {e}")
                    continue
                if mbs > best.get(name, 0):
                    best[name], cpu_of[name] = mbs, cpu
        peak = {n: status_kib(p, "VmHWM") for n, p in ours.items()}
        print(f"1 GiB download, curl -o /dev/null, best of {ROUNDS}, and "
              f"the CPU seconds each process spent per GiB in that run:")
        for name in ways:
            if name in best:
                per = {n: c / 100 * GIB / 1e6 / best[name]
                       for n, (c, _) in cpu_of[name].items()}
                print(f"  {name:27s} {best[name]:8.1f} MB/s   CPU "
                      f"{sum(per.values()):.2f} s per GiB: " + ", ".join(
                          f"{n} {s:.2f}" for n, s in per.items()))
        hw = best.get("hopwire-forward, 1 hop")
        for base in ("ssh -L, chacha20-poly1305", "ssh -L, aes128-gcm",
                     "socat", "direct (no relay)"):
            if hw and best.get(base):
                target = (" (target at least 1)" if "chacha" in base
                          else "")
                print(f"  hopwire / {base}: {hw / best[base]:.2f}{target}")
        print("peak resident memory (VmHWM) after the downloads: " +
              ", ".join(f"{n} {peak[n] / 1024:.1f} MiB (idle "
                        f"{idle[n] / 1024:.1f})" for n in ours))

        lat = {}
        for name, (_, port, _) in ways.items():
            try:
                for _ in range(LATENCY_WARMUP):
                    echo_time(port)
                lat[name] = [echo_time(port) for _ in range(LATENCY_N)]
            except (OSError, RuntimeError) as e:
                print(f"new connections {name}: FAILED: {e}")
        print(f"new connection: TCP connect -> first echoed byte, "
              f"{LATENCY_N} connections (after {LATENCY_WARMUP} to warm "
              f"up), ms:")
        for name, xs in lat.items():
            print(f"  {name:27s} median {statistics.median(xs):.3f} "
                  f"p99 {pct(xs, 99):.3f}")
        print(f"one-byte echo on a connection already open, "
              f"{LATENCY_N} times, ms (a new connection above takes two "
              f"of these and the connects):")
        for name, (_, port, _) in ways.items():
            try:
                xs = round_trips(port, LATENCY_N)
            except (OSError, RuntimeError) as e:
                print(f"  {name:27s} FAILED: {e}")
                continue
            print(f"  {name:27s} median {statistics.median(xs):.3f} "
                  f"p99 {pct(xs, 99):.3f}")
        xs = lat.get("hopwire-forward, 1 hop")
        if xs:
            print(f"  hopwire median: target under 1 ms "
                  f"({statistics.median(xs):.3f})")
            sc = lat.get("ssh -L, chacha20-poly1305")
            if sc:
                print(f"  hopwire / ssh -L chacha20-poly1305 median: "
                      f"{statistics.median(xs) / statistics.median(sc):.2f}")
    finally:
        stop(root, procs, visors)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 2 or sys.argv[1:2] in (["-h"], ["--help"]):
        print("usage: bench_forward.py [BIN_DIR]   (default build/bin)\n"
              + __doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    else:
        main()
