"""Real OpenSSH through hopwire-forward (docs/forward.md): sshd on c's
side behind service "ssh", ssh and scp on a's side through a mapping and
through `hopwire-forward --stdio` as a ProxyCommand."""
import getpass
import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import bin_path, free_port, port_open, wait_for
from test_apps import apps_sock
from test_forward import Forward, expose, line, mapping  # noqa: F401

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin")


@pytest.fixture
def sshd(tmp_path):
    """sshd on a loopback port from tmp_path, with a host key and a user
    key the test makes; yields (port, user key)."""
    if SSHD is None:
        pytest.fail("sshd not found: scripts/deps.sh installs "
                    "openssh-server")
    d = tmp_path / "ssh"
    d.mkdir()
    for k in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / k)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    (d / "authorized_keys").chmod(0o600)
    port = free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PidFile none
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    if os.geteuid() == 0:
        # Root's sshd needs its privilege separation directory, which
        # only the service unit creates otherwise.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    p = subprocess.Popen([SSHD, "-f", str(d / "sshd_config"), "-D", "-e"],
                         stderr=open(d / "sshd.log", "wb"))
    wait_for(lambda: port_open(port), what="sshd")
    yield port, d / "user_key"
    p.terminate()
    p.wait(timeout=10)


def ssh_opts(key):
    return ["-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
            "LogLevel=ERROR"]


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

    # ssh with the --stdio ProxyCommand: no mapping needed, the visor key
    # as the host name.
    env = dict(os.environ, HOPWIRE_APP_SOCKET=apps_sock(a))
    proxy = f"{bin_path('hopwire-forward')} --stdio %h ssh"
    r = subprocess.run(["ssh", *ssh_opts(key), "-o",
                        f"ProxyCommand={proxy}", f"{user}@{c.pk}", "echo",
                        "via-stdio"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "via-stdio"
    # A service the key may not use: ssh fails, with the reason.
    r = subprocess.run(["ssh", *ssh_opts(key), "-o",
                        f"ProxyCommand={bin_path('hopwire-forward')} --stdio "
                        "%h nosuch", f"{user}@{c.pk}", "true"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0
    assert "no such service" in r.stderr
