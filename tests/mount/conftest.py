"""Mount tier: the real CLI in a subprocess against the loopback emulator (limits ON).

Time is scaled so the suite stays fast while every limit is still enforced: the emulator runs
with ``--time-scale EMU_SCALE`` (its 30 s / 3 s / 3 req/s rules become 1.5 s / 0.15 s /
3 per 50 ms) and the mount with ``--budget-scale MOUNT_SCALE`` (a little larger, i.e. still
safely under the scaled limits, as the unscaled defaults are under the real ones).

Every process is stopped by PID and every mount unmounted, even when a test fails. The rig itself is
tests/harness/mounts.py (shared with scripts/bench).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness.mounts import (  # noqa: F401 (re-exported for the tests)
    EMU_SCALE,
    KEY,
    MOUNT_SCALE,
    PY,
    ROOT,
    EmulatorProc,
    Mount,
    run_emulator,
    run_mount,
)
from tests.harness.procs import is_mounted, stop_proc  # noqa: F401


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "mount tier needs root (FUSE mounts with allow_other-free defaults as root)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if shutil.which("fusermount3") is None:
        return "fusermount3 missing (apt-get install fuse3)"
    return None


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    stop_proc(proc, timeout)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "tests/mount/" in str(item.fspath):
            item.add_marker(pytest.mark.mount)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def real_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred real files from this machine (scripts/make_seed.py)."""
    dest = tmp_path_factory.mktemp("seed") / "tree"
    subprocess.run([PY, str(ROOT / "scripts" / "make_seed.py"), str(dest)], check=True, capture_output=True)
    return dest


@pytest.fixture(autouse=True)
def _own_host_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's mounts share one host budget file of their own: emulators of different tests
    may reuse a port (one API URL), and must not hand each other listings or clocks."""
    monkeypatch.setenv("FICHIERFS_HOST_BUDGET", str(tmp_path / "host-budget.sqlite3"))
