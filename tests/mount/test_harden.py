"""Issue 11: a newcomer's and a breaker's trial. Background mounts that start whatever the working
directory and say why they fail; a private cache; clear messages for the small traps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.mount.conftest import KEY, MOUNT_SCALE, ROOT, is_mounted, run_emulator

FICHIERFS = str(Path(sys.executable).parent / "fichierfs")  # the console script, as a user runs it


def _daemon_pids(mnt: Path) -> list[int]:
    """PIDs of fichierfs processes serving ``mnt`` (found by their command line)."""
    want = str(mnt.resolve()).encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fichierfs" in b" ".join(argv) and want in argv:
            pids.append(int(d.name))
    return pids


@contextmanager
def background(mnt: Path) -> Iterator[None]:
    """Clean up after a background mount: unmount, then stop its daemon by PID."""
    try:
        yield
    finally:
        pids = _daemon_pids(mnt)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def _seed(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    (seed / "d").mkdir(parents=True)
    (seed / "d" / "hello.txt").write_text("hello\n")
    return seed


def _shadow(where: Path) -> Path:
    """A ``fichierfs/`` folder that breaks on import (the parent of a clone, or ~ after cloning)."""
    pkg = where / "fichierfs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('shadow fichierfs package in the working directory')\n")
    (pkg / "__main__.py").write_text("")
    return where


def test_background_mount_from_a_dir_holding_a_fichierfs_folder(tmp_path: Path) -> None:
    """Issue 11.1: the daemon imports the installed package, not ./fichierfs."""
    cwd = _shadow(tmp_path / "home")
    with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        env = {**os.environ, "FICHIER_API_KEY": KEY}
        with background(mnt):
            res = subprocess.run([FICHIERFS, "mount", "--api-url", emu.url, "--budget-scale", str(MOUNT_SCALE),
                                  "--cache-dir", str(tmp_path / "cache"), str(mnt)],
                                 env=env, capture_output=True, text=True, timeout=60, cwd=cwd)
            assert res.returncode == 0, res.stderr
            assert is_mounted(mnt)
            assert (mnt / "d" / "hello.txt").read_text() == "hello\n"


def test_a_daemon_dying_before_the_mount_is_live_says_why(tmp_path: Path) -> None:
    """Issue 11.1: whatever kills the child before it is live reaches the user (here an import error)."""
    shadow = _shadow(tmp_path / "shadow")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "FICHIER_API_KEY": KEY, "PYTHONPATH": str(shadow)}
    with background(mnt):
        # the parent ignores PYTHONPATH (-I); the child inherits it and imports the broken package
        res = subprocess.run([sys.executable, "-I", "-m", "fichierfs", "mount", "--api-url", "http://127.0.0.1:9/v1",
                              "--cache-dir", str(tmp_path / "cache"), str(mnt)],
                             env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1
    assert "mount failed" in res.stderr
    assert "shadow fichierfs package in the working directory" in res.stderr, res.stderr
    assert not is_mounted(mnt)
