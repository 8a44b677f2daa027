#!/usr/bin/env python3
"""VPN figures (issue 17, docs/vpn.md), in network namespaces made for the
run (tests/e2e/netns.py), every tunnel between the same two namespaces
`client` and `server` and measured in the same run:
- plain veth (the underlay itself, no tunnel);
- Yggdrasil (TCP peering over the veth, its TUN, the server's 200::/7
  address), also relayed: client and server each behind a NAT, both
  peering with a third Yggdrasil node in the relay namespace;
- Nebula (a lighthouse on server, a tun in each);
- wireguard-go (the userspace implementation: its device is a TUN,
  checked, not the kernel module);
- the Hopwire VPN (hopwire-vpn-server on visor C, hopwire-vpn-client on
  visor A, set up with `hopwire vpn serve|up`): direct A - C and relayed
  A - R - C behind two NATs, as ratios against Yggdrasil.
For each: one iperf3 TCP stream client -> server's tunnel address for
5 s; ping RTT through the tunnel (100 pings at 10 ms) minus the
underlay's, median and p99; CPU seconds per gigabit of the tunnel's
processes on each side (utime + stime from /proc, descendants included).
Needs root. Run by `make bench-vpn` (and `make bench` as root)."""
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent /
                       "tests" / "e2e"))
import netns  # noqa: E402
import bench_socks  # noqa: E402
from bench_heal import pct  # noqa: E402

BIN = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "build/bin")
SECONDS = 5
PINGS = 100
IPERF = 5202
HZ = os.sysconf("SC_CLK_TCK")
HW_SUBNET_SERVER = "10.44.0.1"


def cpu_ticks(pids):
    """utime + stime of pids and their descendants, in clock ticks."""
    return sum(bench_socks.cpu_ticks(p) for p in pids)


def ping(net, key, addr, n=PINGS):
    """RTTs in ms of n pings at 10 ms from key to addr."""
    r = net.run(key, "ping", "-n", "-c", n, "-i", "0.01", "-W", "1", addr,
                check=False, timeout=60)
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]
    if len(rtts) < n * 0.9:
        raise RuntimeError(f"ping {addr} from {key}: {len(rtts)} of {n} "
                           f"answered: {r.stdout[-300:]} {r.stderr}")
    return rtts


def reachable(net, key, addr):
    return net.run(key, "ping", "-n", "-c", "1", "-W", "1", addr,
                   check=False).returncode == 0


class Figures:
    def __init__(self, name, gbps, gbps_rev, rtt, base_rtt, cpu, note=""):
        self.name, self.gbps, self.note = name, gbps, note
        self.gbps_rev = gbps_rev  # server -> client (iperf3 -R)
        self.rtt_med = statistics.median(rtt) - statistics.median(base_rtt)
        self.rtt_p99 = pct(rtt, 99) - pct(base_rtt, 99)
        self.cpu = cpu      # side -> CPU s per Gbit (None: no process)

    def line(self):
        cpu = ", ".join(f"{side} {v:.2f}" if v is not None else
                        f"{side} - (kernel)" for side, v in self.cpu.items())
        return (f"  {self.name:20s} {self.gbps:6.2f} Gbit/s "
                f"(back {self.gbps_rev:5.2f})   RTT added "
                f"median {self.rtt_med * 1000:6.0f} us p99 "
                f"{self.rtt_p99 * 1000:6.0f} us   CPU s/Gbit: {cpu}"
                f"{self.note}")


def measure(net, name, addr, sides, base_rtt):
    """iperf3 client -> addr (iperf3 -s in server), pings, CPU of the
    processes in sides (side name -> pids; [] for none)."""
    order = ("client", "server", "relay")
    sides = {s: sides[s] for s in sorted(sides, key=order.index)}
    if not reachable(net, "client", addr):
        net.wait(lambda: reachable(net, "client", addr),
                 f"{name}: {addr} answering ping", timeout=30)
    ping(net, "client", addr, 10)  # warm: handshakes, neighbours
    before = {s: cpu_ticks(p) for s, p in sides.items()}
    bits, secs = iperf(net, name, addr)
    after = {s: cpu_ticks(p) for s, p in sides.items()}
    gbit = bits / 1e9
    cpu = {s: ((after[s] - before[s]) / HZ / gbit if sides[s] else None)
           for s in sides}
    rbits, rsecs = iperf(net, name, addr, "-R")
    rtt = ping(net, "client", addr)
    return Figures(name, gbit / secs, rbits / 1e9 / rsecs, rtt, base_rtt,
                   cpu)


def iperf(net, name, addr, *flags):
    """One iperf3 TCP stream from client to addr (-R: back): bits, s."""
    r = net.run("client", "iperf3", "-c", addr, "-p", IPERF, "-t",
                SECONDS, "-J", *flags, check=False, timeout=SECONDS + 60)
    try:
        out = json.loads(r.stdout)
        return (out["end"]["sum_received"]["bytes"] * 8,
                out["end"]["sum_received"]["seconds"])
    except (ValueError, KeyError) as e:
        raise RuntimeError(f"{name}: iperf3 {' '.join(flags)} to {addr} "
                           f"failed ({e!r}): {r.stdout[-400:]} "
                           f"{r.stderr.strip()}")


def iperf_server(net):
    p = net.popen("server", "iperf3 -s", "iperf3", "-s", "-p", IPERF,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    net.wait(lambda: net.listening("server", IPERF), "iperf3 -s",
             procs=(p,))


def logged(net, root, key, name, *cmd, env=None):
    log = open(root / f"{name}.log", "ab")
    return net.popen(key, name, *cmd, stdout=log, stderr=log,
                     env=dict(os.environ, **(env or {})))


# ---- the baselines ----

def yggdrasil(net, root, listen_key, listen_addr, peers):
    """Yggdrasil on listen_key (listening on listen_addr) and on each of
    peers (peering with it). Returns key -> (pid, ygg address)."""
    out = {}
    for key in (listen_key, *peers):
        conf = json.loads(subprocess.run(
            ["yggdrasil", "-genconf", "-json"], capture_output=True,
            text=True, check=True).stdout)
        url = f"tcp://{listen_addr}:12345"
        conf.update({"Listen": [url] if key == listen_key else [],
                     "Peers": [] if key == listen_key else [url],
                     "AdminListen": "none", "MulticastInterfaces": [],
                     "IfName": "ygg0"})
        path = root / f"ygg-{key}.json"
        path.write_text(json.dumps(conf))
        addr = subprocess.run(["yggdrasil", "-useconffile", path,
                               "-address"], capture_output=True, text=True,
                              check=True).stdout.strip()
        p = logged(net, root, key, f"yggdrasil-{key}", "yggdrasil",
                   "-useconffile", path, "-logto", root / f"ygg-{key}.out")
        out[key] = (p.pid, addr)
    for key in out:
        net.wait(lambda k=key: "ygg0" in net.ip(k, "-br", "link").stdout,
                 f"yggdrasil's TUN in {key}")
    return out


def stop(net, pids):
    for name, p in list(net.procs):
        if p.pid in pids and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def nebula(net, root):
    d = root / "nebula"
    d.mkdir()
    subprocess.run(["nebula-cert", "ca", "-name", "hw-bench", "-out-crt",
                    d / "ca.crt", "-out-key", d / "ca.key"], check=True,
                   capture_output=True)
    pids = {}
    for key, ip in (("server", "10.45.0.1"), ("client", "10.45.0.2")):
        subprocess.run(["nebula-cert", "sign", "-name", key, "-ip",
                        f"{ip}/24", "-ca-crt", d / "ca.crt", "-ca-key",
                        d / "ca.key", "-out-crt", d / f"{key}.crt",
                        "-out-key", d / f"{key}.key"], check=True,
                       capture_output=True)
        lh = key == "server"
        anyrule = [{"port": "any", "proto": "any", "host": "any"}]
        conf = {"pki": {"ca": str(d / "ca.crt"),
                        "cert": str(d / f"{key}.crt"),
                        "key": str(d / f"{key}.key")},
                "static_host_map": {"10.45.0.1": [
                    f"{net.addr['server']}:4242"]},
                "lighthouse": {"am_lighthouse": lh, "interval": 60,
                               "hosts": [] if lh else ["10.45.0.1"]},
                "listen": {"host": "0.0.0.0", "port": 4242 if lh else 0},
                "punchy": {"punch": False},
                "tun": {"dev": "neb0"},
                "logging": {"level": "warning"},
                "firewall": {"outbound": anyrule, "inbound": anyrule}}
        # JSON is YAML: nebula reads it as its config.
        (d / f"{key}.yml").write_text(json.dumps(conf))
        p = logged(net, root, key, f"nebula-{key}", "nebula", "-config",
                   d / f"{key}.yml")
        pids[key] = p.pid
    for key in pids:
        net.wait(lambda k=key: "neb0" in net.ip(k, "-br", "link").stdout,
                 f"nebula's tun in {key}")
    return pids


def wireguard_go(net, root):
    """wireguard-go in client and server (10.46.0.2 / 10.46.0.1),
    configured with `wg set` through its UAPI socket."""
    sock = pathlib.Path("/var/run/wireguard")
    keys, pids, devs = {}, {}, {}
    for key in ("server", "client"):
        priv = subprocess.run(["wg", "genkey"], capture_output=True,
                              text=True, check=True).stdout.strip()
        pub = subprocess.run(["wg", "pubkey"], input=priv,
                             capture_output=True, text=True,
                             check=True).stdout.strip()
        (root / f"wg-{key}.key").write_text(priv + "\n")
        keys[key] = pub
        # The UAPI socket's folder is shared by all namespaces: a name of
        # this run's own.
        dev = devs[key] = f"wg{os.getpid()}{key[0]}"
        p = logged(net, root, key, f"wireguard-go-{key}", "wireguard-go",
                   "-f", dev, env={"WG_PROCESS_FOREGROUND": "1"})
        pids[key] = p.pid
        net.wait(lambda d=dev: (sock / f"{d}.sock").exists(),
                 f"wireguard-go's socket for {dev}", procs=(p,))
    for key, ip, peer, pip, ep in (
            ("server", "10.46.0.1", "client", "10.46.0.2", None),
            ("client", "10.46.0.2", "server", "10.46.0.1",
             f"{net.addr['server']}:51820")):
        dev = devs[key]
        net.run(key, "wg", "set", dev, "private-key",
                root / f"wg-{key}.key", "listen-port",
                51820 if key == "server" else 0, "peer", keys[peer],
                "allowed-ips", f"{pip}/32",
                *(["endpoint", ep] if ep else []))
        net.ip(key, "addr", "add", f"{ip}/24", "dev", dev)
        net.ip(key, "link", "set", dev, "up")
        kind = net.ip(key, "-d", "link", "show", dev).stdout
        if "tun type tun" not in kind:
            raise RuntimeError(f"{dev} in {key} is not wireguard-go's "
                               f"TUN: {kind}")
    return pids


# ---- Hopwire ----

def hopwire(net, root):
    """`hopwire vpn serve` on server's visor, `vpn up` on client's, the
    routes limited to the VPN's subnet (the other tunnels carry only
    their own subnet too). Returns side -> pids (visor, apps)."""
    hw = netns.hopwire(net, BIN, root)
    a, c = hw.clients["client"], hw.server
    for v, args in ((c, ("vpn", "serve", "--allow", a.pk)),
                    (a, ("vpn", "up", c.pk, "--routes", "10.44.0.0/24"))):
        r = v.cli(*args)
        if r.returncode:
            raise RuntimeError(f"hopwire {' '.join(args[:2])}: "
                               f"{r.stderr.strip()}")
    try:
        net.wait(lambda: (a.app_status("vpn-client") or {}).get(
            "state") == "connected", "the VPN client connected",
                 timeout=30)
    except RuntimeError:
        raise RuntimeError(
            "the VPN client did not connect: client "
            f"{a.app_status('vpn-client')}, log: "
            f"{a.app_log('vpn-client')[-600:]} server "
            f"{c.app_status('vpn-server')}, log: "
            f"{c.app_log('vpn-server')[-600:]}")
    sides = {"client": [a.proc.pid], "server": [c.proc.pid]}
    if hw.cp.relay:
        sides["relay"] = [hw.cp.relay.pid]
    return sides


def section(kind, root, results):
    """The figures of one topology into results (name -> Figures)."""
    with netns.Net(kind, world=False) as net:
        iperf_server(net)
        if kind == "direct":
            base = ping(net, "client", net.addr["server"])
            print(f"underlay: veth client - server, ping RTT median "
                  f"{statistics.median(base) * 1000:.0f} us p99 "
                  f"{pct(base, 99) * 1000:.0f} us")
            runs = [("plain veth", lambda: (net.addr["server"], {
                "client": [], "server": []}))]

            def ygg():
                y = yggdrasil(net, root, "server", net.addr["server"],
                              ["client"])
                return y["server"][1], {"client": [y["client"][0]],
                                        "server": [y["server"][0]]}
            runs += [("yggdrasil", ygg),
                     ("nebula", lambda: ("10.45.0.1", {
                         s: [p] for s, p in nebula(net, root).items()})),
                     ("wireguard-go", lambda: ("10.46.0.1", {
                         s: [p] for s, p in
                         wireguard_go(net, root).items()}))]
        else:
            # No path between the LANs but through the relay: the
            # underlay RTT is client - relay plus server - relay.
            relay = net.addr["relay"]
            bc, bs = ping(net, "client", relay), ping(net, "server", relay)
            base = [x + y for x, y in zip(sorted(bc), sorted(bs))]
            print(f"underlay: client - NAT - relay - NAT - server, ping "
                  f"RTT (client - relay + server - relay) median "
                  f"{statistics.median(base) * 1000:.0f} us p99 "
                  f"{pct(base, 99) * 1000:.0f} us")

            def ygg():
                y = yggdrasil(net, root, "relay", relay,
                              ["client", "server"])
                return y["server"][1], {"client": [y["client"][0]],
                                        "server": [y["server"][0]],
                                        "relay": [y["relay"][0]]}
            runs = [("yggdrasil relayed", ygg)]
        runs.append((f"hopwire {'direct' if kind == 'direct' else 'relayed'}",
                     None))
        for name, start in runs:
            before = {p.pid for _, p in net.procs}
            try:
                if start is None:
                    if not (BIN / "hopwire-vpn-server").exists() or not \
                            (BIN / "hopwire-vpn-client").exists():
                        print(f"  {name}: hopwire-vpn-server not built: "
                              f"skipping the Hopwire VPN figures")
                        continue
                    addr, sides = HW_SUBNET_SERVER, hopwire(
                        net, root / f"hopwire-{kind}")
                else:
                    addr, sides = start()
                results[name] = measure(net, name, addr, sides, base)
                print(results[name].line(), flush=True)
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                print(f"  {name}: FAILED: {e}")
            finally:
                # Each tunnel alone in the namespaces while measured.
                stop(net, {p.pid for _, p in net.procs} - before)


def main():
    if os.geteuid() != 0:
        print("bench_vpn: needs root (network namespaces, TUN devices, "
              "nftables): run `sudo make bench-vpn`")
        sys.exit(2)
    for tool in ("yggdrasil", "nebula", "nebula-cert", "wireguard-go",
                 "wg", "iperf3", "ping", "curl"):
        if shutil.which(tool) is None:
            print(f"bench_vpn: {tool} is not installed (scripts/deps.sh)")
            sys.exit(2)
    netns.on_sigterm_raise()
    root = pathlib.Path(tempfile.mkdtemp(prefix="hw-bench-vpn-"))
    results = {}
    try:
        print(f"== vpn: one iperf3 TCP stream client -> server's tunnel "
              f"address, {SECONDS} s, and back (-R); RTT added: {PINGS} pings at 10 ms "
              f"through the tunnel minus the underlay's; CPU seconds per "
              f"gigabit of the tunnel's processes on each side")
        section("direct", root, results)
        section("relayed", root, results)
        ygg = results.get("yggdrasil")
        yggr = results.get("yggdrasil relayed")
        for name, base in (("hopwire direct", ygg),
                           ("hopwire relayed", yggr)):
            hw = results.get(name)
            if hw and base:
                print(f"  {name} / {base.name}: throughput "
                      f"{hw.gbps / base.gbps:.2f}, back "
                      f"{hw.gbps_rev / base.gbps_rev:.2f} (target at "
                      f"least 1.5)")
        for name in ("nebula", "wireguard-go"):
            if ygg and name in results:
                print(f"  {name} / yggdrasil: throughput "
                      f"{results[name].gbps / ygg.gbps:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]) or len(sys.argv) > 2:
        print("usage: bench_vpn.py [BIN_DIR]   (default build/bin)\n"
              + __doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    main()
