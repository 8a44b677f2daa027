#!/usr/bin/env python3
"""Visor figures, each beside a baseline measured in the same run:
- bulk routing-packet throughput over one TCP transport between two visor
  processes, beside plain loopback TCP between two processes;
- ping RTT over a transport, beside a plain TCP ping-pong;
- resident memory of an idle visor.
Run by `make bench` (scripts/bench.sh) with the build's bin directory."""
import json
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/bin")


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True,
                          text=True, check=True, timeout=600, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Visor:
    def __init__(self, root, name):
        self.dir = root / name
        self.dir.mkdir()
        self.config = self.dir / "hopwire.json"
        self.addr = f"127.0.0.1:{free_port()}"
        run(BIN / "hopwire", "config", "init", "--out", self.config,
            "--tcp-listen", self.addr)
        self.pk = run(BIN / "hopwire", "pk", "--key",
                      self.dir / "visor.key").strip()
        self.socket = self.dir / "local" / "visor.sock"
        self.proc = subprocess.Popen([BIN / "hopwire-visor", "--config",
                                      self.config],
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            if subprocess.run([BIN / "hopwire", "--visor", self.socket,
                               "info"], capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise SystemExit(f"visor {name} did not start")

    def api(self, *args):
        return json.loads(run(BIN / "hopwire", "--visor", self.socket, *args,
                              "--json"))

    def rss_kib(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def best_of(n, f):
    return max(f() for _ in range(n))


def main():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-"))
    a, b = Visor(root, "a"), Visor(root, "b")
    try:
        time.sleep(0.5)
        idle = a.rss_kib()
        tp = a.api("tp", "add", b.pk, "--addr", b.addr)
        time.sleep(0.5)
        idle_linked = a.rss_kib()

        print("== visor: one TCP transport between two visor processes")
        total = 1 << 30
        for size in (16384, 1400):
            n = total if size > 4096 else total // 4
            ours = best_of(3, lambda: a.api(
                "tp", "throughput", tp["id"], "--bytes", n,
                "--packet-size", size)["mbytes_per_s"])
            plain = best_of(3, lambda: float(run(
                BIN / "bench_tcp", "stream", n, size)))
            print(f"throughput {size:5d} B packets: {ours:7.1f} MB/s   "
                  f"plain TCP ({size} B writes) {plain:7.1f} MB/s   "
                  f"ratio {ours / plain:.0%}")

        p = a.api("ping", b.pk, "--count", 100, "--interval-ms", 0)
        ours = statistics.median(p["rtt_ms"])
        plain = float(run(BIN / "bench_tcp", "pingpong", 2000))
        print(f"ping RTT median: {ours:.3f} ms   plain TCP ping-pong "
              f"{plain:.3f} ms   ratio {ours / plain:.1f}x")
        print(f"idle visor RSS: {idle / 1024:.1f} MiB "
              f"({idle_linked / 1024:.1f} MiB with one transport up, "
              f"after {total * 5 // 4 >> 20} MiB through it: "
              f"{a.rss_kib() / 1024:.1f} MiB)")
    finally:
        a.stop()
        b.stop()
        subprocess.run(["rm", "-rf", str(root)])


if __name__ == "__main__":
    main()
