"""Real OpenSSH through hopwire-forward (docs/forward.md): sshd on c's
side behind service "ssh", ssh and scp on a's side through a mapping and
through `hopwire-forward --stdio` as a ProxyCommand."""
import getpass
import hashlib
import os
import subprocess

import pytest

from conftest import bin_path, free_port, wait_for
from sshd_local import ssh_opts, start_sshd
from test_apps import apps_sock
from test_forward import Forward, expose, line, mapping  # noqa: F401


@pytest.fixture
def sshd(tmp_path):
    """sshd on a loopback port from tmp_path, with a host key and a user
    key the test makes; yields (port, user key)."""
    p, port, key = start_sshd(tmp_path / "ssh")
    yield port, key
    p.terminate()
    p.wait(timeout=10)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_ssh_and_scp_through_a_mapping(line, sshd, tmp_path):
    a, b, c, p5, fwd = line
    sshd_port, key = sshd
    p4 = fwd(c)
    p4.set(expose=[expose("ssh", sshd_port, a.pk)])
    p4.start()
    p2 = fwd(a)
    port = free_port()
    p2.set(maps=[mapping(port, c.pk, "ssh")])
    p2.start()
    user = getpass.getuser()
    wait_for(lambda: p2.status()["map"][0]["state"] == "up", timeout=15,
             what="a's link to c")

    # A command over ssh -p through the mapping.
    r = subprocess.run(["ssh", *ssh_opts(key), "-p", str(port),
                        f"{user}@127.0.0.1", "echo", "through-hopwire"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "through-hopwire"

    # scp of 100 MiB each way, same sha256.
    up, back = tmp_path / "up.bin", tmp_path / "back.bin"
    with open(up, "wb") as f:
        f.write(os.urandom(100 << 20))
    there = tmp_path / "there.bin"
    r = subprocess.run(["scp", *ssh_opts(key), "-q", "-P", str(port),
                        str(up), f"{user}@127.0.0.1:{there}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha(there) == sha(up)
    r = subprocess.run(["scp", *ssh_opts(key), "-q", "-P", str(port),
                        f"{user}@127.0.0.1:{there}", str(back)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha(back) == sha(up)

    # ssh with `hopwire forward stdio` as its ProxyCommand (as the README
    # says): no mapping needed, the visor key as the host name.
    proxy = f"{bin_path('hopwire')} --visor {a.socket} forward stdio %h ssh"
    r = subprocess.run(["ssh", *ssh_opts(key), "-o",
                        f"ProxyCommand={proxy}", f"{user}@{c.pk}", "echo",
                        "via-stdio"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via-stdio"
    # The app itself, started by hand, for a service that does not
    # exist: ssh fails, with the reason.
    env = dict(os.environ, HOPWIRE_APP_SOCKET=apps_sock(a))
    r = subprocess.run(["ssh", *ssh_opts(key), "-o",
                        f"ProxyCommand={bin_path('hopwire-forward')} --stdio "
                        "%h nosuch", f"{user}@{c.pk}", "true"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert "no such service" in r.stderr
