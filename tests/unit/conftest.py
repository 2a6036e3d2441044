"""Fixtures of the unit tier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from fichierfs.emulator import Emulator, EmulatorConfig
from tests.unit.emu_http import API, KEY, Factory


@pytest.fixture
async def factory(tmp_path: Path) -> AsyncIterator[Factory]:
    """``await factory(profile="strict", **config)`` → (emulator, client); all closed after the test."""
    made: list[tuple[Emulator, httpx.AsyncClient]] = []

    async def make(profile: str = "strict", **cfg: Any) -> tuple[Emulator, httpx.AsyncClient]:
        emu = Emulator(tmp_path / f"s{len(made)}", EmulatorConfig.profile(profile, **cfg), clock=trio.current_time)
        c = httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY)
        made.append((emu, c))
        return emu, c

    yield make
    for emu, c in made:
        await c.aclose()
        emu.close()
