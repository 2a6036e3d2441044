"""fichierfs.budget: the budget shared by the mounts of one host (SQLite) and its scheduler hook."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from fichierfs.api import endpoint
from fichierfs.budget import CallKind, HostBudget, MemoryBudget, Rules, namespace
from fichierfs.errors import FloodLocked
from fichierfs.scheduler import Budgets, Scheduler

R = Rules()
CALL = CallKind()
LS = CallKind("listing", 7)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pair(tmp_path: Path, clock: Clock) -> tuple[HostBudget, HostBudget]:
    """Two mounts' views of one host file (two connections, as two processes would have)."""
    ns = namespace("http://127.0.0.1:1/v1")
    return HostBudget(tmp_path / "b.sqlite3", ns, clock), HostBudget(tmp_path / "b.sqlite3", ns, clock)


async def test_two_mounts_share_the_rate(pair: tuple[HostBudget, HostBudget], clock: Clock) -> None:
    a, b = pair
    assert await a.acquire(CALL, R) == 0
    assert await b.acquire(CALL, R) == pytest.approx(R.min_interval)
    clock.t += R.min_interval
    assert await b.acquire(CALL, R) == 0
    assert await a.acquire(CALL, R) == pytest.approx(R.min_interval)


async def test_folder_clock_and_listing_gap_are_shared(pair: tuple[HostBudget, HostBudget], clock: Clock) -> None:
    a, b = pair
    assert await a.acquire(LS, R) == 0
    await a.release(LS, reached=True)
    clock.t += R.listing_interval
    assert await b.acquire(LS, R) == pytest.approx(R.same_folder_interval - R.listing_interval)
    assert await b.acquire(CallKind("listing", 8), R) == 0  # another folder: only the gap applied


async def test_release_moves_clocks_to_the_end(pair: tuple[HostBudget, HostBudget], clock: Clock) -> None:
    a, b = pair
    assert await a.acquire(CALL, R) == 0
    clock.t += 2.0  # a slow call
    await a.release(CALL, reached=True)
    assert await b.acquire(CALL, R) == pytest.approx(R.min_interval)


async def test_refused_connection_gives_the_budget_back(pair: tuple[HostBudget, HostBudget], clock: Clock) -> None:
    a, b = pair
    assert await a.acquire(LS, R) == 0
    await a.release(LS, reached=False)
    assert await b.acquire(LS, R) == 0


async def test_flood_seen_by_one_pauses_all(pair: tuple[HostBudget, HostBudget], clock: Clock) -> None:
    a, b = pair
    assert await a.trip(R) == R.breaker_base
    assert await b.acquire(CALL, R) == pytest.approx(R.breaker_base)
    assert await b.trip(R) == pytest.approx(R.breaker_base)  # the same lock: not doubled
    clock.t += R.breaker_base
    assert await a.trip(R) == 2 * R.breaker_base  # consecutive lock: doubled
    clock.t += 2 * R.breaker_base
    await b.answered()
    assert await a.trip(R) == R.breaker_base  # an answer reset the doubling


async def test_history_survives_the_process(tmp_path: Path, clock: Clock) -> None:
    ns = namespace("http://x/v1")
    a = HostBudget(tmp_path / "b.sqlite3", ns, clock)
    assert await a.acquire(LS, R) == 0
    await a.aclose()
    clock.t += 5.0
    b = HostBudget(tmp_path / "b.sqlite3", ns, clock)
    h = await b.history()
    assert h["folders"] == {"7": pytest.approx(5.0)}
    assert h["last_listing"] == pytest.approx(5.0)
    assert await b.acquire(LS, R) == pytest.approx(R.same_folder_interval - 5.0)


async def test_namespaces_do_not_share(tmp_path: Path, clock: Clock) -> None:
    """Tests run emulators on many ports: one API URL's budget is not another's."""
    a = HostBudget(tmp_path / "b.sqlite3", namespace("http://127.0.0.1:1/v1"), clock)
    b = HostBudget(tmp_path / "b.sqlite3", namespace("http://127.0.0.1:2/v1"), clock)
    assert await a.acquire(LS, R) == 0
    assert await b.acquire(LS, R) == 0


async def test_fallback_memory_budget_is_conservative(clock: Clock) -> None:
    m = MemoryBudget(clock, scale=4.0, start=clock.t, folders_listed_at=clock.t)
    assert await m.acquire(CALL, R) == pytest.approx(4 * R.min_interval)
    clock.t += 4 * R.listing_interval
    assert await m.acquire(LS, R) == pytest.approx(4 * R.same_folder_interval - 4 * R.listing_interval)


# ------------------------------------------------------------------ the scheduler hook


class FakeClient:
    def __init__(self, starts: list[tuple[str, float]], tag: str, flood_first: bool = False) -> None:
        self.starts, self.tag, self.flood = starts, tag, flood_first

    @endpoint("file/info")
    async def file_info(self, url: str) -> str:
        self.starts.append((self.tag, trio.current_time()))
        if self.flood:
            self.flood = False
            raise FloodLocked("Flood detected: IP Locked #412", code=412, endpoint="file/info")
        await trio.sleep(0.01)
        return url

    @endpoint("folder/ls")
    async def folder_ls(self, folder_id: int = 0, files: bool = True) -> int:
        self.starts.append((f"{self.tag}-ls{folder_id}", trio.current_time()))
        return folder_id


async def _two(shared: Any, flood_first: bool = False) -> tuple[list[tuple[str, float]], Scheduler, Scheduler]:
    starts: list[tuple[str, float]] = []
    b = Budgets(stall_limit=math.inf)
    s1 = Scheduler(FakeClient(starts, "a", flood_first), b)
    s2 = Scheduler(FakeClient(starts, "b"), b)
    s1.shared = s2.shared = shared
    return starts, s1, s2


async def test_two_schedulers_on_one_budget_keep_the_spacing(autojump_clock: trio.testing.MockClock) -> None:
    shared = MemoryBudget(trio.current_time)
    starts, s1, s2 = await _two(shared)
    async with trio.open_nursery() as n:
        await n.start(s1.run)
        await n.start(s2.run)
        async with trio.open_nursery() as calls:
            for i in range(10):
                calls.start_soon(s1.call, s1.client.file_info, f"u{i}")
                calls.start_soon(s2.call, s2.client.file_info, f"v{i}")
            calls.start_soon(s1.call, s1.client.folder_ls, 5)
            calls.start_soon(s2.call, s2.client.folder_ls, 5)
        n.cancel_scope.cancel()
    times = sorted(t for _, t in starts)
    assert len(times) == 22  # 20 file/info + each mount's listing of folder 5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= Budgets().min_interval - 1e-6
    ls = [t for tag, t in starts if "ls5" in tag]
    assert len(ls) == 2 and ls[1] - ls[0] >= Budgets().same_folder_interval - 1e-6  # the folder's 30 s clock
    assert s1.statistics()["shared_waits"] + s2.statistics()["shared_waits"] > 0
    assert s1.statistics()["calls"]["file/info"] == 10  # a refused acquire is not counted as a call


async def test_a_flood_lock_in_one_scheduler_pauses_the_other(autojump_clock: trio.testing.MockClock) -> None:
    shared = MemoryBudget(trio.current_time)
    starts, s1, s2 = await _two(shared, flood_first=True)
    async with trio.open_nursery() as n:
        await n.start(s1.run)
        await n.start(s2.run)
        await s1.call(s1.client.file_info, "x", lane=1)  # floods once, then succeeds after the breaker
        t_lock = starts[0][1]
        await s2.call(s2.client.file_info, "y", lane=1)
        n.cancel_scope.cancel()
    b_start = next(t for tag, t in starts if tag == "b")
    assert b_start - t_lock >= Budgets().breaker_base - 1e-6


class ListingClient:
    def __init__(self, calls: list[str], tag: str) -> None:
        self.calls, self.tag = calls, tag

    @endpoint("folder/ls")
    async def folder_ls(self, folder_id: int = 0, *, files: bool = True) -> Any:
        from datetime import datetime, timezone

        from fichierfs.models import FileUrl, FolderId, FolderListing, RemoteFile, RemoteFolder

        self.calls.append(f"{self.tag}:ls{folder_id}")
        await trio.sleep(0.05)
        when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        return FolderListing(FolderId(folder_id), "d", when, (RemoteFolder(FolderId(9), "sub", when),),
                             (RemoteFile(FileUrl("https://1fichier.com/?abc"), "f.txt", 12, when, "ab", "text/plain",
                                         folder_id=FolderId(folder_id)),))

    @endpoint("file/rename")
    async def file_rename(self, url: str, name: str) -> str:
        self.calls.append(f"{self.tag}:rename")
        return name


async def test_a_listing_made_by_one_mount_serves_the_other(autojump_clock: trio.testing.MockClock) -> None:
    shared = MemoryBudget(trio.current_time)
    calls: list[str] = []
    b = Budgets(stall_limit=math.inf)
    s1, s2 = Scheduler(ListingClient(calls, "a"), b), Scheduler(ListingClient(calls, "b"), b)
    s1.shared = s2.shared = shared
    async with trio.open_nursery() as n:
        await n.start(s1.run)
        await n.start(s2.run)
        got: list[Any] = []

        async def ls(s: Scheduler) -> None:
            got.append(await s.call(s.client.folder_ls, 5, files=True))

        async with trio.open_nursery() as c:
            c.start_soon(ls, s1)
            c.start_soon(ls, s2)
        assert calls == ["a:ls5"] or calls == ["b:ls5"]  # one API listing for both mounts
        assert got[0] == got[1]  # the shared copy is the same listing, field for field
        assert s1.statistics()["shared_listings"] + s2.statistics()["shared_listings"] == 1
        await s1.call(s1.client.file_rename, "u", "n")  # a change: listings published before it are stale
        t = trio.current_time()
        await s2.call(s2.client.folder_ls, 5, files=True)
        assert calls[-1] == "b:ls5" and trio.current_time() - t >= 0  # listed again, not served stale
        n.cancel_scope.cancel()


def test_status_says_where_the_budget_is_shared() -> None:
    from fichierfs.control import summarize

    down = {"api": {"coordinator": {"kind": "redis", "url": "redis://nas:6379/0", "state": "fallback"}}}
    assert summarize(down)["coordinator"] == (
        "redis redis://nas:6379/0 (fallback: coordinator unreachable, conservative local budget; "
        "downloads unguarded, a #887 refusal is waited out)")
    assert summarize({"api": {"coordinator": {"kind": "host", "state": "ok"}}})["coordinator"] == "host (ok)"
    assert summarize({"api": {}})["coordinator"] == "none"


async def test_listings_are_shared_only_within_one_account(autojump_clock: trio.testing.MockClock) -> None:
    """Folder 0 is every account's root: two accounts on one host share the clocks, never a listing."""
    shared = MemoryBudget(trio.current_time)
    calls: list[str] = []
    b = Budgets(stall_limit=math.inf)
    s1, s2 = Scheduler(ListingClient(calls, "a"), b), Scheduler(ListingClient(calls, "b"), b)
    s1.shared = s2.shared = shared
    s1.share_scope, s2.share_scope = "account-1", "account-2"
    async with trio.open_nursery() as n:
        await n.start(s1.run)
        await n.start(s2.run)
        await s1.call(s1.client.folder_ls, 0, files=True)
        await s2.call(s2.client.folder_ls, 0, files=True)
        assert calls == ["a:ls0", "b:ls0"]  # each account listed its own root
        assert s2.statistics()["shared_listings"] == 0
        n.cancel_scope.cancel()


UI_A, UI_B, UI_NEW = CallKind("user_info", account="A"), CallKind("user_info", account="B"), CallKind("user_info")


async def test_user_info_is_charged_per_account(tmp_path: Path, clock: Clock) -> None:
    """§2.1/§4: user/info is 1 per 5 min per *user* and 1 per minute per IP: another account of the
    host waits the minute, not the 5 min."""
    ns = namespace("http://127.0.0.1:1/v1")
    a = HostBudget(tmp_path / "b.sqlite3", ns, clock, account="A")
    b = HostBudget(tmp_path / "b.sqlite3", ns, clock, account="B")
    assert await a.acquire(UI_A, R) == 0
    await a.release(UI_A, reached=True)
    assert await b.acquire(UI_B, R) == pytest.approx(R.user_info_ip_interval)
    clock.t += R.user_info_ip_interval
    assert await b.acquire(UI_B, R) == 0
    await b.release(UI_B, reached=True)
    clock.t += R.user_info_ip_interval
    assert await a.acquire(UI_A, R) == pytest.approx(R.user_info_interval - 2 * R.user_info_ip_interval)
    assert (await a.history())["last_user_info"] == pytest.approx(2 * R.user_info_ip_interval)
    assert (await b.history())["last_user_info"] == pytest.approx(R.user_info_ip_interval)


async def test_a_refused_key_costs_the_right_key_only_the_ip_minute(tmp_path: Path, clock: Clock) -> None:
    """A key not known yet (its account is what user/info tells) waits for every account's clock; if
    1fichier refuses it (a mistyped key), its per-user charge is given back: the right key then waits
    the per-IP minute, not 5 min. A key that opens an account charges everyone (it may be theirs)."""
    ns = namespace("http://127.0.0.1:1/v1")
    new = HostBudget(tmp_path / "b.sqlite3", ns, clock)
    known = HostBudget(tmp_path / "b.sqlite3", ns, clock, account="A")
    assert await new.acquire(UI_NEW, R) == 0
    await new.release(UI_NEW, reached=True, refused=True)  # AuthError
    assert await known.acquire(UI_A, R) == pytest.approx(R.user_info_ip_interval)
    assert await new.acquire(UI_NEW, R) == pytest.approx(R.user_info_ip_interval)
    clock.t += R.user_info_ip_interval
    assert await new.acquire(UI_NEW, R) == 0
    await new.release(UI_NEW, reached=True)  # it opened some account: maybe A's
    clock.t += R.user_info_ip_interval
    assert await known.acquire(UI_A, R) == pytest.approx(R.user_info_interval - R.user_info_ip_interval)


async def test_two_keys_of_one_account_are_one_account(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    """The Redis namespace (and the journal) is the account's identity from user/info, not the key's:
    two keys of one account land in one namespace; another API address is another namespace."""
    import httpx

    from fichierfs.account import identify
    from fichierfs.api import FichierClient, Secret
    from fichierfs.emulator import Emulator

    emu = Emulator(tmp_path / "emu", clock=trio.current_time)
    api = "https://api.1fichier.com/v1"
    (tmp_path / "root").mkdir()
    accounts = []
    async with httpx.AsyncClient(transport=emu.transport()) as http:
        for key in ("emu-first-key-of-the-account", "emu-second-key-of-the-account"):
            s = Scheduler(FichierClient(http, Secret(key), base_url=api), Budgets())
            async with trio.open_nursery() as n:
                await n.start(s.run)
                accounts.append((await identify(s, api, Secret(key), tmp_path / "root")).account)
                n.cancel_scope.cancel()
            await trio.sleep(Budgets().user_info_interval)  # 1 user/info per 5 min per user (§4)
    assert accounts[0] == accounts[1]
    assert namespace(api, accounts[0]) == namespace(api, accounts[1])  # what mount.py gives RedisBudget
    assert namespace("http://127.0.0.1:9/v1", accounts[0]) != namespace(api, accounts[0])
    assert emu.stats()["flood_locks"] == 0


async def test_a_wait_only_the_host_budget_knows_is_announced(tmp_path: Path,
                                                             autojump_clock: trio.testing.MockClock) -> None:
    """Newcomer: after a refused key, the next mount's user/info waits the host's per-IP minute, which the
    scheduler cannot foresee: it sat 65 s in silence. Now it says what it waits for, then identifies."""
    import httpx

    from fichierfs.account import identify
    from fichierfs.api import FichierClient, Secret
    from fichierfs.emulator import Emulator

    emu = Emulator(tmp_path / "emu", clock=trio.current_time)
    api = "https://api.1fichier.com/v1"
    (tmp_path / "root").mkdir()
    host = HostBudget(tmp_path / "b.sqlite3", namespace(api), trio.current_time)
    await host.acquire(UI_NEW, R)
    await host.release(UI_NEW, reached=True, refused=True)  # a refused key a moment ago (AuthError)
    said: list[str] = []
    async with httpx.AsyncClient(transport=emu.transport()) as http:
        key = Secret("emu-the-right-key")
        s = Scheduler(FichierClient(http, key, base_url=api), Budgets())
        s.shared = host
        async with trio.open_nursery() as n:
            await n.start(s.run)
            t0 = trio.current_time()
            ident = await identify(s, api, key, tmp_path / "root", said.append)
            waited = trio.current_time() - t0
            n.cancel_scope.cancel()
    await host.aclose()
    assert ident.account
    assert waited >= R.user_info_ip_interval - 1
    assert len(said) == 1 and "still waiting to identify the account" in said[0], said
