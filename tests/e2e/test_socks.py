"""The SOCKS5 proxy (docs/socks.md): hopwire-socks-client on a, the exit
hopwire-socks on c, two hops apart; real curl through it."""
import hashlib
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import bin_path, free_port, wait_for
from test_apps import apps_sock
from test_routing import line_of_three

# The size of each of the 20 parallel fetches.
MID = 1 << 20


def start_app(v, name, *args):
    env = dict(os.environ, HOPWIRE_APP_SOCKET=apps_sock(v))
    log = open(v.dir / f"{name}.log", "w")
    p = subprocess.Popen([bin_path(name), *args], env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    return p


def log(v, name):
    return (v.dir / f"{name}.log").read_text()


def stop_app(p):
    p.terminate()
    assert p.wait(timeout=10) == 0


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def curl(proxy, url, *extra):
    return subprocess.run(["curl", "-sS", "--max-time", "20",
                           "--socks5-hostname", f"127.0.0.1:{proxy}",
                           *extra, url], capture_output=True, timeout=30)


def socks_reply(port, request):
    """Greets, sends request, returns the reply code."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(request)
    r = s.recv(64)
    s.close()
    return r[1]


@pytest.fixture
def proxy(tmp_path, control_plane, visors):
    """Makes the line, an HTTP server and returns start(exit_args) ->
    (a, c, client port, http port, sha256 of /blob)."""
    disc, s, a, b, c = line_of_three(tmp_path, control_plane, visors)
    www = tmp_path / "www"
    www.mkdir()
    blob = os.urandom(20 << 20)
    (www / "blob").write_bytes(blob)
    (www / "small").write_bytes(b"small file\n")
    (www / "mid").write_bytes(blob[:MID])
    http_port = free_port()
    procs = []
    http = subprocess.Popen([sys.executable, "-m", "http.server", "--bind",
                             "127.0.0.1", str(http_port)], cwd=www,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def start(*exit_args, exits=True):
        start.client = lambda *args: procs.append(
            start_app(a, "hopwire-socks-client", *args))
        procs.append(start_app(c, "hopwire-socks", *exit_args))
        port = free_port()
        procs.append(start_app(a, "hopwire-socks-client", "--listen",
                               f"127.0.0.1:{port}",
                               *(["--exit", c.pk] if exits else [])))
        # Both apps past Init (a SIGTERM before their handlers would
        # kill them), the HTTP server up.
        wait_for(lambda: listening(port) and listening(http_port) and
                 "exit on port 3" in log(c, "hopwire-socks"),
                 what="the SOCKS exit, client and HTTP server")
        return a, c, port, http_port, hashlib.sha256(blob).hexdigest()
    yield start
    for p in procs:
        stop_app(p)
    http.terminate()
    http.wait(timeout=10)


def test_socks_fetch_and_errors(proxy):
    a, c, port, http_port, digest = proxy("--allow", "any",
                                          "--allow-loopback")
    url = f"http://127.0.0.1:{http_port}/blob"
    r = curl(port, url)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == digest

    # A name that does not resolve at the exit: host unreachable (0x04).
    r = curl(port, "http://no-such-host.invalid/")
    assert r.returncode == 97, r.stderr
    assert r.stderr.rstrip().endswith(b"(4)"), r.stderr  # curl shows REP

    # Malformed bytes straight to the client: closed, and the next works.
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(b"\x04\x01\x00\x50junk")
    assert s.recv(16) == b""
    s.close()
    # BIND: command not supported (0x07); an unknown ATYP: 0x08.
    assert socks_reply(port, b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50") \
        == 0x07
    assert socks_reply(port, b"\x05\x01\x00\x09\x00\x50") == 0x08
    r = curl(port, f"http://127.0.0.1:{http_port}/small")
    assert r.returncode == 0 and r.stdout == b"small file\n", r.stderr

    # 20 at once, 1 MiB each, all intact.
    mid = f"http://127.0.0.1:{http_port}/mid"
    mid_bytes = curl(port, mid).stdout
    assert hashlib.sha256(mid_bytes).digest() != b"" and len(mid_bytes) == MID
    with ThreadPoolExecutor(20) as pool:
        outs = list(pool.map(lambda _: curl(port, mid), range(20)))
    for r in outs:
        assert r.returncode == 0, r.stderr
        assert r.stdout == mid_bytes


def test_socks_policy_and_idle_client(proxy):
    # The default policy refuses the exit's loopback: reply 0x02.
    a, c, port, http_port, digest = proxy("--allow", "any")
    req = b"\x05\x01\x00\x01\x7f\x00\x00\x01" + http_port.to_bytes(2, "big")
    assert socks_reply(port, req) == 0x02
    r = curl(port, f"http://localhost:{http_port}/small")
    assert r.returncode == 97 and r.stderr.rstrip().endswith(b"(2)"), \
        r.stderr


def test_socks_idle_client_and_refused_visor(proxy):
    # An exit that allows nobody; a client without --exit answers 0x01.
    a, c, port, http_port, digest = proxy(exits=False)
    assert socks_reply(port, b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50") \
        == 0x01
    assert "no exit configured" in log(a, "hopwire-socks-client")
    assert "refusing every visor" in log(c, "hopwire-socks")
    # A client pointed at that exit: its requests are answered 0x02 (not
    # allowed), with the reason in the exit's log.
    port2 = free_port()
    proxy.client("--listen", f"127.0.0.1:{port2}", "--exit", c.pk,
                 "--name", "socks-client2")
    wait_for(lambda: listening(port2), what="the second client")
    assert socks_reply(port2, b"\x05\x01\x00\x01\x7f\x00\x00\x01"
                       b"\x00\x50") == 0x02
    wait_for(lambda: f"refused loop from {a.pk}: not in --allow" in
             log(c, "hopwire-socks"), what="the exit's refusal")
