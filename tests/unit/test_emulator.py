"""Tests of the 1fichier emulator with raw httpx (no fichierfs client), under trio's MockClock.

Each test cites the section of docs/1fichier-api.md it checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import whirlpool

from fichierfs.emulator import ENDPOINTS, Emulator, EmulatorConfig

API = "https://api.1fichier.com/v1"
KEY = {"Authorization": "Bearer emu-test"}
FLOOD = "Flood detected: IP Locked #412"
FLOOD_INFO = "Flood detected: IP Locked #38"
REPO = Path(__file__).resolve().parents[2]


def make(tmp_path: Path, **cfg: Any) -> Emulator:
    return Emulator(tmp_path / "state", EmulatorConfig(**cfg), clock=trio.current_time)


def client(emu: Emulator, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY, **kw)


@pytest.fixture
async def env(tmp_path: Path, autojump_clock: Any) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    """Limits off: for behaviour tests."""
    emu = make(tmp_path, limits=False)
    async with client(emu) as c:
        yield emu, c
    emu.close()


@pytest.fixture
async def lenv(tmp_path: Path, autojump_clock: Any) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    """Limits on, real durations (MockClock autojumps the sleeps)."""
    emu = make(tmp_path)
    async with client(emu) as c:
        yield emu, c
    emu.close()


async def call(c: httpx.AsyncClient, ep: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return await c.post(f"/{ep}.cgi", json={} if body is None else body)


async def upload(c: httpx.AsyncClient, files: list[tuple[str, bytes]], did: int | None = None,
                 follow: bool = False) -> tuple[httpx.Response, dict[str, str]]:
    """§6 legs 1 and 2 (GET get_upload_server with the JSON content type, as rclone does)."""
    node = (await c.get("/upload/get_upload_server.cgi", headers={"Content-Type": "application/json"})).json()
    data = {} if did is None else {"did": str(did)}
    r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}",
                     files=[("file[]", (n, b)) for n, b in files], data=data, follow_redirects=follow)
    return r, node


async def end_pl(c: httpx.AsyncClient, node: dict[str, str]) -> httpx.Response:
    return await c.get(f"https://{node['url']}/end.pl?xid={node['id']}", headers={"JSON": "1"})


async def put(c: httpx.AsyncClient, name: str, data: bytes, did: int | None = None) -> dict[str, str]:
    r, node = await upload(c, [(name, data)], did)
    assert r.status_code == 302
    return (await end_pl(c, node)).json()["links"][0]


# --------------------------------------------------------------------------------------------------------
# Routes and JSON types (§2, §8)
# --------------------------------------------------------------------------------------------------------
async def test_user_info_types(env: Any, autojump_clock: Any) -> None:
    """§2.1: rclone's strict types; about = cold_storage / available_cold_storage."""
    emu, c = env
    emu.put_file(0, "a.bin", b"x" * 1000)
    r = await c.post("/user/info.cgi", headers={"Content-Type": "application/json"})  # no body, like rclone
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    j = r.json()
    for k in ("mail_rm", "upload_forbidden", "use_cdn", "default_port", "download_menu", "default_port_files",
              "ftp_report", "cdn", "offer", "subscription_end", "2fa", "ftp_mode", "ru_report", "stats_date",
              "email", "status"):
        assert isinstance(j[k], str), k
    for k in ("default_quota", "page_limit", "cold_storage", "available_cold_storage", "default_domain",
              "ftp_did", "overquota", "available_storage", "allowed_cold_storage", "hot_storage",
              "default_cold_storage_quota"):
        assert isinstance(j[k], int) and not isinstance(j[k], bool), k
    assert j["status"] == "OK"
    assert j["cold_storage"] == j["hot_storage"] == 1000
    assert j["available_cold_storage"] == 1 << 40
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", j["subscription_end"])


async def test_listing_types(env: Any, autojump_clock: Any) -> None:
    """§2.2/§2.3/§2.4: int fields, ``id`` for sub-folders, hyphenated content-type, both spellings in info."""
    emu, c = env
    r = await call(c, "folder/mkdir", {"name": "Docs"})
    mk = r.json()
    assert mk["status"] == "OK" and isinstance(mk["folder_id"], int) and mk["name"] == "Docs"
    link = await put(c, "a.txt", b"hello", did=mk["folder_id"])

    root = (await call(c, "folder/ls", {"folder_id": 0})).json()
    assert root["folder_id"] == 0 and root["name"] == "Root" and root["status"] == "OK"
    assert "items" not in root
    sub = root["sub_folders"][0]
    assert set(sub) == {"id", "name", "create_date", "pass"}
    assert isinstance(sub["id"], int) and isinstance(sub["pass"], int) and sub["name"] == "Docs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", sub["create_date"])

    fl = (await call(c, "folder/ls", {"folder_id": mk["folder_id"], "files": 1})).json()
    assert isinstance(fl["folder_id"], int) and fl["sub_folders"] == [] and fl["files"] == 1
    item = fl["items"][0]
    ls = (await call(c, "file/ls", {"folder_id": mk["folder_id"]})).json()
    assert ls["status"] == "OK" and ls["count"] == 1 and ls["items"] == [item]
    for k in ("size", "pass", "acl", "cdn"):
        assert isinstance(item[k], int), k
    for k in ("url", "filename", "date", "checksum", "content-type"):
        assert isinstance(item[k], str), k
    assert item["size"] == 5 and item["url"] == link["download"]
    assert item["checksum"] == whirlpool.new(b"hello").hexdigest()
    assert re.fullmatch(r"https://1fichier\.com/\?[a-z0-9]{20}", item["url"])

    info = (await call(c, "file/info", {"url": item["url"]})).json()
    assert info["content_type"] == info["content-type"] == "text/plain"
    assert info["folder_id"] == mk["folder_id"] and info["path"] == "Docs" and info["size"] == 5
    assert isinstance(info["acl"], dict)
    by_name = (await call(c, "file/info", {"folder_id": mk["folder_id"], "filename": "a.txt"})).json()
    assert by_name["url"] == item["url"]
    assert (await call(c, "file/info", {"folder_id": mk["folder_id"], "filename": "A.txt"})).status_code == 404

    allf = (await call(c, "file/ls", {"folder_id": -1})).json()
    assert [i["url"] for i in allf["items"]] == [item["url"]]


async def test_dates_are_paris_wall_time(tmp_path: Path, autojump_clock: Any) -> None:
    """§7: dates from the wall clock in Europe/Paris (winter: UTC+1, summer: UTC+2)."""
    emu = Emulator(tmp_path / "s", EmulatorConfig(limits=False), clock=trio.current_time,
                   wall=lambda: 1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    url = emu.put_file(0, "w.bin", b"1")
    assert emu.list_files(0)[0]["date"] == "2023-11-14 23:13:20"
    emu.wall = lambda: 1_690_000_000.0  # 2023-07-22 04:26:40 UTC
    async with client(emu) as c:
        info = (await call(c, "file/info", {"url": url})).json()
        assert info["date"] == "2023-11-14 23:13:20"
    emu.close()


async def test_auth_and_content_type(env: Any, autojump_clock: Any) -> None:
    """§1, §3: #24 without status; No such user #93; Not authenticated; #200; upload server needs no key."""
    emu, c = env
    r = await c.post("/file/ls.cgi", content=b"{}")
    assert r.status_code == 403 and r.json() == {"message": "Content-Type not JSON #24"}
    r = await c.post("/file/ls.cgi", json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and r.json() == {"status": "KO", "message": "No such user #93"}
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API) as anon:
        r = await anon.post("/file/ls.cgi", json={})
        assert r.status_code == 403 and r.json()["status"] == "KO"
        assert re.fullmatch(r"Not authenticated #\d{1,3}", r.json()["message"])
        r = await anon.post("/upload/get_upload_server.cgi", json={})
        assert r.status_code == 200 and set(r.json()) == {"url", "id"}
    r = await c.post("/file/ls.cgi", json={}, headers={"Authorization": "Bearer emu-free-1"})
    assert r.json()["message"] == "Must be a customer (Premium, Access) #200"
    assert (await c.get("/file/ls.cgi")).status_code == 405
    r = await c.post("/file/ls.cgi", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 403 and r.json()["status"] == "KO"


async def test_pretty(env: Any, autojump_clock: Any) -> None:
    """§1: ``pretty:1`` indents."""
    _, c = env
    assert "\n" in (await call(c, "file/ls", {"pretty": 1})).text
    assert "\n" not in (await call(c, "file/ls", {})).text


async def test_get_upload_server_and_token_urls(env: Any, autojump_clock: Any) -> None:
    """§6 step 1 and §2.15 URL shapes, on the real domain and on a loopback host."""
    emu, c = env
    j = (await c.post("/upload/get_upload_server.cgi", json={})).json()
    assert j["url"] == "up2.1fichier.com" and re.fullmatch(r"[A-Za-z0-9]{10}", j["id"])
    j2 = (await c.get("/upload/get_upload_server.cgi", headers={"Content-Type": "application/json"})).json()
    assert j2["id"] != j["id"]
    r = await c.get("/upload/get_upload_server.cgi")
    assert r.json() == {"message": "Content-Type not JSON #24"}
    url = emu.put_file(0, "f", b"1")
    tok = (await call(c, "download/get_token", {"url": url, "single": 1})).json()
    assert tok["status"] == "OK" and re.fullmatch(r"https://a-1\.1fichier\.com/p\d+", tok["url"])
    local = "http://127.0.0.1:8123/v1"
    j = (await c.post(f"{local}/upload/get_upload_server.cgi", json={})).json()
    assert j["url"] == "127.0.0.1:8123"
    tok = (await c.post(f"{local}/download/get_token.cgi", json={"url": url})).json()
    assert re.fullmatch(r"http://127\.0\.0\.1:8123/p\d+", tok["url"])


# --------------------------------------------------------------------------------------------------------
# Mutations (§2.5–§2.14, §7)
# --------------------------------------------------------------------------------------------------------
async def test_folder_ops(env: Any, autojump_clock: Any) -> None:
    """§2.11–§2.13 and §7 names."""
    emu, c = env
    a = (await call(c, "folder/mkdir", {"name": "A"})).json()["folder_id"]
    b = (await call(c, "folder/mkdir", {"name": "B", "folder_id": a})).json()["folder_id"]
    assert (await call(c, "folder/mkdir", {"name": "a"})).json()["status"] == "OK"  # case-sensitive
    dup = await call(c, "folder/mkdir", {"name": "A"})
    assert dup.status_code == 403 and dup.json()["status"] == "KO"
    for bad in ("x\\y", "x<y", "x>y", 'x"y', "x'y", "x$y", "x`y", "x/y", " lead", "x\u00b4", "n" * 251, ""):
        r = await call(c, "folder/mkdir", {"name": bad})
        assert r.json()["status"] == "KO", bad
    assert (await call(c, "folder/mkdir", {"name": "n" * 250})).json()["status"] == "OK"
    assert (await call(c, "folder/mkdir", {"name": "x", "folder_id": 999})).status_code == 404
    # folder/rm refuses a non-empty folder
    r = await call(c, "folder/rm", {"folder_id": a})
    assert r.status_code == 403 and r.json()["status"] == "KO"
    # folder/mv: rename ignores destination (§2.13)
    r = await call(c, "folder/mv", {"folder_id": b, "destination_folder_id": 0, "rename": "B2"})
    assert r.json() == {"status": "OK", "old_name": "B", "new_name": "B2"}
    assert [f["name"] for f in emu.list_folders(a)] == ["B2"]
    # without rename it moves; absent destination = root
    r = await call(c, "folder/mv", {"folder_id": b})
    assert r.json()["status"] == "OK" and b in [f["id"] for f in emu.list_folders(0)]
    r = await call(c, "folder/mv", {"folder_id": a, "destination_folder_id": a})
    assert r.json()["status"] == "KO"
    assert (await call(c, "folder/rm", {"folder_id": a})).json()["status"] == "OK"
    assert (await call(c, "folder/ls", {"folder_id": a})).status_code == 404
    r = await call(c, "folder/share", {"folder_id": b, "share": 1})
    assert r.json()["url"] == f"https://1fichier.com/dir/{b}"


async def test_folder_mv_rename_moves_option(tmp_path: Path, autojump_clock: Any) -> None:
    """§2.13 alternative reading (what rclone's one-call DirMove assumes)."""
    emu = make(tmp_path, limits=False, folder_mv_rename_moves=True)
    a = emu.make_folder(0, "A")
    b = emu.make_folder(0, "B")
    async with client(emu) as c:
        r = await call(c, "folder/mv", {"folder_id": b, "destination_folder_id": a, "rename": "C"})
        assert r.json()["status"] == "OK"
    assert emu.list_folders(a) == [{"id": b, "name": "C", "parent": a}]
    emu.close()


async def test_file_ops(env: Any, autojump_clock: Any) -> None:
    """§2.5–§2.10, §7 (URL kept by mv, new URL by cp, #312, same-name move refused, 404 #469)."""
    emu, c = env
    d = emu.make_folder(0, "D")
    u1 = emu.put_file(0, "one.txt", b"1111")
    u2 = emu.put_file(0, "two.txt", b"22")
    # mv keeps URLs; rename only with one url; same name refused
    r = await call(c, "file/mv", {"urls": [u1, u2], "destination_folder_id": d})
    assert r.json() == {"status": "OK", "moved": 2, "urls": [u1, u2]}
    assert (await call(c, "file/mv", {"urls": [u1, u2], "destination_folder_id": 0, "rename": "z"})
            ).json()["status"] == "KO"
    r = await call(c, "file/mv", {"urls": [u1], "destination_folder_id": 0, "rename": "one.txt"})
    assert r.status_code == 403 and r.json()["status"] == "KO"
    r = await call(c, "file/mv", {"urls": [u1], "destination_folder_id": 0, "rename": "uno.txt"})
    assert r.json() == {"status": "OK", "moved": 1, "urls": [u1], "filename": "uno.txt"}
    assert (await call(c, "file/mv", {"urls": [u1]})).json()["status"] == "KO"  # destination required
    # rename
    r = await call(c, "file/rename", {"urls": [{"url": u1, "filename": "uno.txt"}]})
    assert r.status_code == 403 and r.json() == {"status": "KO", "message": "No file has been renamed #312"}
    r = await call(c, "file/rename", {"urls": [{"url": u1, "filename": "eins.txt"}], "pretty": 0})
    assert r.json() == {"status": "OK", "renamed": 1,
                        "urls": [{"url": u1, "old_filename": "uno.txt", "new_filename": "eins.txt"}]}
    assert (await call(c, "file/rename", {"urls": [{"url": u1, "filename": "a$b"}]})).json()["status"] == "KO"
    # cp: new URL
    r = (await call(c, "file/cp", {"urls": [u1], "folder_id": d, "rename": "copy.txt"})).json()
    assert r["status"] == "OK" and r["copied"] == 1 and r["filename"] == "copy.txt"
    to = r["urls"][0]["to_url"]
    assert r["urls"][0]["from_url"] == u1 and to != u1 and emu.read_file(to) == b"1111"
    # chattr
    r = (await call(c, "file/chattr", {"urls": [u1, to], "description": "hi", "cdn": 1})).json()
    assert r == {"status": "OK", "updated": 2, "urls": [u1, to]}
    assert (await call(c, "file/chattr", {"urls": [u1], "pass": "123"})).json()["status"] == "KO"
    assert (await call(c, "file/chattr", {"urls": [u1, to], "filename": "x"})).json()["status"] == "KO"
    info = (await call(c, "file/info", {"url": to})).json()
    assert info["description"] == "hi" and info["cdn"] == 1
    assert (await call(c, "file/scan", {"url": to})).json()["status"] == "OK"
    # rm
    r = (await call(c, "file/rm", {"files": [{"url": u1}, {"url": to}]})).json()
    assert r == {"status": "OK", "removed": 2, "urls": [u1, to]}
    r = await call(c, "file/info", {"url": u1})
    assert r.status_code == 404 and r.json() == {"status": "KO", "message": "Resource not found #469"}
    assert (await call(c, "file/rm", {"files": [{"url": u1}]})).status_code == 404
    # remote/* (minimal)
    rq = (await call(c, "remote/request", {"urls": ["https://example.invalid/x"], "folder_id": 0})).json()
    assert rq["status"] == "OK"
    assert (await call(c, "remote/ls")).json()["data"][0]["id"] == rq["id"]
    assert (await call(c, "remote/info", {"id": rq["id"]})).json()["execution_date"] == ""


# --------------------------------------------------------------------------------------------------------
# Limits (§2.1–§2.3, §3, §4)
# --------------------------------------------------------------------------------------------------------
async def test_rate_limit_lock_and_extension(lenv: Any, autojump_clock: Any) -> None:
    """§4 3 req/s → #412, lock 60 s, calls during the lock extend it."""
    emu, c = lenv
    for _ in range(3):
        assert (await call(c, "remote/ls")).status_code == 200
    r = await call(c, "remote/ls")
    assert r.status_code == 403 and r.json() == {"status": "KO", "message": FLOOD}
    assert emu.stats()["flood_locks"] == 1
    await trio.sleep(59)
    assert (await call(c, "remote/ls")).json()["message"] == FLOOD  # extends to now + 60
    await trio.sleep(59)
    assert (await call(c, "remote/ls")).json()["message"] == FLOOD  # still locked; extends again
    await trio.sleep(61)
    assert (await call(c, "remote/ls")).status_code == 200
    assert emu.stats()["flood_locks"] == 1
    # spaced calls never flood
    for _ in range(8):
        await trio.sleep(0.34)
        assert (await call(c, "remote/ls")).status_code == 200


async def test_same_folder_limit(lenv: Any, autojump_clock: Any) -> None:
    """§2.2/§2.3: same folder at most once per 30 s (folder/ls and file/ls together)."""
    emu, c = lenv
    assert (await call(c, "file/ls", {"folder_id": 0})).status_code == 200
    await trio.sleep(10)
    assert (await call(c, "folder/ls", {"folder_id": 0})).json()["message"] == FLOOD
    await trio.sleep(61)
    assert (await call(c, "folder/ls", {"folder_id": 0})).status_code == 200
    assert emu.stats()["flood_locks"] == 1


async def test_listing_spacing(lenv: Any, autojump_clock: Any) -> None:
    """§4: about one listing every 3 s overall."""
    emu, c = lenv
    a = emu.make_folder(0, "A")
    assert (await call(c, "file/ls", {"folder_id": 0})).status_code == 200
    await trio.sleep(1)
    assert (await call(c, "file/ls", {"folder_id": a})).json()["message"] == FLOOD
    await trio.sleep(61)
    assert (await call(c, "file/ls", {"folder_id": a})).status_code == 200
    await trio.sleep(3)
    assert (await call(c, "folder/ls", {"folder_id": 0})).status_code == 200


async def test_all_files_limit(lenv: Any, autojump_clock: Any) -> None:
    """§2.3: file/ls folder_id -1 at most once per hour."""
    emu, c = lenv
    assert (await call(c, "file/ls", {"folder_id": -1})).status_code == 200
    await trio.sleep(600)
    assert (await call(c, "file/ls", {"folder_id": -1})).json()["message"] == FLOOD
    await trio.sleep(3000 + 61)
    assert (await call(c, "file/ls", {"folder_id": -1})).status_code == 200


async def test_user_info_limit(lenv: Any, autojump_clock: Any) -> None:
    """§2.1: user/info at most once per 5 min; a crossing answers #38 (§3 [jd2019])."""
    emu, c = lenv
    assert (await call(c, "user/info")).status_code == 200
    await trio.sleep(200)
    assert (await call(c, "user/info")).json()["message"] == FLOOD_INFO
    await trio.sleep(301)
    assert (await call(c, "user/info")).status_code == 200


async def test_time_scale_and_lock_scope(tmp_path: Path, autojump_clock: Any) -> None:
    """time_scale shrinks the windows; downloads, upload.cgi and end.pl ignore locks (§2.1, §4), but
    get_upload_server is an API call."""
    emu = make(tmp_path, time_scale=0.01)
    url = emu.put_file(0, "f.bin", b"abc")
    async with client(emu) as c:
        tok = (await call(c, "download/get_token", {"url": url})).json()["url"]
        node = (await c.post("/upload/get_upload_server.cgi", json={})).json()
        assert (await call(c, "user/info")).status_code == 200
        await trio.sleep(0.02)  # out of the scaled 3/s window
        assert (await call(c, "user/info")).json()["message"] == FLOOD_INFO
        assert (await c.post("/upload/get_upload_server.cgi", json={})).json()["message"] == FLOOD_INFO
        assert (await c.get(tok)).content == b"abc"
        r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}", files=[("file[]", ("n", b"1"))])
        assert r.status_code == 302
        assert (await end_pl(c, node)).json()["links"][0]["filename"] == "n"
        await trio.sleep(0.61)  # 60 s * 0.01
        await trio.sleep(3.0)  # user/info window 300 s * 0.01
        assert (await call(c, "user/info")).status_code == 200
    emu.close()


async def test_limits_off_and_lock_for(env: Any, autojump_clock: Any) -> None:
    emu, c = env
    for _ in range(10):
        assert (await call(c, "file/ls")).status_code == 200
    emu.lock_for(5)
    assert (await call(c, "file/ls")).json()["message"] == FLOOD
    assert emu.stats()["flood_locks"] == 1
    await trio.sleep(65)
    assert (await call(c, "file/ls")).status_code == 200


# --------------------------------------------------------------------------------------------------------
# Upload (§6)
# --------------------------------------------------------------------------------------------------------
async def test_upload_three_legs(env: Any, autojump_clock: Any) -> None:
    """§6: 302 to /end.pl, end.pl JSON with the header and HTML without, repeatable; duplicates allowed."""
    emu, c = env
    d = emu.make_folder(0, "D")
    r, node = await upload(c, [("x.bin", b"data1"), ("x.bin", b"data22")], did=d, follow=True)
    # like rclone: the redirect is followed without the JSON header and gives HTML
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.history[0].status_code == 302 and r.history[0].headers["location"] == f"/end.pl?xid={node['id']}"
    for _ in range(2):
        j = (await end_pl(c, node)).json()
        assert j["incoming"] == 0 and len(j["links"]) == 2
    lk = j["links"][1]
    assert set(lk) == {"download", "filename", "remove", "size", "whirlpool"}
    assert lk["size"] == "6" and isinstance(lk["size"], str) and lk["remove"] == ""
    assert lk["whirlpool"] == whirlpool.new(b"data22").hexdigest()
    assert re.fullmatch(r"https://1fichier\.com/\?[a-z0-9]{20}", lk["download"])
    names = [f["filename"] for f in emu.list_files(d)]
    assert names == ["x.bin", "x.bin"]  # duplicates allowed, nothing overwritten (§7)
    assert emu.read_file(lk["download"]) == b"data22"
    assert emu.stats()["bytes_up"] == 11
    # the same id cannot be reused
    r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}", files=[("file[]", ("y", b"1"))])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    # an invalid did puts the file in the root (§6)
    link = await put(c, "r.bin", b"r", did=424242)
    assert [f["url"] for f in emu.list_files(0)] == [link["download"]]


async def test_upload_refusals(env: Any, autojump_clock: Any) -> None:
    """§6: empty file refused, unknown id refused, Content-Length required, 500-file cap, bad names (§7)."""
    emu, c = env

    async def refused(r: httpx.Response) -> None:
        assert r.status_code != 302 and r.headers["content-type"].startswith("text/html")

    r, node = await upload(c, [("empty", b"")])
    await refused(r)
    assert "Pas de fichier" in (await c.get(f"https://{node['url']}/end.pl?xid={node['id']}",
                                             headers={"JSON": "1"})).text
    r = await c.post("https://up2.1fichier.com/upload.cgi?id=AAAAAAAAAA", files=[("file[]", ("a", b"1"))])
    await refused(r)
    r, _ = await upload(c, [("a$b", b"1")])
    await refused(r)
    node = (await c.post("/upload/get_upload_server.cgi", json={})).json()
    r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}", data={"did": "0"})
    await refused(r)
    assert "Pas de fichier" in r.text

    async def chunked() -> AsyncIterator[bytes]:
        yield b"--b\r\nContent-Disposition: form-data; name=\"file[]\"; filename=\"c\"\r\n\r\nx\r\n--b--\r\n"

    r = await c.post(f"https://{node['url']}/upload.cgi?id={node['id']}", content=chunked(),
                     headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 411
    r, _ = await upload(c, [(f"f{i}", b"1") for i in range(501)])
    await refused(r)
    assert emu.list_files(-1) == []
    r, node = await upload(c, [(f"f{i}", b"1") for i in range(500)])
    assert r.status_code == 302 and len((await end_pl(c, node)).json()["links"]) == 500


async def test_anonymous_upload(env: Any, autojump_clock: Any) -> None:
    """§6: without a key the file is not in the account and gets a removal code."""
    emu, c = env
    async with httpx.AsyncClient(transport=emu.transport(), base_url=API) as anon:
        r, node = await upload(anon, [("anon", b"1")], did=0)
        lk = (await end_pl(anon, node)).json()["links"][0]
    assert lk["remove"] != ""
    assert emu.list_files(-1) == []
    assert (await call(c, "file/rm", {"files": [{"url": lk["download"], "code": lk["remove"]}]})
            ).json()["removed"] == 1


def test_large_parts_are_spooled_to_disk() -> None:
    """Brief: ≥256 MiB uploads must not be held in memory; Starlette rolls parts over 1 MiB to disk."""
    from starlette.formparsers import MultiPartParser

    assert MultiPartParser.spool_max_size <= 256 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# Download tokens (§5)
# --------------------------------------------------------------------------------------------------------
async def test_token_ranges_and_headers(env: Any, autojump_clock: Any) -> None:
    emu, c = env
    data = bytes(range(256)) * 40
    url = emu.put_file(0, "é b.bin", data)
    tok = (await call(c, "download/get_token", {"url": url})).json()["url"]
    r = await c.head(tok)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""
    for h in ("etag", "last-modified", "content-disposition"):
        assert h in r.headers
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-type"] == "application/octet-stream"
    assert "filename*=UTF-8''%C3%A9%20b.bin" in r.headers["content-disposition"]
    r = await c.get(tok, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}" and r.headers["content-length"] == "100"
    r = await c.get(tok, headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == data[10000:]
    r = await c.get(tok, headers={"Range": "bytes=-5"})
    assert r.content == data[-5:]
    r = await c.get(tok, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    r = await c.get(tok)
    assert r.status_code == 200 and r.content == data
    assert emu.stats()["bytes_down"] == 100 + 240 + 5 + len(data)
    assert (await c.get(tok.rsplit("/", 1)[0] + "/p1")).headers["content-type"].startswith("text/html")
    assert (await call(c, "download/get_token", {"url": "https://1fichier.com/?zzzzzzzzzz"})).status_code == 404


async def test_token_validity(env: Any, autojump_clock: Any) -> None:
    """§5: 5 min validity; single:1 = one GET; single:0 reusable; recovery for 30 min after a started GET."""
    emu, c = env
    url = emu.put_file(0, "f.bin", b"payload")

    async def token(**kw: Any) -> str:
        return (await call(c, "download/get_token", {"url": url, **kw})).json()["url"]

    def is_file(r: httpx.Response) -> bool:
        return r.headers["content-type"] == "application/octet-stream"

    single = await token(single=1)
    assert is_file(await c.head(single))  # HEAD does not consume
    assert (await c.get(single)).content == b"payload"
    r = await c.get(single)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")

    unused = await token()
    started = await token()
    assert is_file(await c.get(started))
    assert is_file(await c.get(started))
    await trio.sleep(301)
    assert not is_file(await c.get(unused))  # expired
    assert is_file(await c.get(started, headers={"Range": "bytes=3-"}))  # recovery
    await trio.sleep(1500)
    assert not is_file(await c.get(started))
    emu.remove_file(url)


# --------------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------------
async def test_faults(env: Any, autojump_clock: Any) -> None:
    emu, c = env
    emu.inject("file/ls", "5xx")
    r = await call(c, "file/ls")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    emu.inject("file/ls", "html")
    r = await call(c, "file/ls")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    emu.inject("file/ls", "truncate")
    with pytest.raises(httpx.RemoteProtocolError):
        await call(c, "file/ls")
    emu.inject("folder/mkdir", "reset")
    with pytest.raises(httpx.TransportError):
        await call(c, "folder/mkdir", {"name": "X"})
    assert emu.list_folders(0) == []  # a reset request is not processed
    emu.inject("file/ls", "flood")
    assert (await call(c, "file/ls")).json()["message"] == FLOOD
    assert emu.stats()["flood_locks"] == 1
    await trio.sleep(61)
    # nth / count
    emu.inject("file/ls", "5xx", nth=2, count=2)
    codes = [(await call(c, "file/ls")).status_code for _ in range(4)]
    assert codes == [200, 503, 503, 200]
    # no_links at end.pl: a retry gets the links
    r, node = await upload(c, [("a", b"1")])
    emu.inject("end.pl", "no_links")
    assert "links" not in (await end_pl(c, node)).json()
    assert len((await end_pl(c, node)).json()["links"]) == 1
    emu.inject("end.pl", "html")
    with pytest.raises(json.JSONDecodeError):
        (await end_pl(c, node)).json()
    # truncate on a download
    url = emu.put_file(0, "big", b"z" * 10000)
    tok = (await call(c, "download/get_token", {"url": url})).json()["url"]
    emu.inject("download", "truncate")
    with pytest.raises(httpx.TransportError):
        await c.get(tok)
    emu.inject("upload.cgi", "reset")
    with pytest.raises(httpx.ReadError):
        await upload(c, [("b", b"2")])
    with pytest.raises(ValueError):
        emu.inject("file/ls", "no_links")
    with pytest.raises(ValueError):
        emu.inject("nope", "5xx")
    # streaming read of a truncated body raises while reading
    emu.inject("download", "truncate")
    async with c.stream("GET", tok) as r:
        with pytest.raises(httpx.RemoteProtocolError):
            await r.aread()


# --------------------------------------------------------------------------------------------------------
# Visibility, persistence, seed, stats, control routes
# --------------------------------------------------------------------------------------------------------
async def test_visibility_delay(tmp_path: Path, autojump_clock: Any) -> None:
    """§6 "Visibility", §8.6."""
    emu = make(tmp_path, limits=False, visibility_delay=5.0)
    async with client(emu) as c:
        link = await put(c, "late.bin", b"1")
        assert (await call(c, "file/ls")).json()["items"] == []
        assert (await call(c, "folder/ls", {"files": 1})).json()["files"] == 0
        assert (await call(c, "file/info", {"url": link["download"]})).json()["filename"] == "late.bin"
        await trio.sleep(5)
        assert [i["url"] for i in (await call(c, "file/ls")).json()["items"]] == [link["download"]]
    emu.close()


async def test_persistence_and_seed(tmp_path: Path, autojump_clock: Any) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deep").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top")
    (src / "sub" / "s.txt").write_bytes(b"sss")
    (src / "sub" / "deep" / "d.bin").write_bytes(b"d" * 3000)
    (src / "sub" / "empty").write_bytes(b"")
    emu = make(tmp_path, limits=False)
    emu.seed(src)
    sub = next(f["id"] for f in emu.list_folders(0) if f["name"] == "sub")
    async with client(emu) as c:
        link = await put(c, "up.bin", b"uploaded", did=sub)
    emu.close()

    emu2 = make(tmp_path, limits=False)
    async with client(emu2) as c:
        root = (await call(c, "folder/ls", {"files": 1})).json()
        assert [f["name"] for f in root["sub_folders"]] == ["sub"]
        assert [i["filename"] for i in root["items"]] == ["top.txt"]
        ls = (await call(c, "file/ls", {"folder_id": sub})).json()
        assert sorted(i["filename"] for i in ls["items"]) == ["s.txt", "up.bin"]
        tok = (await call(c, "download/get_token", {"url": link["download"]})).json()["url"]
        assert (await c.get(tok)).content == b"uploaded"
        new = (await call(c, "folder/mkdir", {"name": "new"})).json()["folder_id"]
        assert new not in [f["id"] for f in emu2.list_folders(sub)]
    deep = emu2.list_folders(sub)[0]["id"]
    [f] = emu2.list_files(deep)
    assert f["filename"] == "d.bin" and f["size"] == 3000 and Path(f["path"]).read_bytes() == b"d" * 3000
    emu2.close()


async def test_stats_and_control_routes(env: Any, autojump_clock: Any) -> None:
    emu, c = env
    await call(c, "file/ls")
    await call(c, "file/ls")
    await c.post("/upload/get_upload_server.cgi", json={})
    s = emu.stats()
    assert set(s) >= {"calls", "flood_locks", "bytes_down", "bytes_up", "refused_files"}
    assert set(s["calls"]) == set(ENDPOINTS)
    assert s["calls"]["file/ls"] == 2 and s["calls"]["upload/get_upload_server"] == 1
    assert (await c.get("http://127.0.0.1/_emulator/stats")).json() == s
    r = await c.post("http://127.0.0.1/_emulator/fault", json={"endpoint": "file/ls", "kind": "5xx"})
    assert r.json()["status"] == "OK"
    assert (await call(c, "file/ls")).status_code == 503
    assert (await c.post("http://127.0.0.1/_emulator/fault", json={"endpoint": "x", "kind": "5xx"})
            ).status_code == 400
    await c.post("http://127.0.0.1/_emulator/reset")
    assert emu.stats()["calls"]["file/ls"] == 0 and emu.stats()["flood_locks"] == 0
    emu.lock_for(100)
    assert (await call(c, "file/ls")).status_code == 403
    await c.post("http://127.0.0.1/_emulator/unlock")
    assert (await call(c, "file/ls")).status_code == 200


async def test_bandwidth_and_latency(tmp_path: Path, autojump_clock: Any) -> None:
    emu = make(tmp_path, limits=False, bandwidth=1000, latency=0.5)
    url = emu.put_file(0, "f", b"x" * 5000)
    async with client(emu) as c:
        tok = (await call(c, "download/get_token", {"url": url})).json()["url"]
        t0 = trio.current_time()
        assert len((await c.get(tok)).content) == 5000
        assert 5.4 <= trio.current_time() - t0 <= 5.6
    emu.close()


# --------------------------------------------------------------------------------------------------------
# Server CLI
# --------------------------------------------------------------------------------------------------------
def test_server_refuses_non_loopback() -> None:
    from fichierfs.emulator.server import main

    assert main(["--host", "0.0.0.0"]) == 2
    assert main(["--host", "192.168.1.1"]) == 2


def test_server_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "hello.txt").write_bytes(b"hi")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fichierfs.emulator", "--port", "0", "--state", str(tmp_path / "st"),
         "--seed", str(seed), "--no-limits"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"FICHIER_API_URL=(http://127\.0\.0\.1:(\d+))/v1", line)
        assert m and int(m.group(2)) > 0, line
        with httpx.Client(timeout=10) as c:
            assert c.get(m.group(1) + "/_emulator/stats").json()["calls"]["file/ls"] == 0
            r = c.post(m.group(1) + "/v1/file/ls.cgi", json={}, headers=KEY)
            assert [i["filename"] for i in r.json()["items"]] == ["hello.txt"]
            assert c.get(m.group(1) + "/_emulator/stats").json()["calls"]["file/ls"] == 1
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
    assert rc == 0


def test_seeding_an_existing_state_again_adds_nothing(tmp_path: Path) -> None:
    """A newcomer ran the README's emulator command (``--state S --seed D``) twice and saw every file twice
    (1fichier allows duplicate names): a state that holds an account already is not seeded again."""
    from tests.harness.mounts import run_emulator

    src = tmp_path / "seed"
    (src / "docs").mkdir(parents=True)
    for i in range(3):
        (src / "docs" / f"f{i}.txt").write_bytes(b"x" * (i + 1))
    for _ in range(2):
        with run_emulator(tmp_path / "state", src):
            pass
    emu = Emulator(tmp_path / "state", EmulatorConfig())
    assert sorted(f.filename for f in emu.account.iter_all_files()) == ["f0.txt", "f1.txt", "f2.txt"]
