"""OpenSSH's sshd as the current user on a loopback port, from a
directory of its own (generated host and user keys, authorized_keys, a
config with UsePAM no and StrictModes no): what the end-to-end tests
(test_forward_ssh.py) and the benchmarks (bench/bench_socks.py) run ssh
and scp against."""
import os
import shutil
import subprocess
import time

from conftest import free_port, port_open

SSHD = shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin")


def start_sshd(d):
    """Makes the directory d (a pathlib.Path that must not exist yet),
    keys and a config in it, and starts `sshd -D -e` on a free loopback
    port, logging to d/sshd.log. Returns (the sshd process, its port, the
    user key's path); the caller stops the process. Raises RuntimeError
    when sshd is not installed or does not listen within 10 s."""
    if SSHD is None:
        raise RuntimeError("sshd not found: scripts/deps.sh installs "
                           "openssh-server")
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
    for _ in range(200):
        if port_open(port):
            return p, port, d / "user_key"
        if p.poll() is not None:
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}: "
                       f"{(d / 'sshd.log').read_text().strip()}")


def ssh_opts(key):
    """ssh options for that sshd: no user config, only key, no host key
    checks, no prompts, errors only."""
    return ["-F", "/dev/null", "-i", str(key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o",
            "LogLevel=ERROR"]
