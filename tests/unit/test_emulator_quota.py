"""Emulator: the quota knob (``--quota``, ``EmulatorConfig.quota``, ``set_quota``, ``/_emulator/quota``):
uploads beyond it refused as §6/§2.1 describe, freeing space lets them through again."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import pytest

from fichierfs.emulator.server import parse_size
from tests.unit.test_emulator_upload import (
    API,
    KEY,
    make,
    node,
    post,
    refused_page,
    report,
    user_info,
)


def test_parse_size() -> None:
    assert parse_size("1000") == 1000
    assert parse_size("10G") == 10 * 10**9 and parse_size("10GB") == 10 * 10**9
    assert parse_size("512Mi") == 512 << 20 and parse_size("1TiB") == 1 << 40
    for bad in ("", "ten", "10X", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


async def test_quota_refuses_and_freeing_space_lets_uploads_through(tmp_path: Path, autojump_clock: Any
                                                                     ) -> None:
    """Quota knob (§2.1, §6): an upload that does not fit is refused as a whole ("Storage quota exceeded",
    nothing stored); user/info says so; deleting files or raising the quota lets uploads through again."""
    emu = make(tmp_path, quota=1000)
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
        n = await node(c)
        assert (await post(c, n, [("a", b"a" * 600)])).status_code == 302
        a = (await report(c, n))["links"][0]["download"]
        n = await node(c)
        refused_page(await post(c, n, [("b", b"b" * 300), ("c", b"c" * 300)]), "Storage quota exceeded")
        assert [f["filename"] for f in emu.list_files(0)] == ["a"] and emu.stats()["refused_files"] == 2
        assert (await post(c, n, [("b", b"b" * 400)])).status_code == 302  # exactly full: accepted
        j = await user_info(c)
        assert j["available_storage"] == 0 and j["upload_forbidden"] == "1" and j["overquota"] == 0
        refused_page(await post(c, await node(c), [("d", b"d")]), "Storage quota exceeded")
        r = await c.post("/file/cp.cgi", json={"urls": [a]})
        assert r.status_code == 403 and "space" in r.json()["message"]
        await c.post("/file/rm.cgi", json={"files": [{"url": a}]})
        assert (await post(c, await node(c), [("d", b"d" * 600)])).status_code == 302
        emu.set_quota(500)  # lowered under what is stored
        j = (await c.post("/user/info.cgi", json={})).json()
        assert j["overquota"] == 1 and j["available_storage"] == 0
        refused_page(await post(c, await node(c), [("e", b"e")]), "Storage quota exceeded")
        r = await c.post("http://127.0.0.1/_emulator/quota", json={"bytes": 5000})
        assert r.json() == {"status": "OK", "quota": 5000, "used": 1000}
        assert (await post(c, await node(c), [("e", b"e")])).status_code == 302
        assert (await c.get("http://127.0.0.1/_emulator/quota")).json()["used"] == 1001
    emu.close()


def test_cli_quota(tmp_path: Path) -> None:
    """``fichierfs emulator --quota 10k``: user/info reports it, the control route reads it."""
    import os
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-m", "fichierfs", "emulator", "--no-limits", "--quota", "10k",
                             "--state", str(tmp_path / "st")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"FICHIER_API_URL=(.*)/v1", proc.stdout.readline().strip())
        assert m
        with httpx.Client(timeout=10) as c:
            assert c.get(m.group(1) + "/_emulator/quota").json()["quota"] == 10_000
            j = c.post(m.group(1) + "/v1/user/info.cgi", json={}, headers=KEY).json()
            assert j["available_cold_storage"] == 10_000
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
