"""Fixtures shared by the core tests: a running scheduler over the emulator, the write rig."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from fichierfs.api import FichierClient
from fichierfs.scheduler import Budgets, Scheduler
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


@pytest.fixture
async def sched(client: FichierClient) -> AsyncIterator[Scheduler]:
    """A running scheduler with the product's budgets over the emulator's client."""
    s = Scheduler(client, Budgets())
    async with trio.open_nursery() as n:
        await n.start(s.run)
        yield s
        s.stop()
        n.cancel_scope.cancel()


def listings(emu: Any) -> int:
    """Listing calls the emulator answered (folder/ls + file/ls)."""
    c = emu.stats()["calls"]
    return int(c.get("folder/ls", 0) + c.get("file/ls", 0))
