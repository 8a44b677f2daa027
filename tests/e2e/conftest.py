"""Shared fixtures for the end-to-end tests: they run the real programs from
the build directory (HW_BIN_DIR, set by scripts/test.sh)."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("HW_BIN_DIR", ROOT / "build" / "bin"))


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
