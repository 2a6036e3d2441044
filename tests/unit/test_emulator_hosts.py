"""Emulator: hosts told apart (issue 14.3). Per-IP limits (#412) keyed by the client address beside
per-user limits (#223) over the account's calls from every address (§3, §4); the one-download-location
rule (#887, §3, §5) keyed by client address; two hosts on one machine through loopback source addresses."""

from __future__ import annotations

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

from fichierfs.emulator import Emulator, EmulatorConfig

API = "https://api.1fichier.com/v1"
KEY = {"Authorization": "Bearer emu-test"}
IP_LOCK = "Flood detected: IP Locked #412"
USER_LOCK = "Flood detected: User Locked #223"
LOCATION = "Only 1 location allowed at a time #887"


class Hosts:
    def __init__(self, emu: Emulator, a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
        self.emu, self.a, self.b = emu, a, b


@pytest.fixture
async def hosts_factory(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[tuple[Emulator, list[httpx.AsyncClient]]] = []

    async def make(**cfg: Any) -> Hosts:
        profile = cfg.pop("profile", "strict")
        emu = Emulator(tmp_path / f"state{len(made)}", EmulatorConfig.profile(profile, **cfg),
                       clock=trio.current_time)
        a = httpx.AsyncClient(transport=emu.transport("127.0.0.1"), base_url=API, headers=KEY)
        b = httpx.AsyncClient(transport=emu.transport("127.0.0.2"), base_url=API, headers=KEY)
        made.append((emu, [a, b]))
        return Hosts(emu, a, b)

    yield make
    for emu, clients in made:
        for c in clients:
            await c.aclose()
        emu.close()


async def call(c: httpx.AsyncClient, ep: str, **body: Any) -> httpx.Response:
    return await c.post(f"/{ep}.cgi", json=body)


def msg(r: httpx.Response) -> str | None:
    return None if r.status_code == 200 else r.json()["message"]


async def test_client_address_seen(hosts_factory: Any, autojump_clock: Any) -> None:
    h = await hosts_factory()
    assert (await h.b.get("http://127.0.0.1/_emulator/client")).json()["ip"] == "127.0.0.2"
    assert (await h.a.get("http://127.0.0.1/_emulator/client")).json()["ip"] == "127.0.0.1"
    await call(h.a, "file/ls")
    await call(h.b, "folder/ls", folder_id=0)
    await call(h.b, "user/info")
    assert h.emu.stats()["clients"] == {"127.0.0.1": 1, "127.0.0.2": 2}


async def test_per_user_rate_over_two_hosts(hosts_factory: Any, autojump_clock: Any) -> None:
    """Two hosts each under 3/s per IP but over it together: User Locked #223, the account is locked on
    every address; the address lock (#412) stays per address."""
    h = await hosts_factory()
    for _ in range(2):
        assert msg(await call(h.a, "remote/ls")) is None
    assert msg(await call(h.b, "remote/ls")) is None
    assert msg(await call(h.b, "remote/ls")) == USER_LOCK
    await trio.sleep(5)
    assert msg(await call(h.a, "remote/ls")) == USER_LOCK  # locked on A too
    assert h.emu.stats()["locks"] == {"ip": 0, "user": 1, "user_info": 0}
    await trio.sleep(200)
    assert msg(await call(h.a, "remote/ls")) is None


async def test_per_ip_rate_is_per_address(hosts_factory: Any, autojump_clock: Any) -> None:
    """With no per-account rate (lenient), each address has its own 3/s; one address's #412 lock leaves
    the other free."""
    h = await hosts_factory(profile="lenient")
    for _ in range(3):
        assert msg(await call(h.a, "remote/ls")) is None
        assert msg(await call(h.b, "remote/ls")) is None
    assert msg(await call(h.a, "remote/ls")) == IP_LOCK
    await trio.sleep(1.5)
    assert msg(await call(h.a, "remote/ls")) == IP_LOCK
    assert msg(await call(h.b, "remote/ls")) is None
    assert h.emu.stats()["locks"]["ip"] == 1 and h.emu.stats()["flood_locks"] == 1


async def test_folder_clock_and_listing_gap_are_the_accounts(hosts_factory: Any, autojump_clock: Any) -> None:
    """§2.2/§4: a folder listed from A cannot be listed from B within 30 s (#223); the 3 s listing gap
    holds for the account's listings together (strict)."""
    h = await hosts_factory()
    d = h.emu.make_folder(0, "d")
    assert msg(await call(h.a, "folder/ls", folder_id=0)) is None
    await trio.sleep(5)
    assert msg(await call(h.b, "folder/ls", folder_id=0)) == USER_LOCK
    await trio.sleep(200)
    assert msg(await call(h.a, "folder/ls", folder_id=0)) is None
    await trio.sleep(1)
    assert msg(await call(h.b, "folder/ls", folder_id=d)) == USER_LOCK  # 1 s after A's listing
    # a single address crossing its own limit is an IP lock, as before hosts were told apart
    await trio.sleep(400)
    assert msg(await call(h.a, "folder/ls", folder_id=d)) is None
    await trio.sleep(1)
    assert msg(await call(h.a, "folder/ls", folder_id=0)) == IP_LOCK


async def test_lenient_account_gap(hosts_factory: Any, autojump_clock: Any) -> None:
    """Lenient: no account-wide 3 s gap, but a folder's 30 s clock is still the account's (§2.2)."""
    h = await hosts_factory(profile="lenient")
    d = h.emu.make_folder(0, "d")
    assert msg(await call(h.a, "folder/ls", folder_id=0)) is None
    assert msg(await call(h.b, "folder/ls", folder_id=d)) is None
    await trio.sleep(5)
    assert msg(await call(h.b, "folder/ls", folder_id=0)) == USER_LOCK


async def test_one_download_location(hosts_factory: Any, autojump_clock: Any) -> None:
    """§3 #887: while A downloads (or did within location_window), B's get_token and B's token GETs are
    refused; once A is quiet for the window, B becomes the location and A is refused."""
    h = await hosts_factory(limits=False, bandwidth=100, location_window=30.0)
    url = h.emu.put_file(0, "f", b"x" * 6000)
    tok_a = (await call(h.a, "download/get_token", url=url)).json()["url"]
    r = await call(h.b, "download/get_token", url=url)
    assert r.status_code == 403 and r.json() == {"status": "KO", "message": LOCATION}
    got: list[int] = []

    async def read_a() -> None:
        got.append(len((await h.a.get(tok_a)).content))  # 60 s at 100 B/s

    async with trio.open_nursery() as n:
        n.start_soon(read_a)
        await trio.sleep(45)  # past the window after A's get_token, but A's stream is open
        assert msg(await call(h.b, "download/get_token", url=url)) == LOCATION
    assert got == [6000]
    await trio.sleep(20)  # 20 s after A's stream ended: still A's
    assert msg(await call(h.b, "download/get_token", url=url)) == LOCATION
    await trio.sleep(11)
    tok_b = (await call(h.b, "download/get_token", url=url)).json()["url"]
    r = await h.a.get(tok_a)  # A's own token, now from a second location
    assert r.status_code == 403 and LOCATION in r.text and r.headers["content-type"].startswith("text/html")
    assert msg(await call(h.a, "download/get_token", url=url)) == LOCATION
    assert (await h.b.get(tok_b, headers={"Range": "bytes=0-9"})).content == b"x" * 10
    assert h.emu.stats()["location_refusals"] == 5
    off = await hosts_factory(limits=False, one_location=False)
    url = off.emu.put_file(0, "f", b"y")
    assert msg(await call(off.a, "download/get_token", url=url)) is None
    assert msg(await call(off.b, "download/get_token", url=url)) is None


def test_two_hosts_on_one_machine_through_source_addresses(tmp_path: Path) -> None:
    """The documented set-up: the server binds 127.0.0.1; clients connect from 127.0.0.1 and 127.0.0.2
    (httpx ``local_address``; fichierfs ``--source-address``) and are two hosts to the per-IP rules."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-m", "fichierfs", "emulator", "--state", str(tmp_path / "st")],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"FICHIER_API_URL=(.*)/v1", proc.stdout.readline().strip())
        assert m
        base = m.group(1)
        a = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1"), headers=KEY, timeout=10)
        b = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), headers=KEY, timeout=10)
        with a, b:
            assert b.get(base + "/_emulator/client").json()["ip"] == "127.0.0.2"
            assert a.get(base + "/_emulator/client").json()["ip"] == "127.0.0.1"
            assert a.post(base + "/v1/folder/ls.cgi", json={}).status_code == 200
            r = b.post(base + "/v1/folder/ls.cgi", json={})  # same folder, second host, within 30 s
            assert r.status_code == 403 and r.json()["message"] == USER_LOCK
            assert a.get(base + "/_emulator/stats").json()["locks"]["user"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_source_address_option() -> None:
    """fichierfs's ``--source-address`` (the client side of the set-up above) takes an IP address only."""
    from fichierfs.config import Options
    from fichierfs.errors import ConfigError

    assert Options(source_address="127.0.0.2").source_address == "127.0.0.2"
    assert Options().source_address is None
    with pytest.raises(ConfigError, match="source_address"):
        Options(source_address="not-an-ip")


async def test_one_address_never_sees_the_account_lock(tmp_path: Path, autojump_clock: Any) -> None:
    """One host alone always crosses its own (#412) limit first: a random call sequence from one address
    gets exactly the same answers with the per-account limits on as with them off."""
    import random

    rng = random.Random(7)
    steps = [(rng.choice(["remote/ls", "folder/ls", "file/ls", "user/info", "file/ls"]), rng.choice([0, 1, 2]),
              rng.choice([0.0, 0.1, 0.4, 1.0, 3.5, 31.0, 70.0])) for _ in range(300)]
    answers: list[list[str | None]] = []
    for user_limits in (True, False):
        extra = {} if user_limits else {"user_rate_per_second": 0.0, "user_listing_interval": 0.0}
        emu = Emulator(tmp_path / f"s{user_limits}", EmulatorConfig(**extra), clock=trio.current_time)
        folders = [0, emu.make_folder(0, "a"), emu.make_folder(0, "b")]
        got: list[str | None] = []
        async with httpx.AsyncClient(transport=emu.transport(), base_url=API, headers=KEY) as c:
            for ep, f, pause in steps:
                await trio.sleep(pause)
                got.append(msg(await call(c, ep, folder_id=folders[f])))
        assert emu.stats()["locks"]["user"] == 0
        answers.append(got)
        emu.close()
    assert answers[0] == answers[1]
    assert IP_LOCK in answers[0] and None in answers[0]
