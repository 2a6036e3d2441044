"""Emulator: upload.cgi with many ``file[]`` parts (§6), per-file and whole-POST refusals, the 500-file,
500 GB, 300 GB and 4 h caps (§6 Limits), stored bytes in user/info (§2.1) and the quota (§2.1, §6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import whirlpool

from fichierfs.emulator import Emulator, EmulatorConfig

API = "https://api.1fichier.com/v1"
KEY = {"Authorization": "Bearer emu-test"}


def make(tmp_path: Path, **cfg: Any) -> Emulator:
    return Emulator(tmp_path / "state", EmulatorConfig(**{"limits": False, **cfg}), clock=trio.current_time)


@pytest.fixture
async def env(tmp_path: Path, autojump_clock: Any) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    emu = make(tmp_path, max_file_size=1000, max_upload_size=2500)
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
        yield emu, c
    emu.close()


async def node(c: httpx.AsyncClient) -> dict[str, str]:
    r = await c.get("/upload/get_upload_server.cgi", headers={"Content-Type": "application/json"})
    return {"url": r.json()["url"], "id": r.json()["id"]}


async def post(c: httpx.AsyncClient, n: dict[str, str], files: list[tuple[str, bytes]],
               did: int | None = None) -> httpx.Response:
    data = {} if did is None else {"did": str(did)}
    return await c.post(f"https://{n['url']}/upload.cgi?id={n['id']}",
                        files=[("file[]", (name, b)) for name, b in files], data=data)


async def report(c: httpx.AsyncClient, n: dict[str, str]) -> dict[str, Any]:
    r = await c.get(f"https://{n['url']}/end.pl?xid={n['id']}", headers={"JSON": "1"})
    return r.json()  # type: ignore[no-any-return]


async def user_info(c: httpx.AsyncClient) -> dict[str, Any]:
    return (await c.post("/user/info.cgi", json={})).json()  # type: ignore[no-any-return]


def refused_page(r: httpx.Response, text: str) -> None:
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r
    assert text in r.text, r.text


async def test_many_files_one_report(env: Any, autojump_clock: Any) -> None:
    """§6: one POST, many ``file[]`` parts, one end.pl report listing them all (in part order)."""
    emu, c = env
    d = emu.make_folder(0, "D")
    n = await node(c)
    files = [(f"f{i}.txt", bytes([65 + i]) * (i + 1)) for i in range(20)]
    r = await post(c, n, files, did=d)
    assert r.status_code == 302
    links = (await report(c, n))["links"]
    assert [(lk["filename"], lk["size"], lk["whirlpool"]) for lk in links] == [
        (name, str(len(b)), whirlpool.new(b).hexdigest()) for name, b in files]
    assert [f["filename"] for f in emu.list_files(d)] == [name for name, _ in files]
    assert emu.stats()["calls"]["upload.cgi"] == 1 and emu.stats()["bytes_up"] == sum(len(b) for _, b in files)


async def test_per_file_refusals(env: Any, autojump_clock: Any) -> None:
    """A refused file (empty §8.8, over 300 GB §6, a name 1fichier refuses §7) is absent from the report
    while the others of the same POST are stored."""
    emu, c = env
    n = await node(c)
    r = await post(c, n, [("ok1", b"1"), ("empty", b""), ("big", b"b" * 1001), ("bad$name", b"2"),
                          (" lead", b"3"), ("ok2", b"22")])
    assert r.status_code == 302
    assert [lk["filename"] for lk in (await report(c, n))["links"]] == ["ok1", "ok2"]
    assert [f["filename"] for f in emu.list_files(0)] == ["ok1", "ok2"]
    assert emu.stats()["refused_files"] == 4
    # every file refused: the first refusal's page, nothing stored, the id stays usable
    n = await node(c)
    refused_page(await post(c, n, [("empty", b""), ("x$", b"1")]), "Empty file")
    assert "Pas de fichier" in (await c.get(f"https://{n['url']}/end.pl?xid={n['id']}", headers={"JSON": "1"})).text
    assert (await post(c, n, [("later", b"1")])).status_code == 302
    refused_page(await post(c, await node(c), [("big", b"b" * 1001)]), "File too big")
    refused_page(await post(c, await node(c), [("a/b", b"1")]), "Invalid file name")


async def test_whole_post_caps(env: Any, autojump_clock: Any) -> None:
    """§6 Limits: more than 500 files, or more than 500 GB in one POST, refuse the whole POST."""
    emu, c = env
    refused_page(await post(c, await node(c), [(f"f{i}", b"1") for i in range(501)]), "Upload refused")
    refused_page(await post(c, await node(c), [("a", b"a" * 900), ("b", b"b" * 900), ("c", b"c" * 900)]),
                 "Upload too big")
    assert emu.list_files(-1) == []
    n = await node(c)
    assert (await post(c, n, [(f"f{i}", b"1") for i in range(500)])).status_code == 302
    assert len((await report(c, n))["links"]) == 500
    n = await node(c)
    assert (await post(c, n, [("a", b"a" * 900), ("b", b"b" * 900)])).status_code == 302


async def test_upload_duration_cap(env: Any, autojump_clock: Any) -> None:
    """§6: one upload process may run at most 4 h, from get_upload_server's id to the end of the POST."""
    emu, c = env
    n = await node(c)
    await trio.sleep(4 * 3600 + 1)
    refused_page(await post(c, n, [("late", b"1")]), "4 h")
    refused_page(await post(c, n, [("late", b"1")]), "Invalid upload id")  # the id is spent
    # a slow body that ends past the cap is refused too; one that ends in time is stored
    for total, ok in ((4 * 3600 - 60, True), (4 * 3600 + 60, False)):
        n = await node(c)
        boundary = "xyzzy"
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file[]"; filename="slow{ok}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        chunks = [head] + [b"s" * 10] * 10 + [tail]

        async def body(chunks: list[bytes] = chunks, total: float = total) -> AsyncIterator[bytes]:
            for ch in chunks:
                await trio.sleep(total / len(chunks))
                yield ch

        r = await c.post(f"https://{n['url']}/upload.cgi?id={n['id']}", content=body(),
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                  "Content-Length": str(sum(map(len, chunks)))})
        if ok:
            assert r.status_code == 302
        else:
            refused_page(r, "4 h")
    assert [f["filename"] for f in emu.list_files(0)] == ["slowTrue"]


async def test_user_info_counts_stored_bytes(tmp_path: Path, autojump_clock: Any) -> None:
    """§2.1: cold_storage / hot_storage count every account file (seeded too) and move with uploads,
    copies and deletes at once; anonymous uploads do not count."""
    src = tmp_path / "seed"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(b"a" * 100)
    (src / "sub" / "b").write_bytes(b"b" * 50)
    emu = make(tmp_path, quota=10_000)
    emu.seed(src)
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
        j = await user_info(c)
        assert j["cold_storage"] == j["hot_storage"] == 150
        assert j["available_storage"] == 10_000 - 150 and j["available_cold_storage"] == 10_000
        n = await node(c)
        assert (await post(c, n, [("u1", b"u" * 1000), ("u2", b"v" * 7)])).status_code == 302
        links = (await report(c, n))["links"]
        assert (await user_info(c))["cold_storage"] == 1157
        r = await c.post("/file/cp.cgi", json={"urls": [links[0]["download"]], "folder_id": 0})
        assert r.json()["copied"] == 1
        assert (await user_info(c))["hot_storage"] == 2157
        await c.post("/file/rm.cgi", json={"files": [{"url": lk["download"]} for lk in links]})
        assert (await user_info(c))["cold_storage"] == 1150
        async with httpx.AsyncClient(transport=emu.transport(), base_url=API) as anon:
            n = await node(anon)
            assert (await post(anon, n, [("anon", b"z" * 500)])).status_code == 302
        j = await user_info(c)
        assert j["cold_storage"] == 1150 and j["upload_forbidden"] == "0" and j["overquota"] == 0
    emu.close()
