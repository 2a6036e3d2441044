"""fichierfs.budget_redis against a real redis-server (started and stopped by PID): the shared
clocks as atomic Lua scripts, the shared breaker, the download lease, and fallback + rejoin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from fichierfs.budget import CallKind, Rules, namespace
from fichierfs.budget_redis import RedisBudget, redis_password, safe_url
from fichierfs.errors import ConfigError
from tests.redis_rig import RedisProc, run_redis

R = Rules()
CALL = CallKind()
LS = CallKind("listing", 42)
NS = namespace("http://127.0.0.1:9/v1", "acct")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProc]:
    with run_redis(tmp_path / "redis") as r:
        yield r


async def test_two_hosts_share_every_clock(redis: RedisProc) -> None:
    async with RedisBudget.connect(redis.url, NS) as a, RedisBudget.connect(redis.url, NS) as b:
        assert await a.acquire(LS, R) == 0
        w = await b.acquire(CALL, R)
        assert 0 < w <= R.min_interval
        await a.release(LS, reached=True)
        await trio.sleep(R.min_interval)
        assert await b.acquire(CALL, R) == 0  # rate: free again
        w = await b.acquire(CallKind("listing", 43), R)
        assert R.listing_interval - 1 < w <= R.listing_interval  # the 3 s gap is shared
        w = await b.acquire(LS, R)
        assert R.same_folder_interval - 1 < w <= R.same_folder_interval  # and the folder's 30 s clock
        assert 0 < await b.acquire(CallKind("user_info"), R) <= R.min_interval
        assert a.status()["state"] == "ok" and a.status()["round_trips"] > 0


async def test_atomic_under_contention(redis: RedisProc) -> None:
    """Twenty clients race for one slot: exactly one wins."""
    wins = 0

    async def one() -> None:
        nonlocal wins
        async with RedisBudget.connect(redis.url, NS) as b:
            if await b.acquire(LS, R) == 0:
                wins += 1

    async with trio.open_nursery() as n:
        for _ in range(20):
            n.start_soon(one)
    assert wins == 1


async def test_refused_call_gives_back_and_breaker_is_shared(redis: RedisProc) -> None:
    async with RedisBudget.connect(redis.url, NS) as a, RedisBudget.connect(redis.url, NS) as b:
        assert await a.acquire(LS, R) == 0
        await a.release(LS, reached=False)  # never reached 1fichier
        await trio.sleep(R.min_interval)
        assert await b.acquire(LS, R) == 0
        assert await a.trip(R) == R.breaker_base
        w = await b.acquire(CALL, R)
        assert R.breaker_base - 1 < w <= R.breaker_base
        assert await b.trip(R) == pytest.approx(R.breaker_base, abs=1)  # same lock, not doubled


async def test_fallback_when_redis_dies_and_rejoin(redis: RedisProc, caplog: pytest.LogCaptureFixture) -> None:
    fast = Rules().scaled(0.01)
    async with RedisBudget.connect(redis.url, NS, retry_every=0.2) as a:
        assert await a.acquire(CALL, fast) == 0
        redis.stop()
        await trio.sleep(fast.min_interval)
        w = await a.acquire(CALL, fast)
        assert a.status()["state"] == "fallback"
        assert w == pytest.approx(4 * fast.min_interval, rel=0.2)  # conservative: every interval x4
        w = await a.acquire(LS, fast)  # every folder counts as just listed by someone else
        assert w >= 4 * fast.same_folder_interval - 4 * fast.min_interval - 0.05
        assert any("unreachable" in r.getMessage() and "conservative" in r.getMessage() for r in caplog.records)
        redis.start()
        await trio.sleep(0.3)
        with trio.fail_after(5):
            while await a.acquire(CALL, fast) != 0 or a.status()["state"] != "ok":
                await trio.sleep(0.05)
        assert any("is back" in r.getMessage() for r in caplog.records)
        assert a.status()["fallbacks"] == 1


async def test_download_lease_takes_turns(redis: RedisProc) -> None:
    """§3 #887: one location downloads at a time; the other waits its turn instead of being refused."""
    log: list[tuple[str, str]] = []
    async with RedisBudget.connect(redis.url, NS, lease_ttl=1.0, fair_hold=0.3, location="host-a") as a, \
            RedisBudget.connect(redis.url, NS, lease_ttl=1.0, fair_hold=0.3, location="host-b") as b:

        async def host(tag: str, budget: RedisBudget) -> None:
            for _ in range(3):
                async with budget.download_lease():
                    log.append((tag, "in"))
                    await trio.sleep(0.2)
                    log.append((tag, "out"))

        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                n.start_soon(host, "a", a)
                n.start_soon(host, "b", b)
    inside: set[str] = set()
    for tag, what in log:
        if what == "in":
            assert not inside - {tag}, f"both hosts downloading at once: {log}"
            inside.add(tag)
        else:
            inside.discard(tag)
    assert {t for t, _ in log} == {"a", "b"}


async def test_unreachable_at_start_is_fallback_not_failure() -> None:
    from tests.redis_rig import free_port

    async with RedisBudget.connect(f"redis://127.0.0.1:{free_port()}/0", NS, retry_every=10) as a:
        assert a.status()["state"] == "fallback"  # known at once: the mount announces it before any call
        assert await a.acquire(CALL, R) > 0  # conservative: as if someone had just called
        assert a.status()["state"] == "fallback"


def test_password_never_in_the_url_and_file_must_be_private(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password"):
        async def go() -> None:
            async with RedisBudget.connect("redis://:secret@127.0.0.1:1/0", NS):
                pass
        trio.run(go)
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        redis_password(f)
    f.chmod(0o600)
    assert redis_password(f) == "s3cret"
    assert safe_url("rediss://u:p@h:6380/2") == "rediss://h:6380/2"


async def test_password_from_file_is_used(tmp_path: Path) -> None:
    with run_redis(tmp_path / "r") as r:
        import subprocess

        subprocess.run(["redis-cli", "-p", str(r.port), "CONFIG", "SET", "requirepass", "pw-123"], check=True,
                       capture_output=True)
        async with RedisBudget.connect(r.url, NS, password="pw-123") as a:
            assert await a.acquire(CALL, R) == 0
            assert a.status()["state"] == "ok"
        # a missing or wrong password fails the mount with a clear message (it used to ride on the
        # 4x slower fallback budget for good, saying only "unreachable" in the log)
        for wrong in ("wrong", None):
            with pytest.raises(ConfigError, match="refused this mount .*--coordinator-password-file"):
                async with RedisBudget.connect(r.url, NS, password=wrong, retry_every=10):
                    pass


async def test_attributes_set_on_one_host_reach_the_other(redis: RedisProc) -> None:
    async with RedisBudget.connect(redis.url, NS) as a, RedisBudget.connect(redis.url, NS) as b:
        cur, got = await b.attrs_since("")
        assert got == []
        await a.publish_attrs({"https://1fichier.com/?x": {"mtime_ns": 123, "mode": 0o600, "uid": None, "gid": None}})
        cur, got = await b.attrs_since(cur)
        assert got == [("https://1fichier.com/?x", {"mtime_ns": 123, "mode": 0o600, "uid": None, "gid": None})]
        assert (await b.attrs_since(cur))[1] == []
        assert (await a.attrs_since(""))[1] == []  # its own changes are not played back to it
        assert a.status()["state"] == "ok"


async def test_the_location_stays_with_the_last_downloader_for_the_window(redis: RedisProc) -> None:
    """§3 #887: a host stays the download location a while after its last download; the other waits that out."""
    async with RedisBudget.connect(redis.url, NS, lease_ttl=2.0, location="host-a") as a, \
            RedisBudget.connect(redis.url, NS, location="host-b") as b:
        async with a.download_lease(hold_after=0.6):
            pass
        t0 = trio.current_time()
        async with b.download_lease(hold_after=0.0):
            waited = trio.current_time() - t0
        assert 0.5 <= waited < 2.0
        async with a.download_lease(hold_after=0.0):  # b let go without a window: no wait
            pass
        assert b.status()["download_lease_waits"] == 1


async def test_mounts_of_one_host_share_the_location(redis: RedisProc) -> None:
    """Two mounts on one host are one address to 1fichier: they download together, and the location is
    kept until the last of them has finished."""
    async with RedisBudget.connect(redis.url, NS, location="h") as a, RedisBudget.connect(redis.url, NS, location="h") as b, \
            RedisBudget.connect(redis.url, NS, location="other") as c:
        inside = 0
        most = 0

        async def dl(budget: RedisBudget, hold: float) -> None:
            nonlocal inside, most
            async with budget.download_lease(hold_after=hold):
                inside += 1
                most = max(most, inside)
                await trio.sleep(0.3)
                inside -= 1

        with trio.fail_after(10):
            async with trio.open_nursery() as n:
                n.start_soon(dl, a, 0.0)
                n.start_soon(dl, b, 0.0)
            assert most == 2  # same location: at once
            async with trio.open_nursery() as n:
                n.start_soon(dl, a, 0.0)  # a leaves first
                n.start_soon(dl, b, 0.0)
                await trio.sleep(0.1)
                t0 = trio.current_time()
                async with c.download_lease():
                    assert trio.current_time() - t0 >= 0.15  # waited for the last of the two


async def test_folder_changes_travel_in_order_through_the_feed(redis: RedisProc) -> None:
    """fichierfs.listshare's feed: one mount's folder changes reach the other, in order, not played back."""
    async with RedisBudget.connect(redis.url, NS) as a, RedisBudget.connect(redis.url, NS) as b:
        await a.publish_feed("listing:acct", [{"op": "put", "n": "old"}])
        cur, got = await b.feed_since("listing:acct", "")
        assert got == []  # "" = from now: what was told before is in the listings
        changes = [{"op": "del", "k": "u1"}, {"op": "put", "k": 7, "n": "dir"}]
        await a.publish_feed("listing:acct", changes)
        cur, got = await b.feed_since("listing:acct", cur)
        assert got == changes
        assert (await b.feed_since("listing:acct", cur))[1] == []
        assert (await a.feed_since("listing:acct", "0-0"))[1] == []  # its own changes are not played back
        assert (await b.feed_since("listing:other", "0-0"))[1] == []  # another account's feed


async def test_downloads_while_redis_is_down_wait_out_a_location_refusal(redis: RedisProc, tmp_path: Path) -> None:
    """Redis killed (by PID): two "hosts" download one file at once. Nobody can lease the location, so
    1fichier refuses the second host (#887): it waits and retries instead of failing the read, and its
    status says the downloads are unguarded."""
    import httpx

    from fichierfs.api import FichierClient
    from fichierfs.emulator import Emulator, EmulatorConfig
    from fichierfs.scheduler import Budgets, Scheduler
    from tests.conftest import API_KEY

    scale = 0.02
    emu = Emulator(tmp_path / "emu", config=EmulatorConfig(time_scale=scale), clock=trio.current_time)
    data = bytes(range(256)) * 64
    url = emu.put_file(0, "f.bin", data)
    budgets = Budgets().scaled(scale)
    got: dict[str, bytes] = {}
    async with RedisBudget.connect(redis.url, NS, location="host-a", retry_every=30) as ra, \
            RedisBudget.connect(redis.url, NS, location="host-b", retry_every=30) as rb, \
            httpx.AsyncClient(transport=emu.transport("127.0.0.1")) as ha, \
            httpx.AsyncClient(transport=emu.transport("127.0.0.2")) as hb:
        sa, sb = Scheduler(FichierClient(ha, API_KEY), budgets), Scheduler(FichierClient(hb, API_KEY), budgets)
        sa.shared, sb.shared = ra, rb
        redis.stop()

        async def host(tag: str, s: Scheduler) -> None:
            link = await s.call(s.client.download_get_token, url)
            got[tag] = bytes(await s.call(s.client.download_range, link, 0, len(data)))

        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                await n.start(sa.run)
                await n.start(sb.run)
                async with trio.open_nursery() as both:
                    both.start_soon(host, "a", sa)
                    await trio.sleep(0.05)
                    both.start_soon(host, "b", sb)
                n.cancel_scope.cancel()
        assert got == {"a": data, "b": data}  # nothing failed
        assert emu.stats()["location_refusals"] >= 1  # 1fichier did refuse one host: it was waited out
        assert sa.statistics()["location_waits"] + sb.statistics()["location_waits"] >= 1
        st = rb.status()
        assert st["state"] == "fallback" and st["download_lease"].startswith("unguarded")
        assert st["unguarded_downloads"] >= 1
