"""The emulator over HTTP in-process, for the emulator's unit tests (profiles, bans); the
``factory`` fixture that makes them is in tests/unit/conftest.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from fichierfs.emulator import Emulator

API = "https://api.1fichier.com/v1"
KEY = {"Authorization": "Bearer emu-test"}
IP_LOCK = "Flood detected: IP Locked #412"

Factory = Callable[..., Awaitable[tuple[Emulator, httpx.AsyncClient]]]


async def msg(c: httpx.AsyncClient, ep: str, **body: Any) -> str | None:
    """None for an HTTP 200 answer, else the error message."""
    r = await c.post(f"/{ep}.cgi", json=body)
    return None if r.status_code == 200 else r.json()["message"]
