"""Fixtures shared by the write-side core tests (test_write.py, test_crash.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio.testing

from tests.conftest import API_KEY
from tests.core.write_rig import Rig


@pytest.fixture
def write_clock() -> trio.testing.MockClock:
    """Autojump only after 20 ms of real idleness: the emulator parses uploads in threads."""
    return trio.testing.MockClock(autojump_threshold=0.02)


@pytest.fixture
def rig(emu: Any, tmp_path: Path) -> Rig:
    """The whole mount stack in-process over the emulator, with its cache dir (tests/core/write_rig.py)."""
    return Rig(emu.transport(), API_KEY, tmp_path / "cache")
