"""Emulator: user/info's own flood lock while downloads keep working (§2.1, §4, issue 11.11) and bans
that grow for repeated offences (§4, §3; rule in EmulatorConfig.ban_growth)."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.unit.emu_http import IP_LOCK, msg

INFO_LOCK = "Flood detected: IP Locked #38"




async def test_downloads_work_while_user_info_is_locked(factory: Any, autojump_clock: Any) -> None:
    """§2.1/§4: user/info more often than every 5 min → #38 and a user/info lock; get_token and token
    downloads keep working. Strict: the lock refuses other /v1 calls too; lenient: user/info only."""
    for profile in ("strict", "lenient"):
        emu, c = await factory(profile)
        url = emu.put_file(0, "f", b"data")
        assert await msg(c, "user/info") is None
        await trio.sleep(10)
        assert await msg(c, "user/info") == INFO_LOCK
        assert emu.stats()["locks"] == {"ip": 0, "user": 0, "user_info": 1}
        await trio.sleep(1)
        r = await c.post("/download/get_token.cgi", json={"url": url})
        assert r.status_code == 200
        assert (await c.get(r.json()["url"])).content == b"data"
        assert await msg(c, "user/info") == INFO_LOCK
        await trio.sleep(1)
        listing = await msg(c, "folder/ls")
        assert listing == (INFO_LOCK if profile == "strict" else None), profile
        await trio.sleep(400)  # past the lock (grown or not) and the 5 min window
        assert await msg(c, "user/info") is None
        assert await msg(c, "folder/ls", folder_id=1) in (None, "Resource not found #469")




async def test_bans_grow_for_repeated_offences(factory: Any, autojump_clock: Any) -> None:
    """§4 (apidoc "repeated … may result in temporary ban", JD 5 min then 60 min): the n-th lock of an
    address within ban_memory (1 h) of the previous one's end lasts 60 s × 2^(n-1), at most 1 h; after an
    hour without a lock the next one is 60 s again. Lenient: always 60 s."""
    emu, c = await factory("strict", extend_lock=False)  # no extension: measure the ban itself

    async def offence(c: httpx.AsyncClient) -> float:
        """Cross the 3/s window, then probe every 10 s (locks are not extended here) until a call passes."""
        t0 = trio.current_time()
        for _ in range(3):
            await msg(c, "remote/ls")
        assert await msg(c, "remote/ls") == IP_LOCK
        while True:
            await trio.sleep(10)
            if await msg(c, "remote/ls") is None:
                return trio.current_time() - t0
            assert trio.current_time() - t0 < 4000

    lengths = [await offence(c) for _ in range(8)]
    assert [round(x, -1) for x in lengths] == [60, 120, 240, 480, 960, 1920, 3600, 3600], lengths
    assert emu.stats()["locks"]["ip"] == 8
    await trio.sleep(3601)
    assert round(await offence(c), -1) == 60
    _, lenient = await factory("lenient")
    assert [round(await offence(lenient), -1) for _ in range(3)] == [60, 60, 60]


async def test_fault_flood_locks_grow_too(factory: Any, autojump_clock: Any) -> None:
    """The "flood" fault is an offence like any other: its lock grows too."""
    emu, c = await factory("strict", extend_lock=False)
    emu.inject("remote/ls", "flood")
    assert await msg(c, "remote/ls") == IP_LOCK
    await trio.sleep(61)
    emu.inject("remote/ls", "flood")
    assert await msg(c, "remote/ls") == IP_LOCK
    await trio.sleep(61)
    assert await msg(c, "remote/ls") == IP_LOCK  # second lock: 120 s
    await trio.sleep(60)
    assert await msg(c, "remote/ls") is None
    assert emu.limiter.lock_remaining("127.0.0.1") == 0
