"""hopwire testnet up|status|restart|kill|down: a whole network on loopback
started by the CLI (discovery, a relay, a setup node, visors in a line),
checked through the CLI and the control API, its processes killed and
restarted one at a time, and stopped without leaving a process behind."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import BIN_DIR, bin_path


def state_of(d):
    return json.loads((d / "testnet.json").read_text())


def proc_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid):
    """pid runs; a zombie nobody has reaped yet does not count."""
    f = proc_fields(pid)
    return f is not None and f[0] not in ("Z", "X")


def group_members(pgid):
    """The running processes of process group pgid."""
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            f = proc_fields(e)
            if f and f[0] not in ("Z", "X") and int(f[2]) == pgid:
                found.append(int(e))
    return found


def working_in(d):
    """Running processes whose working folder is in d: the visors' apps
    work in DIR/vI/apps/NAME."""
    found = []
    for e in os.listdir("/proc"):
        if e.isdigit() and running(e):
            try:
                cwd = os.readlink(f"/proc/{e}/cwd")
            except OSError:
                continue
            if cwd.startswith(f"{d}/"):
                found.append(int(e))
    return found


def pgrep(text):
    r = subprocess.run(["pgrep", "-f", str(text)], capture_output=True,
                       text=True)
    return [int(p) for p in r.stdout.split()]


@pytest.fixture
def tn_dir(tmp_path, hopwire):
    """A testnet folder; whatever the test did, nothing started in it
    outlives the test."""
    d = tmp_path / "tn"
    yield d
    groups = set()
    if (d / "testnet.json").exists():
        groups = {p["pgid"] for p in state_of(d)["processes"]}
        hopwire("testnet", "down", "--dir", d, timeout=60)
    for g in groups:
        for pid in group_members(g):
            os.kill(pid, signal.SIGKILL)
    for pid in pgrep(d) + working_in(d):
        os.kill(pid, signal.SIGKILL)


def by_name(st):
    return {p["name"]: p for p in st["processes"]}


def up_pks(hopwire, v):
    r = hopwire("--visor", v["control_socket"], "tp", "ls", "--json")
    assert r.returncode == 0, r.stderr
    return {t["pk"] for t in json.loads(r.stdout) if t["state"] == "up"}


def test_help(hopwire):
    r = hopwire("testnet", "--help")
    assert r.returncode == 0, r.stderr
    for word in ("up", "status", "restart", "kill", "down", "testnet.json",
                 "--visors"):
        assert word in r.stdout
    for sub in ("up", "status", "restart", "kill", "down"):
        r = hopwire("testnet", sub, "--help")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"usage: hopwire testnet {sub}")
    r = hopwire("testnet", "up", "--help")
    assert "2 to 64" in r.stdout and "--timeout" in r.stdout
    r = hopwire("testnet", "restart", "--help")
    assert "launcher" in r.stdout and "SIGKILL" in r.stdout
    r = hopwire("testnet", "kill", "--help")
    assert "--signal" in r.stdout and "default KILL" in r.stdout
    assert "testnet" in hopwire("--help").stdout


def test_bad_input(hopwire, tmp_path):
    d = tmp_path / "never"
    for n in ("1", "65", "x"):
        r = hopwire("testnet", "up", "--dir", d, "--visors", n)
        assert r.returncode == 2
        assert f"--visors: '{n}'" in r.stderr, r.stderr
    assert not d.exists()
    r = hopwire("testnet", "up", "--dir", d, "--bogus")
    assert r.returncode == 2 and "'--bogus'" in r.stderr
    r = hopwire("testnet", "frob")
    assert r.returncode == 2 and "'frob'" in r.stderr
    r = hopwire("testnet", "up", "--dir", tmp_path / ("x" * 120))
    assert r.returncode == 1 and "path too long" in r.stderr, r.stderr
    assert not (tmp_path / ("x" * 120)).exists()
    for sub in (["status"], ["down"], ["restart", "v1"], ["kill", "v1"]):
        r = hopwire("testnet", *sub, "--dir", tmp_path)
        assert r.returncode == 1
        assert f"no testnet in {tmp_path}" in r.stderr, r.stderr
    for sub in ("restart", "kill"):
        r = hopwire("testnet", sub, "--dir", tmp_path)
        assert r.returncode == 2 and "which process?" in r.stderr
        r = hopwire("testnet", sub, "v1", "v2", "--dir", tmp_path)
        assert r.returncode == 2 and "'v2'" in r.stderr
    r = hopwire("testnet", "kill", "v1", "--signal", "FOO")
    assert r.returncode == 2 and "'FOO' is not a signal" in r.stderr


def test_up_status_down(hopwire, tn_dir):
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 3,
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(tn_dir.stat().st_mode) == 0o700

    st = state_of(tn_dir)
    procs = by_name(st)
    assert sorted(procs) == ["discovery", "relay", "setup", "v1", "v2",
                             "v3"]
    assert [procs[n]["role"] for n in ("discovery", "relay", "setup")] == \
        ["discovery", "relay", "setup"]
    v1, v2, v3 = procs["v1"], procs["v2"], procs["v3"]
    for p in st["processes"]:
        # Each a daemon leading its own session and process group.
        assert p["pgid"] == p["pid"] and running(p["pid"]), p
        assert os.getpgid(p["pid"]) == p["pid"]
        assert os.getsid(p["pid"]) == p["pid"]
        assert p["log"] == str(tn_dir / "logs" / f"{p['name']}.log")
        assert os.path.exists(p["log"])
    # The summary: services, then each visor with pk, socket, chat URL,
    # then commands to try.
    out = r.stdout
    assert procs["discovery"]["url"] in out
    assert procs["relay"]["addr"] in out and procs["relay"]["pk"] in out
    for v in (v1, v2, v3):
        assert v["control_socket"] == str(tn_dir / v["name"] / "visor.sock")
        for k in ("pk", "control_socket", "chat_url"):
            assert v[k] in out
    assert f"route find {v3['pk']}" in out
    assert f"{v1['chat_url']}/message" in out

    r = hopwire("testnet", "status", "--dir", tn_dir, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    status = by_name(json.loads(r.stdout))
    assert all(p["alive"] for p in status.values())
    for name in ("discovery", "setup", "v1", "v2", "v3"):
        assert status[name]["answers"] is True, status[name]
    assert status["relay"]["answers"] is None
    assert [status[n]["transports_up"] for n in ("v1", "v2", "v3")] == \
        [1, 2, 1]
    assert all(status[n]["chat_answers"] for n in ("v1", "v2", "v3"))
    # The visors' apps: in sessions of their own, stopped by down.
    assert len(working_in(tn_dir)) >= 6  # chat and hello on each
    # Each visor runs the forward app on port 47, with nothing exposed or
    # mapped.
    for v in (v1, v2, v3):
        r = hopwire("--visor", v["control_socket"], "app", "ls", "--json")
        assert r.returncode == 0, r.stderr
        fwd = [e for e in json.loads(r.stdout) if e["name"] == "forward"]
        assert len(fwd) == 1, r.stdout
        assert (fwd[0]["binary"], fwd[0]["port"], fwd[0]["args"],
                fwd[0]["autostart"]) == ("hopwire-forward", 47, [], True)
        assert fwd[0]["state"] == "running", fwd[0]
        r = hopwire("--visor", v["control_socket"], "forward", "ls",
                    "--json")
        assert r.returncode == 0, r.stderr
        ls = json.loads(r.stdout)
        assert (ls["revision"], ls["expose"], ls["map"]) == (0, [], [])
    r = hopwire("testnet", "status", "--dir", tn_dir)
    assert r.returncode == 0 and "v3" in r.stdout

    # The line v1 - v2 - v3, and a 2-hop path between its ends.
    assert up_pks(hopwire, v1) == {v2["pk"]}
    assert up_pks(hopwire, v2) == {v1["pk"], v3["pk"]}
    assert up_pks(hopwire, v3) == {v2["pk"]}
    r = hopwire("--visor", v1["control_socket"], "route", "find", v3["pk"],
                "--json")
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["paths"][0]
    assert path["hops"] == 2
    assert [t["to"] for t in path["transports"]] == [v2["pk"], v3["pk"]]

    # A second testnet in the same folder is refused; the first stays.
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 2)
    assert r.returncode == 1 and "already running" in r.stderr, r.stderr
    assert state_of(tn_dir) == st
    assert all(running(p["pid"]) for p in st["processes"])

    r = hopwire("testnet", "down", "--dir", tn_dir, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "stopped" in r.stdout
    assert int(r.stdout.split()[1]) >= len(st["processes"])
    for p in st["processes"]:
        assert not running(p["pid"]), p
        assert group_members(p["pgid"]) == [], p
    assert pgrep(tn_dir) == []
    assert working_in(tn_dir) == []
    assert not (tn_dir / "testnet.json").exists()
    # Keys and logs stay.
    assert (tn_dir / "v1" / "visor.key").exists()
    assert (tn_dir / "logs" / "v1.log").exists()

    r = hopwire("testnet", "status", "--dir", tn_dir)
    assert r.returncode == 1 and "no testnet in" in r.stderr
    r = hopwire("testnet", "down", "--dir", tn_dir)
    assert r.returncode == 1 and "no testnet in" in r.stderr


def test_64_visors(hopwire, tn_dir):
    """The largest testnet: every process up and answering, the summary
    names the farthest visor a route reaches (routes have at most 16
    hops), a 16-hop path there, and down leaves nothing."""
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 64,
                timeout=300)
    assert r.returncode == 0, r.stderr
    st = state_of(tn_dir)
    procs = by_name(st)
    assert len(st["processes"]) == 67
    v1, v17 = procs["v1"], procs["v17"]
    assert f"route find {v17['pk']}\n" in r.stdout
    assert "v1 reaches v17 at most" in r.stdout

    r = hopwire("testnet", "status", "--dir", tn_dir, "--json",
                timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    status = by_name(json.loads(r.stdout))
    assert len(status) == 67 and all(p["alive"] for p in status.values())
    assert [status[f"v{i}"]["transports_up"] for i in range(1, 65)] == \
        [1] + [2] * 62 + [1]

    # route find searches as deep as a route can be unless told.
    r = hopwire("--visor", v1["control_socket"], "route", "find",
                v17["pk"], "--json")
    assert r.returncode == 0, r.stderr
    path = json.loads(r.stdout)["paths"][0]
    assert path["hops"] == 16
    assert path["transports"][-1]["to"] == v17["pk"]
    r = hopwire("--visor", v1["control_socket"], "route", "find",
                v17["pk"], "--max-hops", 15)
    assert r.returncode != 0 or "no path" in r.stdout + r.stderr, r

    r = hopwire("testnet", "down", "--dir", tn_dir, timeout=120)
    assert r.returncode == 0, r.stderr
    for p in st["processes"]:
        assert not running(p["pid"]), p
    assert pgrep(tn_dir) == []
    assert working_in(tn_dir) == []


def test_up_again_keeps_keys_and_down_reports_gone(hopwire, tn_dir):
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 2,
                timeout=120)
    assert r.returncode == 0, r.stderr
    first = by_name(state_of(tn_dir))
    assert hopwire("testnet", "down", "--dir", tn_dir,
                   timeout=60).returncode == 0
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 2,
                timeout=120)
    assert r.returncode == 0, r.stderr
    again = by_name(state_of(tn_dir))
    for name in ("relay", "setup", "v1", "v2"):
        assert again[name]["pk"] == first[name]["pk"]

    # A visor that died is reported, and down still stops the rest.
    os.kill(again["v2"]["pid"], signal.SIGKILL)
    r = hopwire("testnet", "status", "--dir", tn_dir, "--json")
    assert r.returncode == 1
    assert by_name(json.loads(r.stdout))["v2"]["alive"] is False
    r = hopwire("testnet", "down", "--dir", tn_dir, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "already gone: v2" in r.stdout
    assert pgrep(tn_dir) == []
    for p in again.values():
        assert group_members(p["pgid"]) == []


def test_up_names_what_failed_and_cleans_up(tmp_path, hopwire):
    """A visor that exits at once: up says which, shows its log, stops
    the rest and leaves no state behind."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # hopwire finds the programs beside its own (resolved) executable.
    shutil.copy(bin_path("hopwire"), bindir / "hopwire")
    for name in ("discovery", "relay", "setup", "chat", "hello"):
        os.symlink(bin_path(f"hopwire-{name}"), bindir / f"hopwire-{name}")
    fake = bindir / "hopwire-visor"
    fake.write_text("#!/bin/sh\necho 'no visor today'\nexit 3\n")
    fake.chmod(0o755)
    d = tmp_path / "tn"
    r = subprocess.run([str(bindir / "hopwire"), "testnet", "up", "--dir",
                        str(d), "--visors", "2"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    m = re.search(r"(v[12]) exited with status 3", r.stderr)
    assert m, r.stderr
    assert str(d / "logs" / f"{m.group(1)}.log") in r.stderr
    assert "no visor today" in r.stderr
    assert not (d / "testnet.json").exists()
    assert pgrep(d) == []

    os.unlink(bindir / "hopwire-relay")
    r = subprocess.run([str(bindir / "hopwire"), "testnet", "up", "--dir",
                        str(d)], capture_output=True, text=True,
                       env={**os.environ, "PATH": "/usr/bin:/bin"},
                       timeout=30)
    assert r.returncode == 1
    assert "hopwire-relay not found" in r.stderr, r.stderr


def status_of(hopwire, d):
    r = hopwire("testnet", "status", "--dir", d, "--json")
    return r.returncode, by_name(json.loads(r.stdout))


def wait_line(hopwire, procs, names, deadline_s=15):
    """Waits until the line of visors names is whole again: each visor's
    transports to its neighbours are up (the visors redial on their
    own)."""
    want = {n: {procs[m]["pk"] for m in names[max(i - 1, 0):i + 2]
                if m != n} for i, n in enumerate(names)}
    deadline = time.monotonic() + deadline_s
    while True:
        got = {n: up_pks(hopwire, procs[n]) for n in names}
        if got == want:
            return
        assert time.monotonic() < deadline, (got, want)
        time.sleep(0.2)


def test_kill_and_restart(hopwire, tn_dir):
    """kill marks a process killed, restart brings it back under the
    testnet (new pid, the same command), the line heals, and down stops
    everything any restart started."""
    r = hopwire("testnet", "up", "--dir", tn_dir, "--visors", 3,
                timeout=120)
    assert r.returncode == 0, r.stderr
    procs = by_name(state_of(tn_dir))
    seen = {p["pid"] for p in procs.values()}
    v2 = procs["v2"]

    r = hopwire("testnet", "kill", "v2", "--dir", tn_dir)
    assert r.returncode == 0, r.stderr
    assert f"sent SIGKILL to v2 (pid {v2['pid']}): it is gone" in r.stdout
    assert not running(v2["pid"])
    rc, st = status_of(hopwire, tn_dir)
    assert rc == 1
    assert st["v2"]["alive"] is False and st["v2"]["state"] == "killed"
    assert st["v2"]["killed"] == "SIGKILL"
    assert st["v1"]["state"] == "running"
    r = hopwire("testnet", "status", "--dir", tn_dir)
    assert re.search(r"^v2 .* killed ", r.stdout, re.M), r.stdout
    assert "restart v2" in r.stdout
    r = hopwire("testnet", "kill", "v2", "--dir", tn_dir)
    assert r.returncode == 1 and "v2 is not running" in r.stderr

    r = hopwire("testnet", "restart", "v2", "--dir", tn_dir, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["old_pid"] == v2["pid"] and out["was_running"] is False
    assert out["killed"] == "SIGKILL" and out["restarts"] == 1
    new = by_name(state_of(tn_dir))["v2"]
    assert new["pid"] == out["pid"] != v2["pid"] and running(new["pid"])
    assert os.getsid(new["pid"]) == new["pid"] == new["pgid"]
    assert new["argv"] == v2["argv"] and new["log"] == v2["log"]
    assert "killed" not in new and new["restarts"] == 1
    assert "restarting v2" in open(new["log"]).read()
    seen.add(new["pid"])
    rc, st = status_of(hopwire, tn_dir)
    assert st["v2"]["alive"] and st["v2"]["state"] == "running"
    assert st["v2"]["answers"] and st["v2"]["chat_answers"]
    r = hopwire("--visor", v2["control_socket"], "info", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pk"] == v2["pk"]
    wait_line(hopwire, procs, ["v1", "v2", "v3"])
    assert status_of(hopwire, tn_dir)[0] == 0

    # A running process: stopped (its apps too) and started again.
    apps = set(working_in(tn_dir / "v2"))
    assert apps
    r = hopwire("testnet", "restart", "v2", "--dir", tn_dir)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^restarted v2 in [0-9.]+ s: pid "
                     rf"{new['pid']} -> \d+$", r.stdout, re.M), r.stdout
    assert not running(new["pid"])
    assert not apps & set(working_in(tn_dir / "v2"))
    seen |= apps | {by_name(state_of(tn_dir))["v2"]["pid"]}

    # A stopped process shows so, and a restart does not wait for
    # SIGKILL to end it.
    r = hopwire("testnet", "kill", "v1", "--signal", "STOP", "--dir",
                tn_dir)
    assert r.returncode == 0, r.stderr
    assert "sent SIGSTOP to v1" in r.stdout and "it still runs" in r.stdout
    assert status_of(hopwire, tn_dir)[1]["v1"]["state"] == "stopped"
    r = hopwire("testnet", "restart", "v1", "--dir", tn_dir, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["was_running"] and out["sigkill"] == 0, out
    assert out["stop_ms"] < 5000, out
    seen.add(out["pid"])

    for name in ("discovery", "relay", "setup"):
        r = hopwire("testnet", "restart", name, "--dir", tn_dir)
        assert r.returncode == 0, r.stderr
        now = by_name(state_of(tn_dir))[name]
        assert now["pid"] != procs[name]["pid"], name
        assert not running(procs[name]["pid"]) and running(now["pid"])
        seen.add(now["pid"])
    rc, st = status_of(hopwire, tn_dir)
    assert st["discovery"]["answers"] is True
    assert st["setup"]["answers"] is True
    wait_line(hopwire, procs, ["v1", "v2", "v3"])

    # Names: the valid ones are listed; apps are the launcher's.
    r = hopwire("testnet", "restart", "v9", "--dir", tn_dir)
    assert r.returncode == 1
    assert ("its processes are: discovery, relay, setup, v1, v2, v3"
            in r.stderr), r.stderr
    for app in ("chat", "v1/hello"):
        r = hopwire("testnet", "restart", app, "--dir", tn_dir)
        assert r.returncode == 1 and "is an app" in r.stderr, r.stderr
        assert "launcher" in r.stderr

    # A restart that does not come up: non-zero, with its log's tail.
    cfg = tn_dir / "v3" / "hopwire.json"
    good = cfg.read_text()
    cfg.write_text("{")
    r = hopwire("testnet", "restart", "v3", "--dir", tn_dir)
    assert r.returncode == 1
    assert "v3 exited with status" in r.stderr, r.stderr
    assert "hopwire-visor: config" in r.stderr, r.stderr
    cfg.write_text(good)
    seen |= set(working_in(tn_dir / "v3"))

    # v3 started by hand with the command its log shows (what the issue's
    # users did): status names the copy, restart replaces it, down stops
    # it.
    line = [ln for ln in open(procs["v3"]["log"])
            if "starting v3: " in ln][-1]
    cmd = line.split("starting v3: ", 1)[1].split()

    def by_hand():
        if status_of(hopwire, tn_dir)[1]["v3"]["alive"]:
            r = hopwire("testnet", "kill", "v3", "--dir", tn_dir)
            assert r.returncode == 0, r.stderr
        hand = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 10
        while status_of(hopwire, tn_dir)[1]["v3"].get("copy_pid") != \
                hand.pid:
            assert hand.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        return hand

    hand = by_hand()
    try:
        r = hopwire("testnet", "status", "--dir", tn_dir)
        assert f"v3 also runs as pid {hand.pid}" in r.stdout, r.stdout
        r = hopwire("testnet", "restart", "v3", "--dir", tn_dir)
        assert r.returncode == 0, r.stderr
        hand.wait(timeout=15)
        seen.add(by_name(state_of(tn_dir))["v3"]["pid"])
        wait_line(hopwire, procs, ["v1", "v2", "v3"])

        seen |= {p["pid"] for p in state_of(tn_dir)["processes"]}
        seen |= set(working_in(tn_dir))
        hand = by_hand()
        seen |= set(working_in(tn_dir))
        r = hopwire("testnet", "down", "--dir", tn_dir, timeout=60)
        assert r.returncode == 0, r.stderr
        hand.wait(timeout=15)
    finally:
        if hand.poll() is None:
            hand.kill()
            hand.wait()
    left = [p for p in seen if running(p)]
    assert left == [], left
    assert pgrep(tn_dir) == [] and working_in(tn_dir) == []
    assert not (tn_dir / "testnet.json").exists()
    assert not (tn_dir / "testnet.env").exists()


def test_restart_refuses_a_bad_state(hopwire, tmp_path):
    """restart runs the command testnet.json records: one that is not a
    program's absolute path is refused before anything is signalled."""
    d = tmp_path / "tn"
    d.mkdir()
    (d / "testnet.json").write_text(json.dumps({
        "version": 1, "dir": str(d), "boot_id": "", "created": 0,
        "state": "up", "visors": 1, "chat_built": False,
        "processes": [{"name": "v1", "role": "visor", "pid": 2,
                       "pgid": 2, "start_ticks": 0, "log": str(d / "l"),
                       "argv": ["sh", "-c", "true"]}]}))
    for sub in (["restart", "v1"], ["kill", "v1"], ["down"]):
        r = hopwire("testnet", *sub, "--dir", d)
        assert r.returncode == 1
        assert "processes[0].argv[0]: must be a program's absolute path" \
            in r.stderr, r.stderr
