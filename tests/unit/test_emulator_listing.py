"""Emulator: the 5,000-result cap of folder/ls and file/ls (§2.2, §2.3), file/ls's ``sent_before`` /
``sent_after`` date filters (§2.3) and realistic, distinct upload dates (§7 "Timestamps")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fichierfs.emulator import Emulator, EmulatorConfig
from fichierfs.emulator.state import paris_date

API = "https://api.1fichier.com/v1"
KEY = {"Authorization": "Bearer emu-test"}
T0 = 1_780_000_000.0  # 2026-05-28, summer time in Paris


class Wall:
    """A settable wall clock (upload dates come from it)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, wall: Wall | None = None, **cfg: Any) -> Emulator:
    return Emulator(tmp_path / "state", EmulatorConfig(limits=False, **cfg), wall=wall or Wall())


@pytest.fixture
async def emu(tmp_path: Path) -> AsyncIterator[Emulator]:
    e = make(tmp_path)
    yield e
    e.close()


async def ls(emu: Emulator, ep: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
        return await c.post(f"/{ep}.cgi", json=body)


async def test_cap_5000_file_ls_and_folder_ls(emu: Emulator) -> None:
    """§2.2/§2.3: at most 5 000 results, no pagination; folder/ls counts sub-folders and files together."""
    assert emu.config.max_listing == 5000
    d = emu.make_folder(0, "big")
    emu.make_folder(d, "s1")
    emu.make_folder(d, "s2")
    urls = [emu.put_file(d, f"f{i:05}", b"x") for i in range(5003)]
    j = (await ls(emu, "file/ls", folder_id=d)).json()
    assert j["count"] == 5000 and len(j["items"]) == 5000
    assert [i["url"] for i in j["items"]] == urls[:5000]  # oldest first
    j = (await ls(emu, "folder/ls", folder_id=d, files=1)).json()
    assert len(j["sub_folders"]) == 2 and len(j["items"]) == 4998 and j["files"] == 4998
    j = (await ls(emu, "folder/ls", folder_id=d)).json()
    assert "items" not in j and j["files"] == 4998
    j = (await ls(emu, "file/ls", folder_id=-1)).json()  # the whole account is capped too
    assert j["count"] == 5000
    # under the cap nothing is cut
    emu.remove_file(urls[0])
    emu.remove_file(urls[1])
    emu.remove_file(urls[2])
    j = (await ls(emu, "file/ls", folder_id=d)).json()
    assert j["count"] == 5000 and {i["url"] for i in j["items"]} == set(urls[3:])


async def test_date_filters_strict_bounds(emu: Emulator) -> None:
    """§2.3: sent_before / sent_after filter by upload date (Paris time) and combine; strict bounds."""
    u = [emu.put_file(0, f"f{i}", b"x", date=T0 + 10 * i) for i in range(5)]
    dates = [paris_date(T0 + 10 * i) for i in range(5)]

    async def urls(**body: Any) -> list[str]:
        j = (await ls(emu, "file/ls", folder_id=0, **body)).json()
        assert j["count"] == len(j["items"])
        return [i["url"] for i in j["items"]]

    assert [i["date"] for i in (await ls(emu, "file/ls")).json()["items"]] == dates
    assert await urls(sent_before=dates[2]) == u[:2]
    assert await urls(sent_after=dates[2]) == u[3:]
    assert await urls(sent_after=dates[0], sent_before=dates[4]) == u[1:4]
    assert await urls(sent_after=dates[2], sent_before=dates[3]) == []
    assert await urls(sent_before=paris_date(T0 + 11)) == u[:2]  # any second, not only file dates
    j = (await ls(emu, "file/ls", folder_id=-1, sent_after=dates[3])).json()
    assert [i["url"] for i in j["items"]] == u[4:]
    for bad in ("2026-05-28", "28/05/2026 10:00:00", 12345, "2026-05-28T10:00:00"):
        r = await ls(emu, "file/ls", sent_before=bad)
        assert r.status_code == 403 and r.json()["status"] == "KO" and "sent_before" in r.json()["message"]


async def test_date_filters_inclusive_option(tmp_path: Path) -> None:
    """``date_filter_inclusive`` (the lenient profile): bounds include the files dated exactly at them."""
    emu = make(tmp_path, date_filter_inclusive=True)
    u = [emu.put_file(0, f"f{i}", b"x", date=T0 + 10 * i) for i in range(3)]
    j = (await ls(emu, "file/ls", sent_after=paris_date(T0 + 10), sent_before=paris_date(T0 + 20))).json()
    assert [i["url"] for i in j["items"]] == u[1:]
    emu.close()


async def test_windows_complete_a_folder_over_5000(tmp_path: Path) -> None:
    """§2.3: a client that splits date windows until each holds < 5 000 sees every file of a 7 000-file
    folder (the strategy issue 13 asks of the client works against the emulator)."""
    wall = Wall()
    emu = make(tmp_path, wall)
    d = emu.make_folder(0, "photos")
    want = set()
    for i in range(7_000):
        wall.t = T0 + i * 0.004  # a fast uploader: many files per second
        want.add(emu.put_file(d, f"p{i}", b"x"))
    seen: dict[str, dict[str, Any]] = {}
    calls = 0

    async def window(after: float, before: float) -> None:
        nonlocal calls
        calls += 1
        j = (await ls(emu, "file/ls", folder_id=d, sent_after=paris_date(after), sent_before=paris_date(before))
             ).json()
        if j["count"] < 5000:
            seen.update((i["url"], i) for i in j["items"])
            return
        mid = after + (before - after) // 2
        await window(after, mid + 1)  # strict bounds: windows overlap by one second
        await window(mid - 1, before)

    await window(T0 - 10, T0 + 7_000 * 0.01 + 10)  # dates spread by upload_date_spacing
    assert set(seen) == want and calls >= 3
    # no displayed second holds more than 1 / upload_date_spacing files
    per_second: dict[str, int] = {}
    for item in seen.values():
        per_second[item["date"]] = per_second.get(item["date"], 0) + 1
    assert max(per_second.values()) <= 101
    emu.close()


async def test_upload_dates_are_spaced(tmp_path: Path) -> None:
    """§7: ``date`` is the upload time; files stored in the same instant still get increasing dates,
    ``upload_date_spacing`` apart (1.0 gives distinct displayed seconds)."""
    emu = make(tmp_path, upload_date_spacing=1.0)
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
        node = (await c.post("/upload/get_upload_server.cgi", json={})).json()
        r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}",
                         files=[("file[]", (f"u{i}", b"u")) for i in range(4)])
        assert r.status_code == 302
    emu.put_file(0, "p", b"p")
    dates = [f["date"] for f in emu.list_files(0)]
    assert dates == [paris_date(T0 + i) for i in range(5)]
    emu.close()
    emu = make(tmp_path)  # after a restart new files still come after the last one
    emu.put_file(0, "q", b"q")
    assert emu.list_files(0)[-1]["date"] == paris_date(T0 + 4)  # + 0.01 s: same displayed second
    emu.close()


async def test_seeded_dates_distinct_and_past(tmp_path: Path) -> None:
    """Seeded files get distinct whole-second dates in the past; a second seed of the same tree (the
    same modification times) takes the free seconds before them, so dates stay distinct across seeds."""
    src = tmp_path / "src"
    for k in range(4):
        (src / f"d{k}").mkdir(parents=True)
        for i in range(30):
            (src / f"d{k}" / f"f{i}").write_bytes(b"x")
    (src / "top").write_bytes(b"t")
    emu = make(tmp_path)
    emu.seed(src)
    emu.seed(src, emu.make_folder(0, "again"))
    files = emu.list_files(-1)
    assert len(files) == 242
    dates = [f["date"] for f in files]
    assert len(set(dates)) == 242 and all(d < paris_date(T0) for d in dates)
    assert dates == sorted(dates)  # listings are oldest first
    emu.close()


async def test_seeded_files_carry_their_own_modification_dates(tmp_path: Path) -> None:
    """A seeded file is dated by its modification time (a photo taken in 2019 shows 2019, not
    "a few minutes ago"); two files of one second get neighbouring seconds; a file from the future
    is dated before now."""
    import os

    src = tmp_path / "src"
    src.mkdir()
    plan = {"2019.jpg": 1_556_700_000.4, "2021a.jpg": 1_629_000_000.0, "2021b.jpg": 1_629_000_000.9,
            "future.jpg": T0 + 86_400}
    for name, mtime in plan.items():
        (src / name).write_bytes(b"j")
        os.utime(src / name, (mtime, mtime))
    emu = make(tmp_path)
    emu.seed(src)
    got = {f["filename"]: f["date"] for f in emu.list_files(0)}
    assert got["2019.jpg"] == paris_date(1_556_700_000)
    assert sorted([got["2021a.jpg"], got["2021b.jpg"]]) == [paris_date(1_629_000_000 - 1), paris_date(1_629_000_000)]
    assert got["future.jpg"] == paris_date(T0 - 1)
    emu.close()
