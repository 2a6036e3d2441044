"""Shared fixtures: trio MockClock, the in-process emulator, the API client over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from fichierfs.api import FichierClient

API_KEY = "emu-test-key-0123456789abcdef"


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """Virtual time that jumps ahead whenever every task is blocked (no real sleeping)."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def emu_config():
    """The emulator's config for a test; override in a module to change knobs."""
    from fichierfs.emulator import EmulatorConfig

    return EmulatorConfig()


@pytest.fixture
def emu(tmp_path: Path, emu_config):
    """An in-process emulator with the documented limits ON, on trio's (mock) clock."""
    from fichierfs.emulator import Emulator

    return Emulator(tmp_path / "emu-state", config=emu_config, clock=trio.current_time)


@pytest.fixture
async def http(emu) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=emu.transport(), follow_redirects=False) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> FichierClient:
    return FichierClient(http, API_KEY)
