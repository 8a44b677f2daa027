#!/usr/bin/env python3
"""SOCKS5 proxy figures (docs/socks.md), each beside baselines measured in
the same run:
- a 1 GiB download with curl through the proxy (hopwire-socks-client on
  visor A, the exit hopwire-socks on visor B, A and B linked directly: a
  1-hop route), beside the same download straight from the server and
  through `ssh -D` on loopback (OpenSSH, chacha20-poly1305 and
  aes128-gcm); the CPU time each process spent per GiB and how long its
  threads waited for a CPU (from /proc: the machine may be busy with
  other work), and the peak resident memory (VmHWM) of both visors and
  both apps beside ssh's and sshd's;
- CONNECT to the SOCKS reply and to the first byte of the answer, median
  and p99 over 200 connections with the client's route group already up,
  beside the same through `ssh -D` and a plain TCP connect;
- 100 concurrent downloads: total throughput and the slowest one's share
  of a fair share, beside the same direct and through `ssh -D`.
The HTTP server (this file with --serve) answers GET /N with N bytes of a
sparse file through sendfile(2), so it is not the bottleneck.
Run by `make bench` (scripts/bench.sh) with the build's bin directory."""
import getpass
import os
import pathlib
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

from bench_heal import pct
from bench_visor import BIN, Visor, control_plane, free_port, port_open, \
    wait

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent /
                       "tests" / "e2e"))
from netns import terminate  # noqa: E402
from sshd_local import ssh_opts, start_sshd  # noqa: E402

GIB = 1 << 30
CONCURRENT, EACH = 100, 16 << 20
LATENCY_N, LATENCY_WARMUP = 200, 20
ROUNDS = 3  # best of, for the 1 GiB downloads
CONCURRENT_ROUNDS = 2  # best of, for the concurrent downloads
SSH_CIPHERS = ("chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com")


# --- the server side (a process of its own: `bench_socks.py --serve`) ---

def serve_http(conn, path):
    with conn:
        req = b""
        while b"\r\n\r\n" not in req:
            chunk = conn.recv(4096)
            if not chunk or len(req) > 65536:
                return
            req += chunk
        try:
            n = int(req.split(b" ", 2)[1].lstrip(b"/"))
        except (IndexError, ValueError):
            n = -1
        if not 0 <= n <= GIB:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/"
                     b"octet-stream\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % n)
        with open(path, "rb") as f:
            try:
                conn.sendfile(f, 0, n)
            except OSError:
                pass  # the client went away; its figure says so


def accept_loop(ls, handle):
    while True:
        conn, _ = ls.accept()
        handle(conn)


def first_byte(conn):
    # The answer goes out as soon as the connection is accepted.
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        conn.sendall(b"!")
    except OSError:
        pass
    conn.close()


def serve(path, second=first_byte):
    """Prints the HTTP port and a second port, then serves both: HTTP
    from path, and each connection to the second port handed to second
    (by default the first-byte answer)."""
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(512)
        socks.append(s)
    print(socks[0].getsockname()[1], socks[1].getsockname()[1], flush=True)
    threading.Thread(target=accept_loop, daemon=True, args=(
        socks[0], lambda c: threading.Thread(
            target=serve_http, args=(c, path), daemon=True).start())).start()
    accept_loop(socks[1], second)


# --- measurements ---

def proc_stat(pid):
    """(ppid, CPU time in clock ticks) of pid, or None: its utime and
    stime and those of its children it has waited for (a socat that forks
    per connection, an sshd child gone), which no longer show in tree."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), sum(int(x) for x in fields[11:15])


def tree(pid):
    """pid and its descendants (sshd forks per connection)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(d)
            if st:
                kids.setdefault(st[0], []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pid):
    return sum((proc_stat(p) or (0, 0))[1] for p in tree(pid))


def status_kib(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RunWait:
    """Samples every 50 ms how long the threads of each watched process
    (descendants included) were runnable but waiting for a CPU (the
    second field of /proc/PID/task/TID/schedstat). On a machine shared
    with other work this says how much of a figure is waiting for a core
    rather than our own cost. A thread that ends loses its last 50 ms."""

    def __init__(self, watch):
        self.pids = [(n, p) for n, pid in watch for p in tree(pid)]
        self.first, self.last = {}, {}
        self.stopped = threading.Event()
        self.sample(initial=True)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def add(self, name, pid):
        self.pids.append((name, pid))

    def sample(self, initial=False):
        for name, pid in list(self.pids):
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        ns = int(f.read().split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                self.first.setdefault((name, tid), ns if initial else 0)
                self.last[(name, tid)] = ns

    def run(self):
        while not self.stopped.wait(0.05):
            self.sample()

    def stop(self, wall):
        """Ends sampling; returns name -> waiting time in % of wall."""
        self.stopped.set()
        self.thread.join()
        self.sample()
        out = {}
        for (name, tid), ns in self.last.items():
            out[name] = out.get(name, 0) + (ns - self.first[(name, tid)])
        return {n: ns / 1e9 / wall * 100 for n, ns in out.items()}


def curl(args, watch=()):
    """Runs curl with args; returns its stdout, stderr, exit code, for
    curl and each process in watch (name -> pid, descendants included)
    [CPU, waiting for a CPU] in % of one core over the run, and the wall
    time."""
    hz = os.sysconf("SC_CLK_TCK")
    before = {n: cpu_ticks(p) for n, p in watch}
    waits = RunWait(watch)
    c0 = children_cpu()
    t0 = time.perf_counter()
    p = subprocess.Popen(["curl", "-sS", "--no-progress-meter", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    waits.add("curl", p.pid)
    out, err = p.communicate(timeout=300)
    wall = time.perf_counter() - t0
    waited = waits.stop(wall)
    cpu = {n: [(cpu_ticks(pid) - before[n]) / hz / wall * 100,
               waited.get(n, 0)] for n, pid in watch}
    # communicate() reaped curl: its CPU time is in the children's rusage.
    cpu["curl"] = [(children_cpu() - c0) / wall * 100, waited.get("curl", 0)]
    return out, err, p.returncode, cpu, wall


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def download(proxy, url, watch=()):
    """One curl download to /dev/null; (MB/s, [CPU, waiting for a CPU]
    in % of a core per process) or raises with curl's error."""
    args = ["--max-time", "120", "-o", "/dev/null", "-w",
            "%{speed_download}"]
    if proxy:
        args += ["--socks5-hostname", f"127.0.0.1:{proxy}"]
    out, err, rc, cpu, wall = curl([*args, url], watch)
    if rc:
        raise RuntimeError(f"curl exit {rc}: {err.strip()}")
    return float(out) / 1e6, cpu


def parallel(proxy, url, n):
    """n downloads of url at once in one curl (--parallel); returns
    (total MB/s over the wall time, the MB/s of each transfer that
    succeeded, curl's exit code for each that failed, curl's distinct
    error lines)."""
    args = ["-Z", "--parallel-immediate", "--parallel-max", str(n),
            "--max-time", "120", "-w",
            "%{exitcode} %{size_download} %{speed_download}\\n"]
    if proxy:
        args += ["--socks5-hostname", f"127.0.0.1:{proxy}"]
    for _ in range(n):
        args += ["-o", "/dev/null", url]
    out, err, rc, _, wall = curl(args)
    speeds, failed, total = [], [], 0
    for line in out.splitlines():
        code, size, speed = line.split()
        total += int(size)
        if code == "0":
            speeds.append(float(speed) / 1e6)
        else:
            failed.append(int(code))
    failed += [-1] * (n - len(speeds) - len(failed))
    errors = sorted({l for l in err.splitlines() if l.startswith("curl:")})
    return total / wall / 1e6, speeds, failed, errors


def recv_exact(s, n, buf):
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def socks_connect_times(port, dest_port):
    """Through the SOCKS5 listener at port: (TCP connect + greeting,
    CONNECT sent -> reply, CONNECT sent -> first byte of the answer) in
    ms."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\x05\x01\x00")
        if recv_exact(s, 2, b"") != b"\x05\x00":
            raise RuntimeError("greeting refused")
        req = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + dest_port.to_bytes(2,
                                                                    "big")
        t1 = time.perf_counter()
        s.sendall(req)
        buf = recv_exact(s, 5, b"")
        if buf[1] != 0:
            raise RuntimeError(f"SOCKS reply {buf[1]:#04x}")
        # VER REP RSV ATYP then the address: IPv4, a name, or IPv6.
        alen = {1: 4, 3: 1 + buf[4], 4: 16}.get(buf[3])
        if alen is None:
            raise RuntimeError(f"reply with address type {buf[3]}")
        buf = recv_exact(s, 4 + alen + 2, buf)
        t2 = time.perf_counter()
        buf = recv_exact(s, 4 + alen + 2 + 1, buf)
        t3 = time.perf_counter()
        if buf[-1:] != b"!":
            raise RuntimeError("wrong first byte from the server")
    finally:
        s.close()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t1) * 1000


def direct_connect_time(dest_port):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", dest_port), timeout=10)
    try:
        if recv_exact(s, 1, b"") != b"!":
            raise RuntimeError("wrong first byte from the server")
    finally:
        s.close()
    return (time.perf_counter() - t0) * 1000


# --- the setups ---

def start_app(root, v, name, *args):
    env = dict(os.environ, HOPWIRE_APP_SOCKET=v.api("info")["apps_socket"])
    log = open(root / f"{name}.log", "wb")
    return subprocess.Popen([BIN / name, *map(str, args)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def sshd(root, procs):
    """sshd as this user on a loopback port from a temp dir
    (tests/e2e/sshd_local.py); returns (port, user key, pid)."""
    try:
        p, port, key = start_sshd(root / "ssh")
    except RuntimeError as e:
        raise SystemExit(f"bench_socks: {e}")
    procs.append(p)
    return port, key, p.pid


def listening(p, port, what, log):
    """Waits until port listens on loopback, while process p runs."""
    for _ in range(200):
        if port_open(port):
            return
        if p.poll() is not None:
            raise SystemExit(f"bench: {what} exited: "
                             f"{log.read_text().strip()}")
        time.sleep(0.05)
    raise SystemExit(f"bench: {what} did not listen on {port}")


def ssh_tunnel(root, procs, sshd_port, key, cipher, flag, targets):
    """`ssh -N` to the local sshd with cipher and one `flag` forwarding
    (-D: a SOCKS port, targets None; -L: a local port per target port);
    returns the local ports and ssh's pid."""
    ports = [free_port() for _ in targets]
    fwd = []
    for lp, tp in zip(ports, targets):
        fwd += [flag, f"127.0.0.1:{lp}" + (
            f":127.0.0.1:{tp}" if tp else "")]
    log = root / f"ssh{flag}-{cipher.split('@')[0]}.log"
    p = subprocess.Popen(
        ["ssh", "-N", *fwd, "-c", cipher, *ssh_opts(key), "-o",
         "ExitOnForwardFailure=yes", "-p", str(sshd_port),
         f"{getpass.getuser()}@127.0.0.1"], stderr=open(log, "wb"))
    procs.append(p)
    for lp in ports:
        listening(p, lp, f"ssh {flag} with {cipher}", log)
    return ports, p.pid


def ssh_socks(root, procs, sshd_port, key, cipher):
    """`ssh -N -D` to the local sshd with cipher; returns its SOCKS port
    and pid."""
    (port,), pid = ssh_tunnel(root, procs, sshd_port, key, cipher, "-D",
                              [None])
    return port, pid


def log_has(root, name, word):
    try:
        return word in (root / f"{name}.log").read_text(errors="replace")
    except OSError:
        return False


def start_server(root, procs, script):
    """`script --serve BLOB` (a 1 GiB sparse file in root) as a process
    of its own; returns it and the two ports it printed."""
    blob = root / "blob"
    with open(blob, "wb") as f:
        f.truncate(GIB)  # sparse: all zeros, no disk
    srv = subprocess.Popen([sys.executable, script, "--serve", blob],
                           stdout=subprocess.PIPE, text=True)
    procs.append(srv)
    first, second = map(int, srv.stdout.readline().split())
    return srv, first, second


def linked_pair(root, procs, visors):
    """Discovery, a setup node and visors A and B linked directly (a
    1-hop route), appended to procs and visors; returns A and B."""
    url, spk = control_plane(root, procs)
    a, b = (Visor(root, n, discovery=url, listen=True, setup_nodes=[spk])
            for n in "ab")
    visors += [a, b]
    a.api("tp", "add", b.pk, "--addr", b.addr)
    time.sleep(1.0)  # the transport registered in discovery
    return a, b


def start(root, procs, visors):
    """The server, visors A - B, the exit on B, the client on A, sshd and
    one `ssh -D` per cipher; every process is appended to procs or
    visors (for the caller to stop). Returns them as a namespace."""
    srv, http_port, byte_port = start_server(root, procs, __file__)
    a, b = linked_pair(root, procs, visors)
    exit_app = start_app(root, b, "hopwire-socks", "--allow", a.pk,
                         "--allow-loopback")
    procs.append(exit_app)
    cport = free_port()
    client = start_app(root, a, "hopwire-socks-client", "--listen",
                       f"127.0.0.1:{cport}", "--exit", b.pk)
    procs.append(client)
    wait(lambda: port_open(cport) and
         log_has(root, "hopwire-socks", "exit on port 3"),
         "the SOCKS exit and client")
    sport, key, sshd_pid = sshd(root, procs)
    return types.SimpleNamespace(
        srv=srv, http_port=http_port, byte_port=byte_port, a=a, b=b,
        exit_app=exit_app, client=client, cport=cport, sshd_pid=sshd_pid,
        ssh={c: ssh_socks(root, procs, sport, key, c) for c in SSH_CIPHERS})


def stop(root, procs, visors):
    for p in reversed(procs):
        terminate(p)
    for v in visors:
        if v.proc.poll() is None:
            v.stop()
    shutil.rmtree(root, ignore_errors=True)


def main():
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-socks-"))
    procs, visors = [], []
    try:
        st = start(root, procs, visors)
        srv, http_port, byte_port = st.srv, st.http_port, st.byte_port
        a, b, exit_app, client = st.a, st.b, st.exit_app, st.client
        cport, sshd_pid, ssh = st.cport, st.sshd_pid, st.ssh
        chacha = SSH_CIPHERS[0]

        ours = {"visor A": a.proc.pid, "visor B": b.proc.pid,
                "socks-client (A)": client.pid, "socks exit (B)":
                exit_app.pid}
        idle = {n: status_kib(p, "VmRSS") for n, p in ours.items()}
        big = f"http://127.0.0.1:{http_port}/{GIB}"
        download(None, big)  # the sparse file into the page cache

        print("== socks: curl through hopwire-socks-client (visor A) and "
              "hopwire-socks (visor B), A - B linked: a 1-hop route")
        methods = [("direct (curl -> server)", None, {"server": srv.pid}),
                   ("hopwire SOCKS, 1 hop", cport, dict(
                       ours, server=srv.pid))]
        for c in SSH_CIPHERS:
            methods.append((f"ssh -D, {c.split('@')[0]}", ssh[c][0], {
                "server": srv.pid, "ssh": ssh[c][1],
                "sshd": sshd_pid}))
        best, cpu_of = {}, {}
        for _ in range(ROUNDS):  # interleaved, so load elsewhere on the
            for name, port, watch in methods:  # machine hits all alike
                try:
                    mbs, cpu = download(port, big, watch.items())
                except RuntimeError as e:
                    print(f"1 GiB {name}: FAILED: {e}")
                    continue
                if mbs > best.get(name, 0):
                    best[name], cpu_of[name] = mbs, cpu
        peak = {n: status_kib(p, "VmHWM") for n, p in ours.items()}
        ssh_peak = max(status_kib(ssh[c][1], "VmHWM") for c in SSH_CIPHERS)
        sshd_peak = max(status_kib(p, "VmHWM") for p in tree(sshd_pid))

        direct = best.get(methods[0][0], 0)
        proxied = best.get(methods[1][0], 0)
        print(f"1 GiB download, curl -o /dev/null, best of {ROUNDS}; the "
              f"CPU time each process spent per GiB in the best run, and "
              f"how long (in % of that run) its threads were runnable but "
              f"waiting for a CPU:")
        cost, busiest = {}, {}
        for name, _, _ in methods:
            if name in best:
                # CPU seconds per GiB: what the chain costs whatever
                # else the machine runs.
                per = {n: c / 100 * GIB / 1e6 / best[name]
                       for n, (c, _) in cpu_of[name].items()}
                cost[name] = sum(per.values())
                busiest[name] = max(per.items(), key=lambda kv: kv[1])
                print(f"  {name:27s} {best[name]:8.1f} MB/s   CPU "
                      f"{cost[name]:.2f} s per GiB: " + ", ".join(
                          f"{n} {per[n]:.2f} (waited {w:.0f}%)"
                          for n, (_, w) in cpu_of[name].items()))
        sc = best.get(methods[2][0])
        if proxied and sc:
            print(f"  hopwire / ssh -D chacha20-poly1305: {proxied / sc:.2f}"
                  f" (target at least 1.5)")
        if proxied and direct:
            print(f"  hopwire / direct: {proxied / direct:.2f}")
        if proxied and sc:
            hw, ch = methods[1][0], methods[2][0]
            print(f"  CPU per GiB, hopwire / ssh -D chacha20-poly1305: "
                  f"{cost[hw] / cost[ch]:.2f}")
            # What those costs allow: with a core for every process the
            # busiest one sets the pace; with this machine's cores shared
            # by all, the chain's sum does.
            gib_mb = GIB / 1e6
            (hn, hs), (cn, cs) = busiest[hw], busiest[ch]
            cores = os.cpu_count() or 1
            print(f"  bounds from CPU per GiB: a core per process (the "
                  f"busiest sets the pace): hopwire {gib_mb / hs:.0f} MB/s "
                  f"({hn}), ssh chacha20 {gib_mb / cs:.0f} MB/s ({cn}), "
                  f"ratio {cs / hs:.2f}; {cores} cores shared by the "
                  f"whole chain: hopwire {cores * gib_mb / cost[hw]:.0f}, "
                  f"ssh {cores * gib_mb / cost[ch]:.0f} MB/s, ratio "
                  f"{cost[ch] / cost[hw]:.2f}")
        print("peak resident memory (VmHWM) after the 1 GiB downloads: " +
              ", ".join(f"{n} {peak[n] / 1024:.1f} MiB (idle "
                        f"{idle[n] / 1024:.1f})" for n in ours) +
              f"; beside ssh {ssh_peak / 1024:.1f} MiB, sshd (its largest "
              f"process) {sshd_peak / 1024:.1f} MiB")

        # CONNECT -> first byte, the group already up.
        lat = {}
        for name, fn in (("hopwire SOCKS, 1 hop",
                          lambda: socks_connect_times(cport, byte_port)),
                         ("ssh -D, chacha20-poly1305",
                          lambda: socks_connect_times(ssh[chacha][0],
                                                      byte_port))):
            try:
                for _ in range(LATENCY_WARMUP):
                    fn()
                lat[name] = [fn() for _ in range(LATENCY_N)]
            except (OSError, RuntimeError) as e:
                print(f"CONNECT times {name}: FAILED: {e}")
        plain = [direct_connect_time(byte_port) for _ in range(LATENCY_N)]
        print(f"CONNECT sent -> SOCKS reply / -> first byte of the answer, "
              f"{LATENCY_N} connections (after {LATENCY_WARMUP} to warm "
              f"up), ms:")
        for name, xs in lat.items():
            greet = [x[0] for x in xs]
            rep = [x[1] for x in xs]
            fb = [x[2] for x in xs]
            print(f"  {name:27s} reply median {statistics.median(rep):.3f} "
                  f"p99 {pct(rep, 99):.3f}; first byte median "
                  f"{statistics.median(fb):.3f} p99 {pct(fb, 99):.3f}; "
                  f"TCP connect + greeting median "
                  f"{statistics.median(greet):.3f} p99 {pct(greet, 99):.3f}")
        hw = lat.get("hopwire SOCKS, 1 hop")
        if hw:
            fb = [x[2] for x in hw]
            print(f"  hopwire first byte: targets median < 1 ms "
                  f"({statistics.median(fb):.3f}), p99 < 5 ms "
                  f"({pct(fb, 99):.3f})")
        print(f"  plain TCP connect -> first byte, no proxy: median "
              f"{statistics.median(plain):.3f} p99 {pct(plain, 99):.3f}")

        each = f"http://127.0.0.1:{http_port}/{EACH}"
        print(f"{CONCURRENT} concurrent downloads of {EACH >> 20} MiB "
              f"(one curl --parallel), best of {CONCURRENT_ROUNDS}: total, "
              f"and the slowest one's throughput / (total / {CONCURRENT}):")
        runs = {}
        for _ in range(CONCURRENT_ROUNDS):
            for name, port in (("hopwire SOCKS, 1 hop", cport),
                               ("direct (curl -> server)", None),
                               ("ssh -D, chacha20-poly1305",
                                ssh[chacha][0])):
                r = parallel(port, each, CONCURRENT)
                # Fewest failures first, then the highest total.
                if name not in runs or (-len(r[2]), r[0]) > (
                        -len(runs[name][2]), runs[name][0]):
                    runs[name] = r
        for name, (total, speeds, failed, errors) in runs.items():
            line = f"  {name:27s} total {total:8.1f} MB/s"
            if speeds and not failed:
                line += (f", slowest {min(speeds):7.2f} MB/s = "
                         f"{min(speeds) / (total / CONCURRENT):.2f} of a "
                         f"fair share")
            if failed:
                line += (f" (bytes of all, failed ones included; no fair "
                         f"share with failures); {len(failed)} of "
                         f"{CONCURRENT} FAILED (curl "
                         f"exit codes {sorted(set(failed))}"
                         f"{': ' + errors[0] if errors else ''})")
            print(line)
        hw = runs["hopwire SOCKS, 1 hop"]
        sc = runs["ssh -D, chacha20-poly1305"]
        dr = runs["direct (curl -> server)"]
        if sc[0] and dr[0]:
            print(f"  hopwire / ssh -D chacha20-poly1305 total: "
                  f"{hw[0] / sc[0]:.2f}; hopwire / direct: "
                  f"{hw[0] / dr[0]:.2f}"
                  f"{' (with failures: not comparable)' if hw[2] else ''}")
    finally:
        stop(root, procs, visors)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 2 or sys.argv[1:2] in (["-h"], ["--help"]):
        print("usage: bench_socks.py [BIN_DIR]   (default build/bin)\n"
              + __doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    else:
        main()
