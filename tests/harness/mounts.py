"""The loopback emulator and ``fichierfs mount`` as subprocesses (the mount tier's rig, also used by scripts/bench).

Time is scaled so that suites stay fast while every limit is still enforced: the emulator runs with
``--time-scale EMU_SCALE`` (its 30 s / 3 s / 3 req/s rules become 1.5 s / 0.15 s / 3 per 50 ms) and the mount
with ``--budget-scale MOUNT_SCALE`` (a little larger, i.e. still safely under the scaled limits, as the unscaled
defaults are under the real ones). Every process is stopped by PID and every mount unmounted, even on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.procs import is_mounted, stop_proc

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
EMU_SCALE = 0.05
MOUNT_SCALE = 0.07
KEY = "emu-mount-tier-key-5f3a9c"


@dataclass
class EmulatorProc:
    url: str
    proc: subprocess.Popen[bytes]
    state: Path

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + "/_emulator/stats", timeout=10) as r:
            doc: dict[str, Any] = json.load(r)
            return doc

    def post(self, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(self.base + path, method="POST"), timeout=10).close()

    def reset(self) -> None:
        """Zero the counters and forget the limit windows."""
        self.post("/_emulator/reset")

    def unlock(self) -> None:
        """Lift any flood lock."""
        self.post("/_emulator/unlock")

    def calls(self, endpoint: str) -> int:
        return int(self.stats()["calls"].get(endpoint, 0))

    def listings(self) -> int:
        c = self.stats()["calls"]
        return int(c.get("folder/ls", 0)) + int(c.get("file/ls", 0))


@contextmanager
def run_emulator(state: Path, seed: Path | None = None, *args: str,
                 scale: float = EMU_SCALE) -> Iterator[EmulatorProc]:
    """Start ``fichierfs emulator`` on an ephemeral loopback port; stop it by PID afterwards."""
    cmd = [PY, "-m", "fichierfs", "emulator", "--state", str(state), "--time-scale", str(scale), *args]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    err = open(state.parent / f"{state.name}.emulator.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("FICHIER_API_URL="), f"emulator said {line!r}"
        yield EmulatorProc(line.split("=", 1)[1], proc, state)
    finally:
        stop_proc(proc)
        err.close()


@dataclass
class Mount:
    path: Path
    proc: subprocess.Popen[bytes]
    log: Path


def mount_cmd(api_url: str, mnt: Path, log: Path, *args: str, budget_scale: float = MOUNT_SCALE) -> list[str]:
    return [PY, "-m", "fichierfs", "mount", "-f", "--api-url", api_url, "--budget-scale", str(budget_scale),
            "--log-file", str(log), *args, str(mnt)]


def wait_mounted(proc: subprocess.Popen[bytes], mnt: Path, log: Path | None = None, timeout: float = 60) -> float:
    """Wait until ``mnt`` is mounted; seconds waited. Raises AssertionError if the mount process exits first."""
    t0 = time.monotonic()
    while not is_mounted(mnt):
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"mount exited {proc.returncode}: {err}"
                                 f"\n{log.read_text() if log and log.exists() else ''}")
        assert time.monotonic() - t0 < timeout, f"mount did not come up in {timeout:g} s"
        time.sleep(0.05)
    return time.monotonic() - t0


@contextmanager
def run_mount(emu: EmulatorProc, mnt: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Mount]:
    """``fichierfs mount -f`` in a subprocess; waits until mounted; unmounts and stops it after."""
    mnt.mkdir(parents=True, exist_ok=True)
    log = mnt.parent / f"{mnt.name}.mount.log"
    if "--cache-dir" not in args:  # never the user's own cache directory (the read cache keeps up to 1 GiB)
        args = ("--cache-dir", str(mnt.parent / f"{mnt.name}.cache"), *args)
    cmd = mount_cmd(emu.url, mnt, log, *args)
    full_env = {**os.environ, "FICHIER_API_KEY": KEY, **(env or {})}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        wait_mounted(proc, mnt, log)
        yield Mount(mnt, proc, log)
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        stop_proc(proc, 20)
