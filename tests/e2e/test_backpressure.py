"""Many bulk route groups through one intermediate hop: a - b - c, with
GROUPS groups opened in parallel, each carrying EACH bytes in both
directions at once. b's transports fill up; b must hold back what feeds
them (backpressure, docs/routing.md) instead of dropping packets, since
one lost packet ends a route group ("data packet failed to decrypt").
Every byte must arrive once, in order (sha256), and every group end
cleanly."""
import time

from conftest import wait_for
from test_heal import Drain, Feeder
from test_routing import Pipe, line_of_three

GROUPS = 24
EACH = 3 << 20
PORT0 = 200


def test_parallel_bulk_groups_through_one_hop(control_plane, visors):
    disc, s, a, b, c = line_of_three(None, control_plane, visors)
    listeners, dialers = [], []
    try:
        for i in range(GROUPS):
            listeners.append(Pipe(c, "listen", str(PORT0 + i)))
        for ln in listeners:
            ln.wait_stderr("listening")
        for i in range(GROUPS):
            dialers.append(Pipe(a, "dial", c.pk, str(PORT0 + i)))
        for d, ln in zip(dialers, listeners):
            d.wait_stderr("connected")
            ln.wait_stderr("accepted")

        # a -> c on every group and c -> a on every group, all at once.
        flows = []
        for d, ln in zip(dialers, listeners):
            flows.append((Feeder(d, EACH), Drain(ln, EACH)))
            flows.append((Feeder(ln, EACH), Drain(d, EACH)))
        start = time.monotonic()
        for f, dr in flows:
            dr.start()
        for f, dr in flows:
            f.start()
        deadline = start + 120
        for f, dr in flows:
            dr.join(timeout=max(0.1, deadline - time.monotonic()))
        took = time.monotonic() - start
        short = [(i, dr.got) for i, (f, dr) in enumerate(flows)
                 if dr.got != EACH]
        logs = "".join(v.log.read_text() for v in (a, c))
        assert not short, (len(short), short[:8], logs[-3000:])
        for i, (f, dr) in enumerate(flows):
            assert f.error is None, (i, f.error)
            assert dr.digest.hexdigest() == f.digest.hexdigest(), i
        assert "failed to decrypt" not in logs
        total = 2 * GROUPS * EACH
        print(f"\n{GROUPS} groups x 2 directions x {EACH >> 20} MiB "
              f"through one hop: {total / took / 1e6:.0f} MB/s")

        # Every group is still open, then ends in order.
        groups = a.json("route", "ls")["groups"]
        assert len(groups) == GROUPS, groups
        assert all(g["state"] == "open" for g in groups), groups
        for d in dialers:
            d.p.stdin.close()
        for ln in listeners:
            ln.p.stdin.close()
        wait_for(lambda: all(p.p.poll() is not None
                             for p in dialers + listeners),
                 timeout=30, what="every group to end")
        for p in dialers + listeners:
            assert p.p.returncode == 0, p.p.stderr.read()
    finally:
        for p in dialers + listeners:
            p.stop()
