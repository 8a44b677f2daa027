"""Shared fixtures for the end-to-end tests: they run the real programs from
the build directory (HW_BIN_DIR, set by scripts/test.sh)."""
import os
import pathlib
import subprocess

import pytest

from ports import free_port  # noqa: F401  (tests import it from here)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("HW_BIN_DIR", ROOT / "build" / "bin")).resolve()


def bin_path(name):
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build first (make)")
    return str(path)


@pytest.fixture
def hopwire():
    """Runs `hopwire ARGS...` and returns the CompletedProcess."""
    exe = bin_path("hopwire")

    def run(*args, check=False, timeout=30):
        return subprocess.run([exe, *map(str, args)], capture_output=True,
                              text=True, timeout=timeout, check=check)
    return run


class Visor:
    """One hopwire-visor process with its own folder, config and key."""

    def __init__(self, root, name, discovery=None, relay_sessions=1,
                 **transport):
        import json
        self.dir = root / name
        self.dir.mkdir()
        self.config = self.dir / "hopwire.json"
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        run = subprocess.run([bin_path("hopwire"), "config", "init", "--out",
                              str(self.config), "--tcp-listen", self.addr],
                             capture_output=True, text=True, check=True)
        assert run.stdout.strip() == str(self.config)
        cfg = json.loads(self.config.read_text())
        # Fast timers so failures show within a test's patience.
        cfg["transport"].update({"keepalive_interval_ms": 500,
                                 "handshake_timeout_ms": 2000,
                                 "redial_min_ms": 100,
                                 "redial_max_ms": 1000})
        cfg["transport"].update(transport)
        if discovery:
            cfg["discovery"] = {"url": discovery, "refresh_ms": 500,
                                "relay_sessions": relay_sessions}
        self.config.write_text(json.dumps(cfg, indent=2))
        self.socket = str(self.dir / "local" / "visor.sock")
        self.log = self.dir / "visor.log"
        self.pk = subprocess.run([bin_path("hopwire"), "pk", "--key",
                                  str(self.dir / "visor.key")],
                                 capture_output=True, text=True,
                                 check=True).stdout.strip()
        self.proc = None

    def start(self):
        import time
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen([bin_path("hopwire-visor"), "--config",
                                      str(self.config)],
                                     stdout=self.logf, stderr=self.logf)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"visor exited: {self.log.read_text()}")
            if self.cli("info").returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError("visor did not answer on its control socket")

    def stop(self, sig=None):
        import signal
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("visor did not stop on SIGTERM")
        if self.proc:
            self.logf.close()
        return self.proc.returncode if self.proc else None

    def cli(self, *args, timeout=60):
        return subprocess.run([bin_path("hopwire"), "--visor", self.socket,
                               *map(str, args)], capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args):
        import json
        r = self.cli(*args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def transports(self):
        return self.json("tp", "ls")


@pytest.fixture
def visors(tmp_path):
    """Makes visors on demand; stops them all at the end and checks that
    each one stopped cleanly."""
    made = []

    def make(name, **kw):
        v = Visor(tmp_path, name, **kw)
        made.append(v)
        return v
    yield make
    for v in made:
        v.stop()


def wait_for(cond, timeout=10.0, what="condition"):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Service:
    """A control-plane process (hopwire-discovery, hopwire-relay) with its
    log in its own folder; restartable with the same arguments."""

    def __init__(self, root, name, args, ready):
        self.dir = root / name
        self.dir.mkdir(exist_ok=True)
        self.log = self.dir / f"{name}.log"
        self.args = args
        self.ready = ready
        self.proc = None

    def start(self):
        import time
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.logf,
                                     stderr=self.logf)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.logf.close()
                raise AssertionError(
                    f"{self.args[0]} exited: {self.log.read_text()}")
            if self.ready():
                return self
            time.sleep(0.05)
        raise AssertionError(f"{self.args[0]} did not get ready")

    def stop(self, sig=None):
        import signal
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.args[0]} did not stop")
        if self.proc:
            self.logf.close()
        return self.proc.returncode if self.proc else None


def port_open(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def http_get(url, timeout=5):
    import json
    import urllib.request
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class ControlPlane:
    """Makes a discovery service (SQLite in its folder), relays and setup
    nodes under root on demand; stop_all() stops them all, checking each
    stopped cleanly. The control_plane fixture makes one per test; a
    module that shares one network makes its own."""

    def __init__(self, root):
        self.root = root
        self.made = []

    def discovery(self, name="discovery", *extra):
        port = free_port()
        d = self.root / name
        d.mkdir(exist_ok=True)
        svc = Service(self.root, name, [
            bin_path("hopwire-discovery"), "--listen",
            f"127.0.0.1:{port}", "--store", f"sqlite:{d}/discovery.db",
            *extra], lambda: port_open(port))
        svc.url = f"http://127.0.0.1:{port}"
        self.made.append(svc)
        return svc.start()

    def relay(self, discovery_url, name="relay"):
        port = free_port()
        d = self.root / name
        d.mkdir(exist_ok=True)
        key = d / "relay.key"
        subprocess.run([bin_path("hopwire"), "keygen", "--out",
                        str(key)], check=True, capture_output=True)
        svc = Service(self.root, name, [
            bin_path("hopwire-relay"), "--key", str(key), "--listen",
            f"127.0.0.1:{port}", "--discovery", discovery_url,
            "--keepalive-ms", "500"], lambda: port_open(port))
        svc.pk = subprocess.run(
            [bin_path("hopwire"), "pk", "--key", str(key)],
            capture_output=True, text=True, check=True).stdout.strip()
        svc.addr = f"127.0.0.1:{port}"
        self.made.append(svc)
        return svc.start()

    def setup(self, discovery_url, name="setup"):
        d = self.root / name
        d.mkdir(exist_ok=True)
        key = d / "setup.key"
        subprocess.run([bin_path("hopwire"), "keygen", "--out",
                        str(key)], check=True, capture_output=True)
        port = free_port()
        svc = Service(self.root, name, [
            bin_path("hopwire-setup"), "--key", str(key),
            "--discovery", discovery_url, "--tcp-listen",
            f"127.0.0.1:{port}", "--dir", str(d / "local")],
            lambda: port_open(port))
        svc.pk = subprocess.run(
            [bin_path("hopwire"), "pk", "--key", str(key)],
            capture_output=True, text=True, check=True).stdout.strip()
        self.made.append(svc)
        return svc.start()

    def stop_all(self):
        for svc in reversed(self.made):
            assert svc.stop() in (0, None, -9), \
                f"{svc.args[0]} did not stop cleanly: {svc.log.read_text()}"


@pytest.fixture
def control_plane(tmp_path):
    """A ControlPlane in the test's folder, stopped at the end."""
    plane = ControlPlane(tmp_path)
    yield plane
    plane.stop_all()
