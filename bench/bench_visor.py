#!/usr/bin/env python3
"""Visor figures, each beside a baseline measured in the same run:
- bulk routing-packet throughput over one TCP transport between two visor
  processes, beside plain loopback TCP between two processes;
- ping RTT over a transport, beside a plain TCP ping-pong;
- resident memory of an idle visor;
- throughput over a relay transport (two visors without listeners, a
  hopwire-relay between them, found through hopwire-discovery), beside a
  direct TCP transport measured in the same run.
Run by `make bench` (scripts/bench.sh) with the build's bin directory."""
import json
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent /
                       "tests" / "e2e"))
from ports import free_port  # noqa: E402,F401  (the benches import it here)

BIN = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/bin")


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True,
                          text=True, check=True, timeout=600, **kw).stdout


class Visor:
    def __init__(self, root, name, discovery=None, listen=False,
                 setup_nodes=()):
        self.dir = root / name
        self.dir.mkdir()
        self.config = self.dir / "hopwire.json"
        self.addr = f"127.0.0.1:{free_port()}"
        run(BIN / "hopwire", "config", "init", "--out", self.config,
            "--tcp-listen", self.addr)
        if discovery:
            cfg = json.loads(self.config.read_text())
            if not listen:
                cfg["transport"]["tcp_listen"] = ""
            cfg["discovery"].update({"url": discovery, "refresh_ms": 500})
            cfg["routing"]["setup_nodes"] = list(setup_nodes)
            self.config.write_text(json.dumps(cfg))
        self.pk = run(BIN / "hopwire", "pk", "--key",
                      self.dir / "visor.key").strip()
        self.socket = self.dir / "local" / "visor.sock"
        self.proc = subprocess.Popen([BIN / "hopwire-visor", "--config",
                                      self.config],
                                     stderr=open(self.dir / "visor.log",
                                                 "wb"))
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


def wait(cond, what):
    for _ in range(400):
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def control_plane(root, procs):
    """Starts discovery (SQLite in memory) and a setup node, appending
    both to procs; returns discovery's URL and the setup node's key."""
    dport, sport = free_port(), free_port()
    url = f"http://127.0.0.1:{dport}"
    procs.append(subprocess.Popen(
        [BIN / "hopwire-discovery", "--listen", f"127.0.0.1:{dport}",
         "--store", "sqlite::memory:"], stderr=subprocess.DEVNULL))
    wait(lambda: port_open(dport), "discovery")
    key = root / "setup.key"
    run(BIN / "hopwire", "keygen", "--out", key)
    spk = run(BIN / "hopwire", "pk", "--key", key).strip()
    procs.append(subprocess.Popen(
        [BIN / "hopwire-setup", "--key", key, "--discovery", url,
         "--tcp-listen", f"127.0.0.1:{sport}", "--dir", root / "setup"],
        stderr=subprocess.DEVNULL))
    wait(lambda: port_open(sport), "setup node")
    return url, spk


def listed(url, pk):
    """Whether discovery lists pk with a relay it can be reached at."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"{url}/v1/visors/{pk}") as r:
            return len(json.loads(r.read())["relays"]) > 0
    except OSError:
        return False


def relay_bench(root, direct_id, a):
    """Relay transport throughput beside the direct transport a uses."""
    dport, rport = free_port(), free_port()
    key = root / "relay.key"
    run(BIN / "hopwire", "keygen", "--out", key)
    procs = [subprocess.Popen([BIN / "hopwire-discovery", "--listen",
                               f"127.0.0.1:{dport}", "--store",
                               "sqlite::memory:"],
                              stderr=subprocess.DEVNULL)]
    url = f"http://127.0.0.1:{dport}"
    wait(lambda: port_open(dport), "discovery")
    procs.append(subprocess.Popen([BIN / "hopwire-relay", "--key", key,
                                   "--listen", f"127.0.0.1:{rport}",
                                   "--discovery", url],
                                  stderr=subprocess.DEVNULL))
    wait(lambda: port_open(rport), "relay")
    c = d = None
    try:
        c = Visor(root, "c", discovery=url)
        d = Visor(root, "d", discovery=url)
        for v in (c, d):
            wait(lambda v=v: any(r["up"] for r in
                                 v.api("info")["network"]["relays"]),
                 "relay sessions")
        wait(lambda: listed(url, d.pk), "d's relay in discovery")
        tp = c.api("tp", "add", d.pk, "--type", "relay")
        print("== visor: a relay transport (visor -> hopwire-relay -> "
              "visor) beside a direct one")
        for size in (16384, 1400):
            n = (1 << 30) if size > 4096 else (1 << 28)
            relay = best_of(3, lambda: c.api(
                "tp", "throughput", tp["id"], "--bytes", n,
                "--packet-size", size)["mbytes_per_s"])
            direct = best_of(3, lambda: a.api(
                "tp", "throughput", direct_id, "--bytes", n,
                "--packet-size", size)["mbytes_per_s"])
            print(f"throughput {size:5d} B packets: relay {relay:7.1f} MB/s"
                  f"   direct TCP transport {direct:7.1f} MB/s   "
                  f"ratio {relay / direct:.0%}")
    finally:
        for v in (c, d):
            if v:
                v.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)


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
        print()
        relay_bench(root, tp["id"], a)
    finally:
        a.stop()
        b.stop()
        subprocess.run(["rm", "-rf", str(root)])


if __name__ == "__main__":
    main()
