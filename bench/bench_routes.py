#!/usr/bin/env python3
"""Route figures, each beside a baseline measured in the same run:
- route group dial time over 1, 2 and 3 hops (route finder, setup node
  building the rules on every hop, Noise KK between the ends), median and
  p99 over 100 dials;
- throughput of one route group over 1 and 2 hops, as the visors' own
  throughput test (`hopwire route bench`: the source visor sends, the
  destination visor discards), of 24 such groups at once over 2 hops
  (one intermediate hop under backpressure), and through the stream
  socket with a program at each end (bench_stream), beside two
  baselines: plain
  loopback TCP between two processes, and sealed TCP (the same two
  processes also seal and open every chunk with the Noise cipher state:
  what any end-to-end encrypted connection costs at least);
- app-to-app throughput over 1 hop (bench_appio, an app on
  libhopwire-app) beside plain TCP, and app-to-app round trips over 1 and
  2 hops beside a plain TCP round trip;
- visor memory per idle route group, with 1,000 of them open: what the
  heap holds allocated (exact), and resident memory (which also moves
  with what the allocator kept from earlier tests).
Visors A - B - C - D in a line on loopback, a discovery service and a setup
node. Programs talk to route groups through each visor's stream socket
(the protocol `hopwire route dial|listen` speak, docs/api.md).
Run by `make bench` with the build's bin directory."""
import json
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from bench_visor import BIN, Visor, best_of, control_plane, run


def stream_socket(v):
    if not hasattr(v, "streams"):
        v.streams = v.api("info")["streams_socket"]
    return v.streams


def open_stream(path, req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall((json.dumps(req) + "\n").encode())
    return s, s.makefile("rb")


def expect(f, key):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit(f"stream closed waiting for {key}")
        r = json.loads(line)
        if "error" in r:
            raise SystemExit(f"route: {r['error']}")
        if key in r:
            return r


def dial_pair(src, dst, port):
    """A listening stream at dst and a dialed one from src; returns both
    sockets and the dial time in ms."""
    path = stream_socket(src)
    ls, lf = open_stream(stream_socket(dst), {"op": "listen", "port": port})
    expect(lf, "listening")
    t0 = time.perf_counter()
    ds, df = open_stream(path, {"op": "dial", "pk": dst.pk, "port": port})
    expect(df, "connected")
    ms = (time.perf_counter() - t0) * 1000
    expect(lf, "accepted")
    return (ds, df), (ls, lf), ms


def route_test(src, dst, port, nbytes):
    """The visors' own throughput test (docs/api.md): dst discards what a
    group on port brings, src sends nbytes of zeros into it; MB/s as the
    sender saw it, from ready to the acknowledged close."""
    ls, lf = open_stream(stream_socket(dst), {"op": "listen", "port": port,
                                              "discard": True})
    expect(lf, "listening")
    ds, df = open_stream(stream_socket(src), {"op": "dial", "pk": dst.pk,
                                              "port": port, "send": nbytes})
    expect(df, "connected")
    r = expect(df, "sent")
    got = expect(lf, "received")
    if got["received"] != nbytes:
        raise SystemExit(f"route test: {got['received']} of {nbytes} "
                         "bytes arrived")
    for x in (df, ds, lf, ls):
        x.close()
    return r["mbytes_per_s"]


def parallel_route_test(src, dst, port0, n, nbytes):
    """n groups from src to dst at once, each the visors' own throughput
    test of nbytes: every group's bytes cross the same hops, so the hop
    in between has n senders filling its transports (docs/routing.md,
    "Backpressure"). Total MB/s from the first dial to the last byte
    received, or a SystemExit naming what broke (a group that ended, or
    nothing heard for 60 s)."""
    listeners, dialers = [], []
    try:
        for i in range(n):
            ls, lf = open_stream(stream_socket(dst), {
                "op": "listen", "port": port0 + i, "discard": True})
            ls.settimeout(60)
            expect(lf, "listening")
            listeners.append((ls, lf))
        t0 = time.perf_counter()
        for i in range(n):
            dialers.append(open_stream(stream_socket(src), {
                "op": "dial", "pk": dst.pk, "port": port0 + i,
                "send": nbytes}))
            dialers[-1][0].settimeout(60)
        for ds, df in dialers:
            expect(df, "connected")
        for ds, df in dialers:
            expect(df, "sent")
        for ls, lf in listeners:
            got = expect(lf, "received")
            if got["received"] != nbytes:
                raise SystemExit(f"{got['received']} of {nbytes} bytes "
                                 "arrived")
        return n * nbytes / (time.perf_counter() - t0) / 1e6
    except OSError as e:  # socket.timeout among them
        raise SystemExit(f"stream socket: {e}")
    finally:
        for s, f in dialers + listeners:
            f.close()
            s.close()


def main():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-routes-"))
    procs, visors = [], []
    try:
        url, spk = control_plane(root, procs)
        for n in "abcd":
            visors.append(Visor(root, n, discovery=url, listen=True,
                                setup_nodes=[spk]))
        a, b, c, d = visors
        for x, y in ((a, b), (b, c), (c, d)):
            x.api("tp", "add", y.pk, "--addr", y.addr)
        time.sleep(1.0)  # transports registered in discovery

        print("== routes: visors A - B - C - D on loopback, a setup node")
        port = 1000
        for hops, dst in ((1, b), (2, c), (3, d)):
            times = []
            for _ in range(100):
                port += 1
                (ds, df), (ls, lf), ms = dial_pair(a, dst, port)
                times.append(ms)
                for x in (df, ds, lf, ls):
                    x.close()
            times.sort()
            print(f"route group dial, {hops} hop{'s' if hops > 1 else ''}: "
                  f"median {statistics.median(times):.2f} ms, "
                  f"p99 {times[98]:.2f} ms (route finder + setup + "
                  f"Noise KK; target < 20 ms at 3 hops)")

        plain = best_of(3, lambda: float(run(BIN / "bench_tcp", "stream",
                                             1 << 30, 65536)))
        sealed = best_of(3, lambda: float(run(BIN / "bench_tcp", "sealed",
                                              1 << 30)))
        print(f"sealed TCP (two bare processes seal, send over loopback "
              f"TCP, open): {sealed:7.1f} MB/s = {sealed / plain:.0%} of "
              f"plain TCP {plain:7.1f} MB/s: the ceiling of any "
              f"end-to-end encrypted connection here")
        for hops, dst in ((1, b), (2, c)):
            def visor_test():
                nonlocal port
                port += 1
                return route_test(a, dst, port, 1 << 30)
            mbs = best_of(3, visor_test)
            print(f"route group throughput, {hops} hop"
                  f"{'s' if hops > 1 else ''} (`route bench`): "
                  f"{mbs:7.1f} MB/s = {mbs / plain:.0%} of plain TCP"
                  f"{' (target 40%)' if hops == 1 else ''}, "
                  f"{mbs / sealed:.0%} of sealed TCP")
        groups, each = 24, 32 << 20
        try:
            mbs = parallel_route_test(a, c, port + 1, groups, each)
            rs = b.api("info")["router"]
            print(f"{groups} route groups at once, 2 hops (`route bench`, "
                  f"{each >> 20} MiB each): {mbs:7.1f} MB/s = "
                  f"{mbs / plain:.0%} of plain TCP, {mbs / sealed:.0%} of "
                  f"sealed TCP (the hop paused a transport "
                  f"{rs['pauses']} times, dropped {rs['dropped_full']})")
        except SystemExit as e:
            print(f"{groups} route groups at once, 2 hops: failed: {e}")
        port += groups
        for hops, dst in ((1, b), (2, c)):
            port += 1
            mbs = best_of(3, lambda: float(run(
                BIN / "bench_stream", stream_socket(a), stream_socket(dst),
                dst.pk, port + hops * 100, 512 << 20)))
            print(f"route group through the stream socket (a program at "
                  f"each end), {hops} hop{'s' if hops > 1 else ''}: "
                  f"{mbs:7.1f} MB/s = {mbs / plain:.0%} of plain TCP, "
                  f"{mbs / sealed:.0%} of sealed TCP")

        # Apps (libhopwire-app, loop-fd) on the same routes: bench_appio
        # serves on B and C, clients on A.
        apps_sock = {v: v.api("info")["apps_socket"] for v in (a, b, c)}
        servers = [subprocess.Popen([BIN / "bench_appio", "serve",
                                     apps_sock[v], "50"])
                   for v in (b, c)]
        procs.extend(servers)
        time.sleep(0.5)
        mbs = best_of(3, lambda: float(run(
            BIN / "bench_appio", "send", apps_sock[a], b.pk, 50,
            512 << 20)))
        print(f"app to app throughput, 1 hop: {mbs:7.1f} MB/s = "
              f"{mbs / plain:.0%} of plain TCP (target 35%), "
              f"{mbs / sealed:.0%} of sealed TCP")
        tcp_rtt = float(run(BIN / "bench_tcp", "pingpong", 2000)) * 1000
        print(f"plain TCP round trip (16 bytes): median {tcp_rtt:.1f} us")
        for hops, dst in ((1, b), (2, c)):
            med, p99 = map(float, run(BIN / "bench_appio", "rtt",
                                      apps_sock[a], dst.pk, 50,
                                      2000).split())
            print(f"app to app round trip (1 byte), {hops} hop"
                  f"{'s' if hops > 1 else ''}: median {med:.1f} us, "
                  f"p99 {p99:.1f} us")

        # 200 groups first, so one-time costs (buffers that transports
        # keep for reuse, table growth) are in the baseline.
        held = []

        def open_groups(n):
            nonlocal port
            for _ in range(n):
                port += 1
                held.append(dial_pair(a, b, port))
        def heap(v):
            return v.api("info")["memory"]["heap_in_use"]
        open_groups(200)
        time.sleep(0.5)
        before = a.rss_kib(), b.rss_kib()
        hbefore = heap(a), heap(b)
        open_groups(1000)
        time.sleep(0.5)
        after = a.rss_kib(), b.rss_kib()
        hper = [(y - x) / 1000 for x, y in zip(hbefore, (heap(a), heap(b)))]
        per = [(y - x) * 1024 / 1000 for x, y in zip(before, after)]
        for n, v, i in (("A (dialer)", a, 0), ("B (listener)", b, 1)):
            print(f"1000 idle route groups (after 200), visor {n}: heap "
                  f"{hper[i]:.0f} B per group (target < 2 KiB); resident "
                  f"{before[i] / 1024:.1f} -> {after[i] / 1024:.1f} MiB, "
                  f"{per[i]:.0f} B per group")
        for (ds, df), (ls, lf), _ in held:
            for x in (df, ds, lf, ls):
                x.close()
    finally:
        for v in visors:
            v.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)
        if sys.exc_info()[0] is None:
            subprocess.run(["rm", "-rf", str(root)])
        else:
            print(f"(logs kept in {root})", file=sys.stderr)


if __name__ == "__main__":
    main()
