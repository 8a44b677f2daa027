"""hopwire keygen / hopwire pk, as a user runs them."""
import os
import re
import stat

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_keygen_writes_0600_and_prints_pk(hopwire, tmp_path):
    key = tmp_path / "visor.key"
    r = hopwire("keygen", "--out", key)
    assert r.returncode == 0, r.stderr
    pk = r.stdout.strip()
    assert HEX64.match(pk)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    r = hopwire("pk", "--key", key)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == pk


def test_keygen_refuses_overwrite_without_force(hopwire, tmp_path):
    key = tmp_path / "visor.key"
    first = hopwire("keygen", "--out", key).stdout.strip()
    r = hopwire("keygen", "--out", key)
    assert r.returncode == 1
    assert str(key) in r.stderr and "--force" in r.stderr
    assert hopwire("pk", "--key", key).stdout.strip() == first
    r = hopwire("keygen", "--out", key, "--force")
    assert r.returncode == 0
    second = r.stdout.strip()
    assert second != first
    assert hopwire("pk", "--key", key).stdout.strip() == second


def test_two_keys_differ(hopwire, tmp_path):
    a = hopwire("keygen", "--out", tmp_path / "a").stdout
    b = hopwire("keygen", "--out", tmp_path / "b").stdout
    assert a != b


def test_pk_refuses_readable_key(hopwire, tmp_path):
    key = tmp_path / "visor.key"
    hopwire("keygen", "--out", key, check=True)
    os.chmod(key, 0o644)
    r = hopwire("pk", "--key", key)
    assert r.returncode == 1
    assert str(key) in r.stderr
    assert "readable by group or others" in r.stderr


def test_pk_refuses_truncated_and_foreign_files(hopwire, tmp_path):
    key = tmp_path / "visor.key"
    hopwire("keygen", "--out", key, check=True)
    data = key.read_bytes()
    key.write_bytes(data[:40])
    r = hopwire("pk", "--key", key)
    assert r.returncode == 1
    assert f"{key}: key file is truncated" in r.stderr

    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n")
    r = hopwire("pk", "--key", key)
    assert r.returncode == 1
    assert f"{key}: not a Hopwire key file" in r.stderr

    # Right header, a non-hex character inside the seed.
    key.write_bytes(data[:30] + b"g" + data[31:])
    r = hopwire("pk", "--key", key)
    assert r.returncode == 1
    assert "not a Hopwire key file" in r.stderr


def test_pk_missing_file(hopwire, tmp_path):
    r = hopwire("pk", "--key", tmp_path / "nope.key")
    assert r.returncode == 1
    assert "nope.key: No such file or directory" in r.stderr


def test_usage_and_help(hopwire):
    r = hopwire()
    assert r.returncode == 2 and "usage: hopwire" in r.stderr
    r = hopwire("--help")
    assert r.returncode == 0 and "keygen" in r.stdout
    r = hopwire("keygen", "--help")
    assert r.returncode == 0 and "--force" in r.stdout
    r = hopwire("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr
    r = hopwire("pk")
    assert r.returncode == 2 and "--key FILE" in r.stderr
