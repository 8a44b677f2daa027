#!/usr/bin/env python3
"""Failure figures: how fast a route failure travels and a route group
heals, what healing keeps in memory, and a 64-visor testnet.

- Kill to both ends informed: visors S - p - X - q - D, a route group S
  -> D through X, and X killed with SIGKILL 20 times (restarted and
  linked again between kills). Neither end loses a transport of its own:
  each learns from the route-failure packet of the hop next to it (p or
  q), timed from the kill to the line each end logs. Median and p99,
  beside the rules' keepalive period, which is how long an end would wait
  without them.
- Kill to data flowing again: with a shortcut p - q, the group heals over
  it; from the kill to the source's "healed" line (when the new route
  carries bytes again), and the throughput dip of a full-speed transfer
  (the visors' own throughput test) around the kill, sampled every 50 ms
  at the receiver, beside the rate before the kill.
- The unacknowledged-bytes buffer of a group at full speed (sampled at
  the sender), beside its bound.
- A 64-visor testnet: time to `up`, route setup across the longest route
  (16 hops, the route finder's limit), and resident memory per visor.
Run by `make bench` with the build's bin directory."""
import datetime
import http.client
import json
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from bench_visor import BIN, Visor, control_plane, wait
from bench_routes import expect, open_stream, stream_socket


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("visor")
        self.path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def groups(v):
    c = UnixHTTP(v.socket)
    c.request("GET", "/v1/groups")
    body = c.getresponse().read()
    c.close()
    return json.loads(body)


def log_time(v, word, after):
    """The first time (unix seconds) at or after `after` that v's log has
    a line with word, or None."""
    for line in (v.dir / "visor.log").read_text(errors="replace").splitlines():
        if word not in line:
            continue
        stamp = line.split(" ", 1)[0].rstrip("Z")
        try:
            t = datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
        if t >= after - 0.002:
            return t
    return None


def restart(v):
    v.proc = subprocess.Popen([BIN / "hopwire-visor", "--config", v.config],
                              stderr=open(v.dir / "visor.log", "ab"))
    for _ in range(200):
        if subprocess.run([BIN / "hopwire", "--visor", v.socket, "info"],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit("visor did not restart")


def link(x, y):
    x.api("tp", "add", y.pk, "--addr", y.addr)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def failure_figures(root, url, spk):
    s, p, x, q, d = (Visor(root, n, discovery=url, listen=True,
                           setup_nodes=[spk]) for n in ("s", "p", "x", "q",
                                                        "d"))
    vs = (s, p, x, q, d)
    try:
        for a, b in ((s, p), (p, x), (x, q), (q, d)):
            link(a, b)
        time.sleep(1.0)
        # Rules live 4 transport keepalive intervals (default 5 s).
        ka = 4 * json.loads(s.config.read_text())["transport"].get(
            "keepalive_interval_ms", 5000)
        informed, port = [], 2000
        for i in range(20):
            port += 1
            (ds, df), (ls, lf) = dial_via(s, d, port, [p, x, q])
            killed = time.time()
            x.proc.send_signal(signal.SIGKILL)
            x.proc.wait()
            wait(lambda: log_time(s, "a hop reports", killed) and
                 log_time(d, "a hop reports", killed), "both ends informed")
            informed.append(max(log_time(s, "a hop reports", killed),
                                log_time(d, "a hop reports", killed)) -
                            killed)
            for f in (df, ds, lf, ls):
                f.close()
            restart(x)
            link(p, x)
            link(x, q)
            time.sleep(0.6)  # registered in discovery again
        ms = [t * 1000 for t in informed]
        print(f"kill to both ends informed (route-failure packets, a hop "
              f"between each end and the kill), 20 kills: median "
              f"{statistics.median(ms):.0f} ms, p99 {pct(ms, 99):.0f} ms "
              f"(targets 200 ms and 1 s); without them an end waits for "
              f"the rules' keepalive period, {ka} ms here")

        # Heal over a shortcut, at full speed.
        link(p, q)
        time.sleep(0.8)
        flowing, dips, unacked = [], [], []
        for i in range(3):
            port += 1
            ls, lf = open_stream(stream_socket(d), {
                "op": "listen", "port": port, "discard": True})
            expect(lf, "listening")
            ds, df = open_stream(stream_socket(s), {
                "op": "dial", "pk": d.pk, "port": port, "send": 4 << 30,
                "via": [p.pk, x.pk, q.pk]})
            expect(df, "connected")
            samples, stop = [], threading.Event()

            def sample():
                while not stop.is_set():
                    gd, gs = groups(d), groups(s)
                    now = time.time()
                    if gd:
                        samples.append((now, gd[0]["bytes_in"]))
                    if gs:
                        unacked.append(gs[0]["unacked"])
                    time.sleep(0.05)
            t = threading.Thread(target=sample, daemon=True)
            t.start()
            time.sleep(1.5)
            killed = time.time()
            x.proc.send_signal(signal.SIGKILL)
            x.proc.wait()
            time.sleep(1.5)
            stop.set()
            t.join()
            healed = log_time(s, "healed after", killed)
            if healed is None:
                raise SystemExit("the group did not heal")
            flowing.append((healed - killed) * 1000)
            before = [(t1, b1) for t1, b1 in samples if t1 < killed]
            rate = ((before[-1][1] - before[0][1]) /
                    (before[-1][0] - before[0][0])) if len(before) > 2 else 0
            bins = [(b1 - b0) / (t1 - t0) for (t0, b0), (t1, b1) in
                    zip(samples, samples[1:]) if t0 >= killed - 0.05 and
                    t1 > t0]
            dips.append((min(bins) if bins else 0, rate))
            for f in (df, ds, lf, ls):
                f.close()
            restart(x)
            link(p, x)
            link(x, q)
            time.sleep(0.6)
        print(f"kill to data flowing again over the new route (source's "
              f"'healed' line, shortcut p - q), 3 kills at full speed: "
              f"{', '.join(f'{v:.0f}' for v in flowing)} ms")
        for low, rate in dips:
            print(f"  throughput around the kill: lowest 50 ms window "
                  f"{low / 1e6:.1f} MB/s beside {rate / 1e6:.1f} MB/s "
                  f"before ({low / rate if rate else 0:.0%})")
        print(f"unacknowledged-bytes buffer per group at full speed: "
              f"median {statistics.median(unacked) / 1024:.0f} KiB, max "
              f"{max(unacked) / 1024:.0f} KiB (bound 832 KiB: the 768 KiB "
              f"credit window and one 64 KiB chunk), {len(unacked)} "
              f"samples")
    finally:
        for v in vs:
            if v.proc.poll() is None:
                v.stop()


def dial_via(src, dst, port, via):
    ls, lf = open_stream(stream_socket(dst), {"op": "listen", "port": port})
    expect(lf, "listening")
    ds, df = open_stream(stream_socket(src), {
        "op": "dial", "pk": dst.pk, "port": port,
        "via": [v.pk for v in via]})
    expect(df, "connected")
    expect(lf, "accepted")
    return (ds, df), (ls, lf)


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def testnet_figures(root):
    tn = root / "testnet"
    hw = BIN / "hopwire"
    t0 = time.perf_counter()
    r = subprocess.run([hw, "testnet", "up", "--dir", tn, "--visors", "64",
                        "--json"], capture_output=True, text=True)
    up_s = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"testnet up: {r.stderr}")
    try:
        state = json.loads((tn / "testnet.json").read_text())
        procs = state["processes"]
        visors = {p["name"]: p for p in procs if p.get("role") == "visor"}
        v1, v17 = visors["v1"], visors["v17"]
        times = []
        for i in range(5):
            ls, lf = open_stream(info_streams(v17), {"op": "listen",
                                                     "port": 3000 + i})
            expect(lf, "listening")
            t = time.perf_counter()
            ds, df = open_stream(info_streams(v1), {
                "op": "dial", "pk": v17["pk"], "port": 3000 + i})
            expect(df, "connected")
            times.append((time.perf_counter() - t) * 1000)
            for f in (df, ds, lf, ls):
                f.close()
        rss = [rss_kib(p["pid"]) for p in visors.values()]
        print(f"64-visor testnet: up in {up_s:.1f} s; route group setup "
              f"across 16 hops (v1 -> v17): median "
              f"{statistics.median(times):.1f} ms over 5 dials; visor "
              f"resident memory median {statistics.median(rss) / 1024:.1f}"
              f" MiB, max {max(rss) / 1024:.1f} MiB")
    finally:
        subprocess.run([hw, "testnet", "down", "--dir", tn],
                       capture_output=True)


def info_streams(node):
    c = UnixHTTP(node["control_socket"])
    c.request("GET", "/v1/info")
    info = json.loads(c.getresponse().read())
    c.close()
    return info["streams_socket"]


def main():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-heal-"))
    procs = []
    try:
        url, spk = control_plane(root, procs)
        print("== failures: route-failure packets and healing route groups")
        failure_figures(root, url, spk)
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
            pr.wait(timeout=10)
        procs = []
        testnet_figures(root)
    finally:
        for pr in procs:
            pr.send_signal(signal.SIGTERM)
            pr.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
