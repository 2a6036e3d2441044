"""FichierClient against the in-process emulator: every method, every error path.

Limits are off here (the client has no pacing by design; the scheduler tests cover pacing),
except in the tests that check how a flood lock is reported.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import trio
import whirlpool

from fichierfs.api import FichierClient, UploadSource
from fichierfs.errors import (
    AuthError,
    BadReply,
    FloodLocked,
    LinkExpired,
    NotFound,
    RequestRejected,
    ServerError,
    UploadFailed,
)
from tests.conftest import API_KEY


@pytest.fixture
def emu_config():
    from fichierfs.emulator import EmulatorConfig

    return EmulatorConfig(limits=False)


def _wp(data: bytes) -> str:
    return whirlpool.new(data).hexdigest().lower()


async def _upload(client: FichierClient, tmp_path: Path, name: str, data: bytes, folder: int = 0):
    src = tmp_path / f"src-{len(data)}-{abs(hash(name))}"
    src.write_bytes(data)
    server = await client.upload_get_upload_server()
    await client.upload_post(server, [UploadSource(name, src, len(data))], folder)
    (up,) = await client.upload_end(server)
    return up


async def test_user_info(client: FichierClient, emu) -> None:
    info = await client.user_info()
    assert info.email
    assert info.total > 0 and 0 <= info.used <= info.total and info.free == info.total - info.used
    assert emu.stats()["calls"]["user/info"] == 1


async def test_folder_mkdir_ls_mv_rm(client: FichierClient, emu) -> None:
    a = await client.folder_mkdir(0, "alpha")
    b = await client.folder_mkdir(a, "beta")
    emu.put_file(b, "f.txt", b"hello")
    root = await client.folder_ls(0)
    assert root.folder_id == 0
    assert [f.name for f in root.sub_folders] == ["alpha"]
    assert root.sub_folders[0].id == a
    assert isinstance(root.sub_folders[0].create_date, datetime)
    inner = await client.folder_ls(b, files=True)
    assert inner.name == "beta" and [f.filename for f in inner.files] == ["f.txt"]
    f = inner.files[0]
    assert f.size == 5 and f.checksum == _wp(b"hello") and f.folder_id == b
    assert f.date is not None and f.date.tzinfo is not None
    assert abs((datetime.now(timezone.utc) - f.date).total_seconds()) < 120  # Paris → UTC done right
    no_files = await client.folder_ls(b, files=False)
    assert no_files.files == ()
    await client.folder_mv(b, rename="gamma")
    await client.folder_mv(b, destination_folder_id=0)
    root = await client.folder_ls(0)
    assert sorted(x.name for x in root.sub_folders) == ["alpha", "gamma"]
    with pytest.raises(RequestRejected):  # not empty
        await client.folder_rm(b)
    await client.file_rm([f.url])
    await client.folder_rm(b)
    assert [x.name for x in (await client.folder_ls(0)).sub_folders] == ["alpha"]
    with pytest.raises(ValueError):
        await client.folder_mv(a)


async def test_file_ls_info_rename_mv_cp_chattr_rm(client: FichierClient, emu) -> None:
    d = await client.folder_mkdir(0, "d")
    url = emu.put_file(0, "a.txt", b"abc")
    files = await client.file_ls(0)
    assert [f.filename for f in files] == ["a.txt"] and files[0].url == url
    everything = await client.file_ls(-1)
    assert [f.url for f in everything] == [url]
    info = await client.file_info(url)
    assert info.filename == "a.txt" and info.size == 3 and info.folder_id == 0 and info.content_type
    (r,) = await client.file_rename([(url, "b.txt")])
    assert (r.old_filename, r.new_filename) == ("a.txt", "b.txt")
    with pytest.raises(RequestRejected) as exc:  # same name: #312 (§2.7)
        await client.file_rename([(url, "b.txt")])
    assert exc.value.code == 312
    (moved,) = await client.file_mv([url], d)
    assert (await client.file_info(moved)).folder_id == d
    with pytest.raises(RequestRejected):  # a move whose rename equals the current name (§2.6)
        await client.file_mv([moved], 0, rename="b.txt")
    (cp,) = await client.file_cp([moved], 0, rename="c.txt")
    assert cp.from_url == moved and cp.to_url != moved
    assert await client.file_chattr([cp.to_url], description="mtime=123") == 1
    assert (await client.file_info(cp.to_url)).description == "mtime=123"
    assert await client.file_rm([moved, cp.to_url]) == 2
    with pytest.raises(NotFound) as nf:
        await client.file_info(moved)
    assert nf.value.code == 469 and nf.value.errno == 2
    with pytest.raises(ValueError):
        await client.file_mv(["u1", "u2"], 0, rename="x")


async def test_upload_three_legs_and_download(client: FichierClient, emu, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    up = await _upload(client, tmp_path, "blob.bin", data)
    assert up.size == len(data) and up.whirlpool == _wp(data) and up.filename == "blob.bin"
    assert emu.read_file(up.url) == data
    link = await client.download_get_token(up.url)
    assert "blob" not in repr(link) and link.url not in repr(link)  # the link is a credential
    assert await client.download_range(link, 0, 10) == data[:10]
    assert await client.download_range(link, 1000, 5000) == data[1000:5000]  # single:0 link reused
    assert await client.download_range(link, len(data) - 3, len(data) + 100) == data[-3:]
    calls = emu.stats()["calls"]
    assert calls["upload/get_upload_server"] == 1 and calls["upload.cgi"] == 1 and calls["end.pl"] == 1
    assert calls["download/get_token"] == 1 and calls["download"] == 3


async def test_upload_many_files_in_one_post(client: FichierClient, tmp_path: Path) -> None:
    srcs = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x" * (i + 1))
        srcs.append(UploadSource(f"f{i}.txt", p, i + 1))
    server = await client.upload_get_upload_server()
    await client.upload_post(server, srcs, 0)
    ups = await client.upload_end(server)
    assert sorted(u.filename for u in ups) == [f"f{i}.txt" for i in range(5)]
    assert await client.upload_end(server) == ups  # end.pl is repeatable (§6.4)


async def test_upload_refuses_empty_and_too_many(client: FichierClient, tmp_path: Path) -> None:
    server = await client.upload_get_upload_server()
    p = tmp_path / "empty"
    p.write_bytes(b"")
    with pytest.raises(ValueError):
        await client.upload_post(server, [UploadSource("e", p, 0)], 0)
    with pytest.raises(ValueError):
        await client.upload_post(server, [], 0)


async def test_duplicate_names_allowed(client: FichierClient, tmp_path: Path) -> None:
    a = await _upload(client, tmp_path, "same.txt", b"one")
    b = await _upload(client, tmp_path, "same.txt", b"two!")
    assert a.url != b.url
    names = [f.filename for f in await client.file_ls(0)]
    assert names.count("same.txt") == 2


async def test_auth_errors(http: httpx.AsyncClient) -> None:
    bad = FichierClient(http, "not-an-emulator-key-SECRET123")
    with pytest.raises(AuthError) as exc:
        await bad.user_info()
    assert exc.value.errno == 13 and exc.value.code is not None
    assert "SECRET123" not in str(exc.value) and "SECRET123" not in repr(bad)


async def test_flood_lock_is_reported(tmp_path: Path) -> None:
    from fichierfs.emulator import Emulator, EmulatorConfig

    emu = Emulator(tmp_path / "s", config=EmulatorConfig(), clock=trio.current_time)
    async with httpx.AsyncClient(transport=emu.transport()) as http:
        client = FichierClient(http, API_KEY)
        await client.folder_ls(0)
        with pytest.raises(FloodLocked) as exc:  # same folder within 30 s (§4)
            await client.folder_ls(0)
        assert exc.value.code in (374, 412) and exc.value.http_status == 403 and exc.value.retryable
        assert emu.stats()["flood_locks"] == 1


async def test_transient_faults(client: FichierClient, emu, tmp_path: Path) -> None:
    emu.inject("folder/ls", "5xx")
    with pytest.raises(ServerError):
        await client.folder_ls(0)
    emu.inject("folder/ls", "html")
    with pytest.raises(BadReply, match="HTML"):
        await client.folder_ls(0)
    emu.inject("user/info", "reset")
    with pytest.raises(ServerError):
        await client.user_info()
    emu.inject("file/info", "truncate")
    url = emu.put_file(0, "t.txt", b"t" * 100)
    with pytest.raises((ServerError, BadReply)):
        await client.file_info(url)
    assert (await client.folder_ls(0)).folder_id == 0  # faults were one-shot


async def test_end_pl_faults_and_retry(client: FichierClient, emu, tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_bytes(b"payload")
    server = await client.upload_get_upload_server()
    await client.upload_post(server, [UploadSource("x.txt", src, 7)], 0)
    emu.inject("end.pl", "html")
    with pytest.raises(BadReply):
        await client.upload_end(server)
    emu.inject("end.pl", "no_links")
    with pytest.raises(UploadFailed):
        await client.upload_end(server)
    (up,) = await client.upload_end(server)  # retrying end.pl, never the POST (§8.7)
    assert up.filename == "x.txt"
    assert [f.filename for f in await client.file_ls(0)] == ["x.txt"]


async def test_upload_post_html_failure(client: FichierClient, emu, tmp_path: Path) -> None:
    src = tmp_path / "y"
    src.write_bytes(b"data")
    server = await client.upload_get_upload_server()
    emu.inject("upload.cgi", "html")
    with pytest.raises(UploadFailed):
        await client.upload_post(server, [UploadSource("y", src, 4)], 0)


async def test_expired_and_truncated_downloads(client: FichierClient, emu, autojump_clock) -> None:
    url = emu.put_file(0, "big.bin", b"z" * 50_000)
    link = await client.download_get_token(url)
    emu.inject("download", "truncate")
    with pytest.raises(ServerError):
        await client.download_range(link, 0, 50_000)
    emu.inject("download", "reset")
    with pytest.raises(ServerError):
        await client.download_range(link, 0, 50_000)
    await trio.sleep(emu.config.token_ttl + emu.config.recovery_window + 1)
    with pytest.raises(LinkExpired):
        await client.download_range(link, 0, 10)
    forged = dataclasses.replace(link, url=link.url + "9")
    with pytest.raises(LinkExpired):
        await client.download_range(forged, 0, 10)


async def test_single_link_serves_one_connection(client: FichierClient, emu) -> None:
    url = emu.put_file(0, "s.bin", b"s" * 1000)
    link = await client.download_get_token(url, single=True)
    assert await client.download_range(link, 0, 10) == b"s" * 10
    with pytest.raises(LinkExpired):
        await client.download_range(link, 10, 20)


async def test_content_type_not_json_and_ko_with_200() -> None:
    """Replies the emulator never gives but 1fichier may: bare #24 (§1), KO with HTTP 200 (§3)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("user/info.cgi"):
            return httpx.Response(200, text='{"message":"Content-Type not JSON #24"}')
        return httpx.Response(200, json={"status": "KO", "message": "Resource not allowed #631"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        c = FichierClient(http, API_KEY)
        with pytest.raises(RequestRejected) as e24:
            await c.user_info()
        assert e24.value.code == 24
        with pytest.raises(Exception) as e631:
            await c.file_info("https://1fichier.com/?x")
        assert e631.value.errno == 13 and e631.value.code == 631


async def test_key_never_in_logs_or_errors(http: httpx.AsyncClient, emu, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "emu-SUPERSECRET-abcdef"
    c = FichierClient(http, secret)
    await c.user_info()
    emu.inject("folder/ls", "5xx")
    with pytest.raises(ServerError) as exc:
        await c.folder_ls(0)
    bad = FichierClient(http, "SUPERSECRET-wrong")
    with pytest.raises(AuthError) as auth:
        await bad.user_info()
    text = caplog.text + str(exc.value) + repr(exc.value) + str(auth.value) + repr(c) + repr(bad)
    assert "SUPERSECRET" not in text
