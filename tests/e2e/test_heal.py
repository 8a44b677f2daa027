"""Routes that fail loudly and heal: a middle hop of a route group is
killed with SIGKILL while bytes flow. With a second path the group is
rebuilt over it and the stream goes on, every byte once and in order;
without one both ends learn it within about a second, not after the
rules' keepalive period."""
import hashlib
import os
import select
import signal
import threading
import time

from conftest import wait_for
from test_routing import Pipe, line_of_three, link, registered, trust

TOTAL = 100 << 20


def diamond(control_plane, visors):
    """a - b - c and a - d - c: two paths from a to c."""
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c, d = (visors(n, discovery=disc.url) for n in "abcd")
    for v in (a, b, c, d):
        trust(v, s.pk)
        v.start()
    for x, y in ((a, b), (b, c), (a, d), (d, c)):
        link(x, y)
    wait_for(lambda: all(registered(disc.url, x, y) for x, y in
                         ((a, b), (b, c), (a, d), (d, c))),
             what="transports in discovery")
    return disc, s, a, b, c, d


def pattern(i):
    """Chunk i of the test stream: 64 KiB that differ from chunk to
    chunk, so a repeated or lost chunk changes the checksum."""
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * 2048


class Feeder(threading.Thread):
    def __init__(self, pipe, total):
        super().__init__(daemon=True)
        self.pipe, self.total, self.sent = pipe, total, 0
        self.digest = hashlib.sha256()
        self.error = None

    def run(self):
        i = 0
        try:
            while self.sent < self.total:
                chunk = pattern(i)[:self.total - self.sent]
                self.pipe.p.stdin.write(chunk)
                self.digest.update(chunk)
                self.sent += len(chunk)
                i += 1
            self.pipe.p.stdin.flush()
        except OSError as e:
            self.error = e


class Drain(threading.Thread):
    def __init__(self, pipe, total):
        super().__init__(daemon=True)
        self.pipe, self.total, self.got = pipe, total, 0
        self.digest = hashlib.sha256()
        # (time, bytes) samples, for the pause around the kill.
        self.samples = []

    def run(self):
        fd = self.pipe.p.stdout.fileno()
        while self.got < self.total:
            r, _, _ = select.select([fd], [], [], 1)
            if not r:
                if self.pipe.p.poll() is not None:
                    return
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                return
            self.digest.update(data)
            self.got += len(data)
            self.samples.append((time.monotonic(), self.got))


def longest_pause(samples, after):
    gaps = [t1 - t0 for (t0, _), (t1, _) in zip(samples, samples[1:])
            if t1 >= after]
    return max(gaps) if gaps else 0.0


def test_route_heals_over_second_path(control_plane, visors):
    disc, s, a, b, c, d = diamond(control_plane, visors)
    listener = Pipe(c, "listen", "9")
    dialer = None
    try:
        listener.wait_stderr("listening")
        dialer = Pipe(a, "dial", c.pk, "9", "--via", b.pk)
        dialer.wait_stderr("connected")
        listener.wait_stderr("accepted")
        feed, drain = Feeder(dialer, TOTAL), Drain(listener, TOTAL)
        feed.start()
        drain.start()
        wait_for(lambda: drain.got >= TOTAL // 2, timeout=60,
                 what="half the stream through b")
        killed = time.monotonic()
        b.stop(signal.SIGKILL)
        drain.join(timeout=90)
        feed.join(timeout=5)
        assert feed.error is None, feed.error
        assert drain.got == TOTAL, (drain.got, TOTAL)
        assert drain.digest.hexdigest() == feed.digest.hexdigest()
        print(f"\nkill to flowing again: "
              f"{longest_pause(drain.samples, killed) * 1000:.0f} ms")
        # The group now runs over d, and says it healed.
        groups = a.json("route", "ls")["groups"]
        assert len(groups) == 1 and groups[0]["heals"] == 1, groups
        assert groups[0]["state"] == "open", groups
        log = a.log.read_text()
        assert "healed after" in log, log
        # An orderly end after the heal.
        dialer.p.stdin.close()
        wait_for(lambda: listener.p.poll() is not None, timeout=15,
                 what="the listener to see the end")
        assert listener.p.returncode == 0, listener.p.stderr.read()
    finally:
        if dialer:
            dialer.stop()
        listener.stop()


def test_no_second_path_fails_fast(control_plane, visors):
    """a - b - c only: killing b leaves no path, and both ends give up at
    once instead of waiting the heal timeout out."""
    disc, s, a, b, c = line_of_three(None, control_plane, visors)
    listener = Pipe(c, "listen", "9")
    dialer = None
    try:
        listener.wait_stderr("listening")
        dialer = Pipe(a, "dial", c.pk, "9")
        dialer.wait_stderr("connected")
        listener.wait_stderr("accepted")
        dialer.send(b"ping")
        assert listener.read(4) == b"ping"
        killed = time.monotonic()
        b.stop(signal.SIGKILL)
        wait_for(lambda: dialer.p.poll() is not None, timeout=10,
                 what="the dialing end to give up")
        t_dial = time.monotonic() - killed
        wait_for(lambda: listener.p.poll() is not None, timeout=10,
                 what="the listening end to give up")
        t_listen = time.monotonic() - killed
        print(f"\nno second path: dialer ended after {t_dial * 1000:.0f} "
              f"ms, listener after {t_listen * 1000:.0f} ms")
        # Both fail loudly: exit 1 and the reason.
        for pipe in (dialer, listener):
            err = pipe.p.stderr.read().decode()
            assert pipe.p.returncode == 1, err
            assert "failed: route failed and discovery knows no other " \
                "path" in err, err
    finally:
        if dialer:
            dialer.stop()
        listener.stop()


def log_time(v, word):
    """The time (seconds, from the log's ISO stamp) of the first line of
    v's log with word, or None."""
    import datetime
    for line in v.log.read_text().splitlines():
        if word in line:
            stamp = line.split(" ", 1)[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
    return None


def test_far_failure_travels_hop_by_hop(control_plane, visors):
    """a - b - c - d with a shortcut b - d; the route runs a b c d. When
    c dies, a (two hops away) hears it from b's route-failure packet,
    confirms it with a probe and heals over b - d."""
    disc = control_plane.discovery()
    s = control_plane.setup(disc.url)
    a, b, c, d = (visors(n, discovery=disc.url) for n in "abcd")
    for v in (a, b, c, d):
        trust(v, s.pk)
        v.start()
    pairs = ((a, b), (b, c), (c, d), (b, d))
    for x, y in pairs:
        link(x, y)
    wait_for(lambda: all(registered(disc.url, x, y) for x, y in pairs),
             what="transports in discovery")
    listener = Pipe(d, "listen", "9")
    dialer = None
    try:
        listener.wait_stderr("listening")
        dialer = Pipe(a, "dial", d.pk, "9", "--via", f"{b.pk},{c.pk}")
        dialer.wait_stderr("connected")
        listener.wait_stderr("accepted")
        dialer.send(b"before")
        assert listener.read(6) == b"before"
        killed = time.time()
        c.stop(signal.SIGKILL)
        wait_for(lambda: log_time(a, "healed after"), timeout=10,
                 what="a to heal")
        told = log_time(a, "a hop reports the route failed")
        assert told is not None, a.log.read_text()
        print(f"\nkill to a informed: {(told - killed) * 1000:.0f} ms")
        dialer.send(b"after")
        assert listener.read(5) == b"after"
        listener.send(b"back")
        assert dialer.read(4) == b"back"
    finally:
        if dialer:
            dialer.stop()
        listener.stop()
