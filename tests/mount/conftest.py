"""Mount tier: the real CLI in a subprocess against the loopback emulator (limits ON).

Time is scaled so the suite stays fast while every limit is still enforced: the emulator runs
with ``--time-scale EMU_SCALE`` (its 30 s / 3 s / 3 req/s rules become 1.5 s / 0.15 s /
3 per 50 ms) and the mount with ``--budget-scale MOUNT_SCALE`` (a little larger, i.e. still
safely under the scaled limits, as the unscaled defaults are under the real ones).

Every process is stopped by PID and every mount unmounted, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
EMU_SCALE = 0.05
MOUNT_SCALE = 0.07
KEY = "emu-mount-tier-key-5f3a9c"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "mount tier needs root (FUSE mounts with allow_other-free defaults as root)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 missing (apt-get install fuse3)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "tests/mount/" in str(item.fspath):
            item.add_marker(pytest.mark.mount)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    for pipe in (proc.stdout, proc.stderr, proc.stdin):
        if pipe is not None:
            pipe.close()


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


@dataclass
class EmulatorProc:
    url: str
    proc: subprocess.Popen[bytes]
    state: Path

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base + "/_emulator/stats", timeout=10) as r:
            return json.load(r)

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.base + "/_emulator/reset", method="POST"), timeout=10)

    def calls(self, endpoint: str) -> int:
        return int(self.stats()["calls"].get(endpoint, 0))

    def listings(self) -> int:
        c = self.stats()["calls"]
        return int(c.get("folder/ls", 0)) + int(c.get("file/ls", 0))


@contextmanager
def run_emulator(state: Path, seed: Path | None = None, *args: str) -> Iterator[EmulatorProc]:
    """Start ``fichierfs emulator`` on an ephemeral loopback port; stop it by PID afterwards."""
    cmd = [PY, "-m", "fichierfs", "emulator", "--state", str(state), "--time-scale", str(EMU_SCALE), *args]
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
        _stop(proc)
        err.close()


@dataclass
class Mount:
    path: Path
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def run_mount(emu: EmulatorProc, mnt: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Mount]:
    """``fichierfs mount -f`` in a subprocess; waits until mounted; unmounts and stops it after."""
    mnt.mkdir(parents=True, exist_ok=True)
    log = mnt.parent / f"{mnt.name}.mount.log"
    cmd = [PY, "-m", "fichierfs", "mount", "-f", "--api-url", emu.url, "--budget-scale", str(MOUNT_SCALE),
           "--log-file", str(log), *args, str(mnt)]
    full_env = {**os.environ, "FICHIER_API_KEY": KEY, **(env or {})}
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not is_mounted(mnt):
            if proc.poll() is not None:
                raise AssertionError(f"mount exited {proc.returncode}: {proc.stderr.read().decode()}"
                                     f"\n{log.read_text() if log.exists() else ''}")
            assert time.monotonic() < deadline, "mount did not come up in 60 s"
            time.sleep(0.05)
        yield Mount(mnt, proc, log)
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        _stop(proc, 20)


@pytest.fixture(scope="session")
def real_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred real files from this machine (scripts/make_seed.py)."""
    dest = tmp_path_factory.mktemp("seed") / "tree"
    subprocess.run([PY, str(ROOT / "scripts" / "make_seed.py"), str(dest)], check=True, capture_output=True)
    return dest
