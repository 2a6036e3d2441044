"""Tests of fichierfs.scheduler: budgets, lanes, coalescing, flood breaker, retries.

Every test runs on trio's MockClock with autojump (no real sleeps), against a fake client
that records each call's method, arguments and start time.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fichierfs.api import ENDPOINTS, endpoint
from fichierfs.errors import AuthError, FloodLocked, NotFound, RequestRejected, ServerError
from fichierfs.scheduler import Budgets, Lane, Scheduler

EPS = 1e-6
B = Budgets()


def flood() -> FloodLocked:
    return FloodLocked("Flood detected: IP Locked #412", code=412, http_status=403, endpoint="x")


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    start: float
    end: float = math.nan
    raised: BaseException | None = None


@dataclass
class FakeClient:
    """Records calls; answers from a per-method script, else ``("ok", method, args)``.

    A script entry is a value (returned), an exception instance (raised) or a callable.
    ``hold(method)`` makes calls of that method wait for the returned event.
    """

    duration: float = 0.0
    calls: list[Call] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    holds: dict[str, trio.Event] = field(default_factory=dict)
    active: int = 0
    max_active: int = 0

    def behave(self, method: str, *outcomes: Any) -> None:
        self.script[method].extend(outcomes)

    def hold(self, method: str) -> trio.Event:
        ev = self.holds[method] = trio.Event()
        return ev

    def started(self, method: str | None = None) -> list[float]:
        return [c.start for c in self.calls if method is None or c.method == method]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "client":
            raise AttributeError(name)

        async def method(*args: Any, **kwargs: Any) -> Any:
            call = Call(name, args, kwargs, trio.current_time())
            self.calls.append(call)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                if self.duration:
                    await trio.sleep(self.duration)
                if name in self.holds:
                    await self.holds[name].wait()
                outcome = self.script[name].pop(0) if self.script[name] else ("ok", name, args)
                if isinstance(outcome, BaseException):
                    call.raised = outcome
                    raise outcome
                if callable(outcome):
                    return outcome(*args, **kwargs)
                return outcome
            finally:
                self.active -= 1
                call.end = trio.current_time()

        method.__name__ = name
        return endpoint(ENDPOINTS[name])(method)  # marked like FichierClient's methods


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def start(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, client: FakeClient) -> Any:
    """``await start(budgets)`` → a running Scheduler over ``client`` (jitter fixed to the full delay)."""

    async def _start(budgets: Budgets = B, **kw: Any) -> Scheduler:
        kw.setdefault("jitter", lambda: 1.0)
        sched = Scheduler(client, budgets, **kw)
        await nursery.start(sched.run)
        return sched

    return _start


@pytest.fixture
async def sched(start: Any) -> Scheduler:
    return await start()


class Results:
    """Spawn calls in a nursery and keep each one's result or exception, by name."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.out: dict[Any, Any] = {}
        self.at: dict[Any, float] = {}

    async def spawn(self, name: Any, fn: Any, *args: Any, **kwargs: Any) -> None:
        async def run() -> None:
            try:
                self.out[name] = await fn(*args, **kwargs)
            except Exception as exc:
                self.out[name] = exc
            self.at[name] = trio.current_time()

        self.nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()  # the call is registered before the next one


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# ---------------------------------------------------------------------------- Budgets


def test_budget_defaults_are_under_the_documented_limits() -> None:
    # §4: 3 req/s, 1 listing per 3 s, same folder 1/30 s, all files 1/h, user/info 1/5 min
    assert B.min_interval >= 1 / 3
    assert B.listing_interval >= 3
    assert B.same_folder_interval >= 30
    assert B.all_files_interval >= 3600
    assert B.user_info_interval >= 300
    assert B.breaker_base >= 30


def test_budgets_scaled_multiplies_times_not_counts() -> None:
    s = B.scaled(0.01)
    assert s.min_interval == pytest.approx(0.005)
    assert s.same_folder_interval == pytest.approx(0.31)
    assert s.breaker_max == pytest.approx(18.0)
    assert s.stall_limit == pytest.approx(0.3)
    assert (s.retries, s.max_concurrent_transfers) == (B.retries, B.max_concurrent_transfers)
    with pytest.raises(ValueError):
        B.scaled(0)
    with pytest.raises(ValueError):
        Budgets(min_interval=-1)


# ---------------------------------------------------------------------------- pacing


async def test_metered_starts_are_min_interval_apart_one_at_a_time(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 0.2
    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(sched.call, sched.client.file_info, f"https://1fichier.com/?{i}")
    starts = client.started()
    assert len(starts) == 6
    assert all(g >= B.min_interval - EPS for g in gaps(starts))
    # spacing counts from the previous call's END (what 1fichier sees is its arrival)
    assert starts[-1] - starts[0] == pytest.approx(5 * (B.min_interval + client.duration))
    assert client.max_active == 1


async def test_slow_call_holds_the_next_until_it_ends(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 2.0
    async with trio.open_nursery() as n:
        n.start_soon(sched.call, sched.client.file_rm, ["u1"])
        n.start_soon(sched.call, sched.client.file_rm, ["u2"])
    a, b = client.calls
    assert b.start >= a.end - EPS


async def test_same_folder_waits_while_other_folder_goes_between(
    sched: Scheduler, client: FakeClient, autojump_clock: trio.testing.MockClock
) -> None:
    t0 = trio.current_time()
    await sched.call(sched.client.folder_ls, 1)
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("again", sched.call, sched.client.folder_ls, 1, lane=Lane.PREFETCH)
        await r.spawn("other", sched.call, sched.client.folder_ls, folder_id=2)
        await r.spawn("third", sched.call, sched.client.file_ls, 3)
    starts = {(c.method, c.args or (c.kwargs["folder_id"],)): c.start - t0 for c in client.calls}
    assert starts[("folder_ls", (2,))] == pytest.approx(B.listing_interval)
    assert starts[("file_ls", (3,))] == pytest.approx(2 * B.listing_interval)
    assert [c.start - t0 for c in client.calls if c.args == (1,)] == pytest.approx([0, B.same_folder_interval])


async def test_folder_ls_and_file_ls_share_the_per_folder_clock(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    await sched.call(sched.client.folder_ls, 7)
    await sched.call(sched.client.file_ls, 7, lane=Lane.BACKGROUND)
    assert gaps(client.started()) == pytest.approx([B.same_folder_interval])


async def test_all_files_listing_once_an_hour(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    await sched.call(sched.client.file_ls, -1, lane=Lane.BACKGROUND)
    async with trio.open_nursery() as n:
        n.start_soon(lambda: sched.call(sched.client.file_ls, -1, lane=Lane.BACKGROUND))
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(sched.call, sched.client.file_ls, 5)
    t = {c.args[0]: c.start for c in client.calls[1:]}
    t0 = client.calls[0].start
    assert t[5] - t0 == pytest.approx(B.listing_interval)
    assert t[-1] - t0 == pytest.approx(B.all_files_interval)


async def test_user_info_spacing(autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient) -> None:
    await sched.call(sched.client.user_info, lane=Lane.BACKGROUND)
    await sched.call(sched.client.user_info, lane=Lane.BACKGROUND)
    assert gaps(client.started()) == pytest.approx([B.user_info_interval])
    assert sched.next_allowed("user/info") == pytest.approx(B.user_info_interval)


async def test_next_allowed(autojump_clock: trio.testing.MockClock, sched: Scheduler) -> None:
    assert sched.next_allowed("folder/ls", 3) == 0
    await sched.call(sched.client.folder_ls, 3)
    assert sched.next_allowed("file/info") == pytest.approx(B.min_interval)
    assert sched.next_allowed("folder/ls") == pytest.approx(B.listing_interval)
    assert sched.next_allowed("folder/ls", 3) == pytest.approx(B.same_folder_interval)
    assert sched.next_allowed("file/ls.cgi", 3) == pytest.approx(B.same_folder_interval)
    assert sched.next_allowed("file/ls", -1) == pytest.approx(B.listing_interval)
    assert sched.next_allowed("download") == 0


# ---------------------------------------------------------------------------- lanes


async def test_interactive_overtakes_queued_background_fifo_within_lane(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    gate = client.hold("file_rm")
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("busy", sched.call, sched.client.file_rm, ["busy"], lane=Lane.WRITEBACK)
        await r.spawn("bg1", sched.call, sched.client.file_info, "bg1", lane=Lane.BACKGROUND)
        await r.spawn("bg2", sched.call, sched.client.file_info, "bg2", lane=Lane.BACKGROUND)
        await r.spawn("wb", sched.call, sched.client.file_info, "wb", lane=Lane.WRITEBACK)
        await r.spawn("pf", sched.call, sched.client.file_info, "pf", lane=Lane.PREFETCH)
        await r.spawn("ia", sched.call, sched.client.file_info, "ia", lane=Lane.INTERACTIVE)
        assert sched.statistics()["queued"] == {"interactive": 1, "prefetch": 1, "writeback": 1, "background": 2}
        gate.set()
    assert [c.args[0] for c in client.calls[1:]] == ["ia", "pf", "wb", "bg1", "bg2"]


async def test_listing_blocked_by_its_budget_does_not_block_a_token_call(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    await sched.call(sched.client.folder_ls, 9)
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("relist", sched.call, sched.client.folder_ls, 9, lane=Lane.INTERACTIVE, coalesce=False)
        await r.spawn("relist_pf", sched.call, sched.client.folder_ls, 9, lane=Lane.PREFETCH, coalesce=False)
        await r.spawn("token", sched.call, sched.client.download_get_token, "https://1fichier.com/?a", lane=Lane.BACKGROUND)
    # 31 s > stall_limit: the INTERACTIVE re-list fails at once with EAGAIN ...
    assert isinstance(r.out["relist"], FloodLocked)
    assert r.out["relist"].errno == FloodLocked.errno
    assert r.out["relist"].retry_after == pytest.approx(B.same_folder_interval, abs=0.01)
    # ... the PREFETCH one waits its turn; the token call goes first.
    assert [c.method for c in client.calls] == ["folder_ls", "download_get_token", "folder_ls"]
    assert client.calls[1].start - client.calls[0].start == pytest.approx(B.min_interval)
    assert client.calls[2].start - client.calls[0].start == pytest.approx(B.same_folder_interval)


# ---------------------------------------------------------------------------- coalescing


async def test_concurrent_identical_listings_share_one_call(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 1.0
    listing = {"folder_id": 5, "items": []}
    client.behave("folder_ls", listing)
    async with trio.open_nursery() as n:
        r = Results(n)
        for i in range(10):
            await r.spawn(f"w{i}", sched.call, sched.client.folder_ls, 5, lane=Lane(i % 4))
    assert len(client.calls) == 1
    assert all(v is listing for v in r.out.values())
    assert sched.statistics()["coalesced"] == 9


async def test_coalesced_error_is_shared(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 1.0
    err = NotFound("Resource not found #469", code=469, http_status=404, endpoint="file/info")
    client.behave("file_info", err)
    async with trio.open_nursery() as n:
        r = Results(n)
        for i in range(4):
            await r.spawn(f"w{i}", sched.call, sched.client.file_info, "https://1fichier.com/?x")
    assert len(client.calls) == 1
    assert all(v is err for v in r.out.values())


async def test_different_args_and_mutations_do_not_coalesce(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(sched.call, sched.client.file_rm, ("u",))
        n.start_soon(lambda: sched.call(sched.client.folder_ls, 1, files=True))
        n.start_soon(lambda: sched.call(sched.client.folder_ls, 1, files=False, lane=Lane.BACKGROUND))
        for _ in range(2):
            n.start_soon(lambda: sched.call(sched.client.download_get_token, "u", single=True))
    counts: dict[str, int] = defaultdict(int)
    for c in client.calls:
        counts[c.method] += 1
    assert counts == {"file_rm": 3, "folder_ls": 2, "download_get_token": 2}
    with pytest.raises(ValueError):
        await sched.call(sched.client.file_rm, ["u"], coalesce=True)


async def test_coalesce_false_forces_separate_calls(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(lambda: sched.call(sched.client.file_info, "u", coalesce=False))
    assert len(client.calls) == 3


async def test_joining_waiter_promotes_the_job_lane(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    gate = client.hold("file_rm")
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("busy", sched.call, sched.client.file_rm, ["busy"])
        await r.spawn("bg_other", sched.call, sched.client.file_info, "other", lane=Lane.BACKGROUND)
        await r.spawn("bg_x", sched.call, sched.client.file_info, "x", lane=Lane.BACKGROUND)
        await r.spawn("ia_x", sched.call, sched.client.file_info, "x", lane=Lane.INTERACTIVE)
        gate.set()
    assert [c.args[0] for c in client.calls[1:]] == ["x", "other"]
    assert r.out["bg_x"] is r.out["ia_x"]


# ---------------------------------------------------------------------------- breaker


async def test_breaker_opens_no_call_while_open_then_retries_in_place(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("file_info", flood())
    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("a", sched.call, sched.client.file_info, "a", lane=Lane.WRITEBACK)
        assert sched.statistics()["breaker"] == "open"
        await r.spawn("b", sched.call, sched.client.file_info, "b", lane=Lane.WRITEBACK)
        await r.spawn("c", sched.call, sched.client.file_mv, ["c"], 3, lane=Lane.BACKGROUND)
    assert r.out["a"] == ("ok", "file_info", ("a",))
    starts = [(c.args[0], c.start - t0) for c in client.calls]
    assert starts[0] == ("a", 0)
    assert all(t >= B.breaker_base - EPS for _, t in starts[1:])
    # the flood-failed call keeps its place: it is the half-open probe, before b
    assert [a for a, _ in starts] == ["a", "a", "b", ["c"]]
    assert starts[1][1] == pytest.approx(B.breaker_base)
    st_ = sched.statistics()
    assert st_["breaker"] == "closed" and st_["breaker_opens"] == 1
    assert st_["errors"] == {"file/info": 1}


async def test_breaker_doubles_half_open_single_probe_and_resets(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 5.0
    client.behave("file_info", flood(), flood(), flood())
    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("a", sched.call, sched.client.file_info, "a", lane=Lane.WRITEBACK)
        for name in "bcd":
            await r.spawn(name, sched.call, sched.client.file_info, name, lane=Lane.BACKGROUND)
    t = [c.start - t0 for c in client.calls]
    # a floods at 0 (ends at 5): open 60 s; probe at 65 floods (ends 70): open 120 s;
    # probe at 190 floods (ends 195): open 240 s; probe at 435 succeeds and closes.
    assert t[:4] == pytest.approx([0, 65, 190, 435])
    assert [c.args[0] for c in client.calls[:4]] == ["a"] * 4
    # half-open: only the probe runs; b starts after the probe ended (+ min_interval gate)
    assert t[4] >= t[3] + client.duration - EPS
    assert client.max_active == 1
    assert sched.statistics()["breaker_opens"] == 3
    # doubling was reset by the success: a new flood opens for breaker_base again
    client.behave("file_info", flood())
    t1 = trio.current_time()
    await sched.call(sched.client.file_info, "e", lane=Lane.WRITEBACK)
    assert client.calls[-1].start - t1 == pytest.approx(client.duration + B.breaker_base, abs=B.min_interval + EPS)


async def test_breaker_cap(autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient) -> None:
    sched = await start(Budgets(breaker_base=60, breaker_max=100))
    client.behave("folder_mkdir", flood(), flood(), flood())
    await sched.call(sched.client.folder_mkdir, 0, "x", lane=Lane.WRITEBACK)
    assert gaps(client.started()) == pytest.approx([60, 100, 100])


async def test_interactive_flood_beyond_stall_limit_raises_with_retry_after(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("folder_ls", flood())
    t0 = trio.current_time()
    with pytest.raises(FloodLocked) as info:
        await sched.call(sched.client.folder_ls, 1)
    assert trio.current_time() == pytest.approx(t0)  # no point waiting 30 s for a 60 s lock
    assert info.value.retry_after == pytest.approx(B.breaker_base)
    assert info.value.code == 412
    assert isinstance(info.value.__cause__, FloodLocked)
    # while the breaker is open, a new interactive call fails at once, without an API call
    with pytest.raises(FloodLocked) as info2:
        await sched.call(sched.client.file_info, "u")
    assert info2.value.retry_after == pytest.approx(B.breaker_base)
    assert len(client.calls) == 1
    stats = sched.statistics()
    assert stats["stalled"] == 2 and stats["queued"]["interactive"] == 0
    assert stats["breaker_closes_in"] == pytest.approx(B.breaker_base)


async def test_interactive_waits_out_a_short_breaker(
    autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient
) -> None:
    sched = await start(Budgets(breaker_base=20))
    client.behave("file_info", flood())
    t0 = trio.current_time()
    assert await sched.call(sched.client.file_info, "u") == ("ok", "file_info", ("u",))
    assert trio.current_time() - t0 == pytest.approx(20)


async def test_interactive_stall_limit_at_deadline_behind_a_queue(
    autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient
) -> None:
    # calls 5 s apart: the 4th would start at 15 s, beyond stall_limit (12 s)
    sched = await start(Budgets(min_interval=5, stall_limit=12))
    async with trio.open_nursery() as n:
        r = Results(n)
        for i in range(6):
            await r.spawn(i, sched.call, sched.client.file_info, f"u{i}")
    ok = [i for i, v in r.out.items() if not isinstance(v, Exception)]
    failed = {i: v for i, v in r.out.items() if isinstance(v, FloodLocked)}
    assert sorted(ok) == [0, 1, 2]
    assert sorted(failed) == [3, 4, 5]
    assert all(r.at[i] == pytest.approx(12) for i in failed)
    assert all(failed[i].retry_after == pytest.approx(3) for i in failed)
    assert len(client.calls) == 3


async def test_non_interactive_lanes_never_stall(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    await sched.call(sched.client.user_info, lane=Lane.BACKGROUND)
    await sched.call(sched.client.user_info, lane=Lane.PREFETCH)
    with pytest.raises(FloodLocked) as info:
        await sched.call(sched.client.user_info)
    assert info.value.retry_after == pytest.approx(B.user_info_interval)


async def test_unmetered_flood_opens_breaker_but_legs_keep_running(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("upload_end", flood())
    with pytest.raises(FloodLocked):
        await sched.call(sched.client.upload_end, "up2.1fichier.com", "id", retries=0)
    assert sched.statistics()["breaker"] == "open"
    assert await sched.call(sched.client.download_range, "https://a-6.1fichier.com/p1", 0, 10) == (
        "ok",
        "download_range",
        ("https://a-6.1fichier.com/p1", 0, 10),
    )


# ---------------------------------------------------------------------------- retries and fatal errors


async def test_transient_error_retried_with_backoff(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("file_info", ServerError("HTTP 502"), ServerError("reset"), ServerError("timeout"))
    t0 = trio.current_time()
    assert await sched.call(sched.client.file_info, "u") == ("ok", "file_info", ("u",))
    assert [t - t0 for t in client.started()] == pytest.approx([0, 1, 3, 7])  # back-off 1, 2, 4 s
    assert sched.statistics()["retries"] == 3


async def test_backoff_capped_and_jittered(
    autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient
) -> None:
    sched = await start(Budgets(retry_base=10, retry_max=15), jitter=lambda: 0.0)
    client.behave("file_info", ServerError("a"), ServerError("b"), ServerError("c"))
    await sched.call(sched.client.file_info, "u", lane=Lane.BACKGROUND)
    assert gaps(client.started()) == pytest.approx([5, 7.5, 7.5])  # min(10 * 2**n, 15) * 0.5


async def test_retries_exhausted_raises_last_error(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    errs = [ServerError(str(i)) for i in range(10)]
    client.behave("file_info", *errs)
    with pytest.raises(ServerError) as info:
        await sched.call(sched.client.file_info, "u", retries=2)
    assert info.value is errs[2]
    assert len(client.calls) == 3
    assert sched.statistics()["errors"]["file/info"] == 3


async def test_backoff_does_not_hold_the_dispatcher(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("file_info", ServerError("x"))
    async with trio.open_nursery() as n:
        n.start_soon(lambda: sched.call(sched.client.file_info, "u", retries=1, lane=Lane.INTERACTIVE))
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(lambda: sched.call(sched.client.file_rm, ["v"], lane=Lane.BACKGROUND))
    t0 = client.calls[0].start
    assert [(c.method, c.start - t0) for c in client.calls] == [
        ("file_info", 0),
        ("file_rm", pytest.approx(B.min_interval)),
        ("file_info", pytest.approx(B.retry_base)),
    ]


async def test_backoff_time_does_not_count_against_stall_limit(
    autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient
) -> None:
    sched = await start(Budgets(stall_limit=2, retry_base=3))
    client.behave("file_info", ServerError("x"), ServerError("y"))
    assert await sched.call(sched.client.file_info, "u") == ("ok", "file_info", ("u",))
    assert gaps(client.started()) == pytest.approx([3, 6])


@pytest.mark.parametrize(
    "err",
    [
        NotFound("Resource not found #469", code=469),
        RequestRejected("No file has been renamed #312", code=312),
        ValueError("a bug in the client"),
    ],
)
async def test_non_retryable_propagates_after_one_call(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient, err: Exception
) -> None:
    client.behave("file_rename", err)
    with pytest.raises(type(err)) as info:
        await sched.call(sched.client.file_rename, [("u", "n")])
    assert info.value is err
    assert len(client.calls) == 1
    await sched.call(sched.client.file_rename, [("u", "n")])  # the scheduler still works


async def test_auth_error_fails_fast_forever(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.duration = 1.0
    err = AuthError("No such user #93", code=93, http_status=403)
    client.behave("folder_ls", err)
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("a", sched.call, sched.client.folder_ls, 0)
        await r.spawn("b", sched.call, sched.client.file_info, "u", lane=Lane.BACKGROUND)
        await r.spawn("c", sched.call, sched.client.user_info, lane=Lane.WRITEBACK)
    assert all(v is err for v in r.out.values())
    with pytest.raises(AuthError):
        await sched.call(sched.client.file_rm, ["u"])
    assert len(client.calls) == 1
    stats = sched.statistics()
    assert stats["auth_failed"] is True
    assert sum(stats["queued"].values()) == 0
    assert sched.next_allowed("file/info") == math.inf
    # unmetered legs are not the API: an existing download link may still work
    await sched.call(sched.client.download_range, "https://a-6.1fichier.com/p1")


# ---------------------------------------------------------------------------- unmetered legs


async def test_unmetered_legs_run_concurrently_and_are_capped(
    autojump_clock: trio.testing.MockClock, start: Any, client: FakeClient
) -> None:
    sched = await start(Budgets(max_concurrent_transfers=3))
    client.duration = 10.0
    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        for i in range(6):
            n.start_soon(sched.call, sched.client.download_range, f"https://a-1.1fichier.com/p{i}")
        n.start_soon(sched.call, sched.client.upload_post, "up2.1fichier.com", "id", b"data")
    starts = sorted(t - t0 for t in client.started())
    assert starts == pytest.approx([0, 0, 0, 10, 10, 10, 20])
    assert client.max_active == 3
    assert sched.statistics()["calls"] == {"download": 6, "upload.cgi": 1}


async def test_unmetered_bypass_open_breaker_and_pacing(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    client.behave("file_cp", flood())
    async with trio.open_nursery() as n:
        n.start_soon(lambda: sched.call(sched.client.file_cp, ["u"], 4, lane=Lane.WRITEBACK))
        await trio.testing.wait_all_tasks_blocked()
        assert sched.statistics()["breaker"] == "open"
        t = trio.current_time()
        for i in range(3):
            await sched.call(sched.client.download_range, f"p{i}")
            await sched.call(sched.client.upload_end, "up2", f"id{i}")
        assert [c.start for c in client.calls[1:]] == pytest.approx([t] * 6)
    assert client.calls[-1].method == "file_cp"


async def test_unmetered_retry_policy(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    from fichierfs.errors import BadReply, UploadFailed

    client.behave("upload_end", BadReply("<html>"), UploadFailed("no links"))
    assert await sched.call(sched.client.upload_end, "up2", "id") == ("ok", "upload_end", ("up2", "id"))
    assert gaps(client.started("upload_end")) == pytest.approx([1, 2])
    client.behave("upload_post", ServerError("reset"))
    with pytest.raises(ServerError):  # never re-POST an upload by default (§8 item 7)
        await sched.call(sched.client.upload_post, "up2", "id", b"x")
    assert len(client.started("upload_post")) == 1


# ---------------------------------------------------------------------------- cancellation and lifecycle


async def test_cancelled_while_queued_leaves_no_trace(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    gate = client.hold("file_rm")
    async with trio.open_nursery() as n:
        n.start_soon(sched.call, sched.client.file_rm, ["busy"])
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1):
            await sched.call(sched.client.file_info, "never", lane=Lane.PREFETCH)
        assert sched.statistics()["queued"]["prefetch"] == 0
        gate.set()
    await sched.call(sched.client.file_info, "later")
    assert [c.args[0] for c in client.calls] == [["busy"], "later"]


async def test_coalesced_call_survives_one_waiter_cancelled(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    gate = client.hold("folder_ls")
    async with trio.open_nursery() as n:
        r = Results(n)
        await r.spawn("first", sched.call, sched.client.folder_ls, 5, lane=Lane.PREFETCH)
        assert len(client.calls) == 1  # running, held by the gate
        scopes: list[trio.CancelScope] = []

        async def leaver() -> None:
            with trio.CancelScope() as scope:
                scopes.append(scope)
                await sched.call(sched.client.folder_ls, 5)

        n.start_soon(leaver)
        await r.spawn("keeper", sched.call, sched.client.folder_ls, 5, lane=Lane.BACKGROUND)
        assert sched.statistics()["coalesced"] == 2
        scopes[0].cancel()  # the joiner leaves; the call keeps running for the others
        await trio.testing.wait_all_tasks_blocked()
        assert scopes[0].cancelled_caught
        gate.set()
    assert r.out["first"] == r.out["keeper"] == ("ok", "folder_ls", (5,))
    assert len(client.calls) == 1


async def test_all_waiters_cancelled_while_queued_drops_the_job(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    gate = client.hold("file_rm")
    async with trio.open_nursery() as n:
        n.start_soon(sched.call, sched.client.file_rm, ["busy"])
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1):
            async with trio.open_nursery() as inner:
                for _ in range(3):
                    inner.start_soon(lambda: sched.call(sched.client.folder_ls, 5, lane=Lane.BACKGROUND))
        assert sum(sched.statistics()["queued"].values()) == 0
        gate.set()
    await trio.sleep(100)
    assert [c.method for c in client.calls] == ["file_rm"]


async def test_not_running_and_stop(autojump_clock: trio.testing.MockClock, client: FakeClient) -> None:
    sched = Scheduler(client, B)
    with pytest.raises(RuntimeError):
        await sched.call(sched.client.file_info, "u")
    assert await sched.call(sched.client.download_range, "p") == ("ok", "download_range", ("p",))  # no dispatcher needed
    async with trio.open_nursery() as n:
        await n.start(sched.run)
        with pytest.raises(RuntimeError):
            await n.start(sched.run)
        await sched.call(sched.client.user_info)
        r = Results(n)
        await r.spawn("late", sched.call, sched.client.user_info, lane=Lane.BACKGROUND)
        sched.stop()
    assert isinstance(r.out["late"], trio.ClosedResourceError)
    with pytest.raises(RuntimeError):
        await sched.call(sched.client.file_info, "u")


# ---------------------------------------------------------------------------- statistics


async def test_statistics_contents(
    autojump_clock: trio.testing.MockClock, sched: Scheduler, client: FakeClient
) -> None:
    stats = sched.statistics()
    assert stats == {
        "calls": {},
        "errors": {},
        "queued": {"interactive": 0, "prefetch": 0, "writeback": 0, "background": 0},
        "in_flight": 0,
        "transfers_in_flight": 0,
        "breaker": "closed",
        "breaker_opens": 0,
        "breaker_closes_in": 0.0,
        "next_call_in": 0.0,
        "calls_last_60s": 0,
        "calls_left_this_minute": 120,
        "retries": 0,
        "coalesced": 0,
        "stalled": 0,
        "auth_failed": False,
        "connection": "ok",
        "unreachable_for": 0.0,
        "unreachable_error": None,
    }
    client.behave("file_info", ServerError("x"))
    await sched.call(sched.client.file_info, "u")
    await sched.call(sched.client.folder_ls, 0)
    await sched.call(sched.client.download_range, "p")
    stats = sched.statistics()
    assert stats["calls"] == {"file/info": 2, "folder/ls": 1, "download": 1}
    assert stats["errors"] == {"file/info": 1}
    assert stats["retries"] == 1
    assert stats["calls_last_60s"] == 3
    assert stats["calls_left_this_minute"] == 117
    assert stats["connection"] == "ok"  # a 5xx is an answer; only "never reached" is unreachable
    assert stats["next_call_in"] == pytest.approx(B.min_interval)
    await trio.sleep(61)
    assert sched.statistics()["calls_last_60s"] == 0


# ---------------------------------------------------------------------------- property


METERED = ["folder/ls", "file/ls", "file/info", "user/info", "download/get_token", "file/rm", "folder/mkdir"]
OUTCOMES = st.sampled_from(["ok", "ok", "ok", "transient", "flood", "notfound"])


@st.composite
def scenario(draw: Any) -> list[tuple[float, str, int, Lane, list[str]]]:
    n = draw(st.integers(1, 14))
    return [
        (
            draw(st.sampled_from([0.0, 0.0, 0.1, 1.0, 5.0, 40.0])),
            draw(st.sampled_from(METERED)),
            draw(st.sampled_from([-1, 0, 1, 2])),
            draw(st.sampled_from(list(Lane))),
            draw(st.lists(OUTCOMES, max_size=3)),
        )
        for _ in range(n)
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.floats(0.0, 2.0), st.integers(0, 2**32 - 1))
@example(  # regression: an INTERACTIVE waiter past its deadline while its job sat in a retry back-off
    [(0.0, "folder/ls", -1, Lane.PREFETCH, ["flood"]), (5.0, "file/info", -1, Lane.INTERACTIVE, ["transient"])]
    + [(0.0, "folder/ls", -1, Lane.INTERACTIVE, [])] * 6,
    0.75,
    0,
)
def test_property_budgets_hold_for_random_call_sequences(
    calls: list[tuple[float, str, int, Lane, list[str]]], duration: float, seed: int
) -> None:
    budgets = B.scaled(0.1)
    client = FakeClient(duration=duration)
    outcomes = {
        "transient": lambda: ServerError("502"),
        "flood": flood,
        "notfound": lambda: NotFound("Resource not found #469", code=469),
    }

    async def main() -> None:
        sched = Scheduler(client, budgets, jitter=random.Random(seed).random)
        async with trio.open_nursery() as n:
            await n.start(sched.run)
            async with trio.open_nursery() as callers:
                for delay, endpoint, folder, lane, script in calls:
                    await trio.sleep(delay)
                    method = endpoint.replace("/", "_")
                    client.behave(method, *(outcomes[o]() if o != "ok" else ("ok",) for o in script))
                    args: tuple[Any, ...] = (folder,) if endpoint in ("folder/ls", "file/ls") else ()

                    async def one(endpoint: str = endpoint, args: tuple[Any, ...] = args, lane: Lane = lane) -> None:
                        with contextlib.suppress(ServerError, NotFound, FloodLocked):
                            await sched.call(getattr(client, endpoint.replace("/", "_")), *args, lane=lane)

                    callers.start_soon(one)
            assert sum(sched.statistics()["queued"].values()) == 0
            sched.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    eps = 1e-6
    starts = [(c.start, c.method, c.args) for c in client.calls]
    assert all(g >= budgets.min_interval - eps for g in gaps([s for s, _, _ in starts]))
    # one metered call at a time
    assert all(b.start >= a.end - eps for a, b in itertools.pairwise(client.calls))
    listings = [(s, m, a[0]) for s, m, a in starts if m in ("folder_ls", "file_ls")]
    assert all(g >= budgets.listing_interval - eps for g in gaps([s for s, _, _ in listings]))
    per_folder: dict[Any, list[float]] = defaultdict(list)
    for s, m, folder in listings:
        per_folder["all" if (m, folder) == ("file_ls", -1) else folder].append(s)
    for folder, times in per_folder.items():
        limit = budgets.all_files_interval if folder == "all" else budgets.same_folder_interval
        assert all(g >= limit - eps for g in gaps(times)), (folder, times)
    assert all(g >= budgets.user_info_interval - eps for g in gaps(client.started("user_info")))
    # after a flood lock, nothing starts for breaker_base
    for a, b in itertools.pairwise(client.calls):
        if isinstance(getattr(a, "raised", None), FloodLocked):
            assert b.start >= a.end + budgets.breaker_base - eps


async def test_history_survives_a_restart(autojump_clock) -> None:
    """A new process learns when the old one listed a folder: no second listing within 31 s (§4)."""
    old = Scheduler(FakeClient(), Budgets())
    async with trio.open_nursery() as n:
        await n.start(old.run)
        await old.call(old.client.folder_ls, 5)
        hist = old.export_history()
        old.stop()
    new = Scheduler(FakeClient(), Budgets())
    new.import_history(hist, elapsed=10.0)  # the new process starts 10 s later (wall clock)
    wait = new.next_allowed("folder/ls", 5)
    assert 20.0 < wait <= 21.0
    assert new.next_allowed("folder/ls", 6) <= Budgets().listing_interval
    new.import_history({"breaker_open_for": 50.0}, elapsed=20.0)
    assert new.statistics()["breaker"] == "open"


async def test_a_refused_connection_costs_no_budget(autojump_clock) -> None:
    """A call that never reached 1fichier (connection refused) does not use the folder's 30 s."""
    from fichierfs.errors import ServerError

    refused = ServerError("folder/ls: connection failed (ConnectError)")
    refused.reached_server = False
    client = FakeClient()
    client.behave("folder_ls", refused)
    s = Scheduler(client, Budgets())
    async with trio.open_nursery() as n:
        await n.start(s.run)
        await s.call(s.client.folder_ls, 5)  # fails once, retried, then answered
        assert len(client.calls) == 2
        gap = client.calls[1].start - client.calls[0].start
        assert gap < Budgets().same_folder_interval  # the retry did not wait the folder's 31 s
        s.stop()


async def test_status_says_when_1fichier_cannot_be_reached(autojump_clock) -> None:
    """Issue 11.7: the header said "API ok" while every call failed with ConnectError."""
    from fichierfs.errors import ServerError

    refused = ServerError("folder/ls: connection failed (ConnectError)")
    refused.reached_server = False
    client = FakeClient()
    client.behave("folder_ls", refused)
    s = Scheduler(client, Budgets())
    async with trio.open_nursery() as n:
        await n.start(s.run)
        with pytest.raises(ServerError):
            await s.call(s.client.folder_ls, 5, retries=0)
        st = s.statistics()
        assert st["connection"] == "unreachable" and "ConnectError" in st["unreachable_error"]
        await s.call(s.client.folder_ls, 6)  # answered now
        assert s.statistics()["connection"] == "ok"
        s.stop()


# ---------------------------------------------------------------------------- bound methods


def test_every_client_endpoint_is_marked_and_known_to_the_scheduler() -> None:
    """Budgets and coalescing come from each method's @endpoint mark: none may be missing."""
    import inspect

    from fichierfs.api import FichierClient, endpoint_of
    from fichierfs.scheduler import LISTINGS, METERED_READ_ONLY, UNMETERED

    public = [m for n, m in inspect.getmembers(FichierClient, inspect.iscoroutinefunction) if not n.startswith("_")]
    marks = {endpoint_of(m) for m in public}
    # download_range and download_chunks (issue 15: chunks cut on arrival) share the "download" leg;
    # file_info and file_info_by_name (issue 13: a name asked in a folder being completed) "file/info"
    assert None not in marks and len(marks) == len(public) - 2 == 17
    assert LISTINGS | METERED_READ_ONLY | UNMETERED <= marks
    assert ENDPOINTS["folder_ls"] == "folder/ls" and ENDPOINTS["download_range"] == "download"


async def test_call_wants_a_client_method(autojump_clock: trio.testing.MockClock, sched: Scheduler) -> None:
    with pytest.raises(TypeError, match="client method"):
        await sched.call("folder/ls", 1)  # type: ignore[arg-type]

    async def unmarked() -> None: ...

    with pytest.raises(TypeError, match="no @endpoint mark"):
        await sched.call(unmarked)
    assert sched.statistics()["calls"] == {}
