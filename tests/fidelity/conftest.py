"""Harness for the fidelity tests: rclone against the loopback emulator (the rig is tests/harness/fidelity.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.fidelity import (  # noqa: F401 (re-exported for the tests)
    DEFAULT_TIME_SCALE,
    HOSTNAMES,
    NS_SCRIPT,
    PORT,
    PYTHON,
    RCLONE,
    REPO,
    Fidelity,
    RcloneResult,
    _stop,
    skip_reason,
)

_skip_reason = skip_reason


@pytest.fixture(scope="module")
def fidelity() -> Iterator[Fidelity]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="fichierfs-fidelity-"))
    keep = os.environ.get("FIDELITY_LOG_DIR")
    log_dir = Path(keep) if keep else root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    fx = Fidelity(root, log_dir)
    try:
        fx.make_certs()
        fx.make_files()
        fx.start_emulator()
        yield fx
    finally:
        try:
            fx.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
