"""The SOCKS client's RFC 1929 username/password (docs/socks.md
"Username and password"): required beyond loopback, checked with real
curl."""
import hashlib
import subprocess

from conftest import bin_path, free_port, wait_for
from test_socks import curl, listening, log, proxy  # noqa: F401 (fixture)


def test_socks_username_password(proxy, tmp_path):  # noqa: F811
    a, c, port, http_port, digest = proxy("--allow", "any",
                                          "--allow-loopback")
    creds = tmp_path / "socks-users"
    creds.write_text("# who may use the proxy\nalice:s3cret:x\nbob:pw\n")
    creds.chmod(0o600)

    # Beyond loopback without --auth: refused at start, with the reason.
    r = subprocess.run([bin_path("hopwire-socks-client"), "--listen",
                        "0.0.0.0:0", "--exit", c.pk], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "beyond loopback: give --auth FILE" in r.stderr

    # A credentials file with a bad line: refused at start, line named.
    bad = tmp_path / "bad-users"
    bad.write_text("alice\n")
    r = subprocess.run([bin_path("hopwire-socks-client"), "--auth",
                        str(bad), "--exit", c.pk], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "line 1: no ':' between user and password" in r.stderr

    # Bound to every address with --auth: curl with the right user gets
    # the file, without or with a wrong password it is refused.
    port2 = free_port()
    proxy.client("--listen", f"0.0.0.0:{port2}", "--exit", c.pk, "--auth",
                 str(creds), "--name", "socks-client2")
    wait_for(lambda: listening(port2), what="the client with --auth")
    url = f"http://127.0.0.1:{http_port}/blob"
    r = curl(port2, url, "--proxy-user", "alice:s3cret:x")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).hexdigest() == digest
    r = curl(port2, url, "--proxy-user", "alice:wrong")
    assert r.returncode == 97, r.stderr
    assert b"user was rejected" in r.stderr.lower(), r.stderr
    r = curl(port2, url)  # no credentials offered at all
    assert r.returncode == 97, r.stderr
    wait_for(lambda: "wrong username or password" in
             log(a, "hopwire-socks-client"), what="the refusal logged")
    assert "offers no method 2 (username/password, required by --auth)" \
        in log(a, "hopwire-socks-client")
