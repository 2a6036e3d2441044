"""ChunkCache: LRU under one byte budget, single-flight fetches, windows, invalidation."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fichierfs.chunks import ChunkCache
from fichierfs.errors import NotFound, ServerError

CS = 16  # bytes per chunk: small numbers keep the arithmetic readable


def content(url: str, n: int, cs: int = CS) -> bytes:
    """Deterministic bytes of chunk n of file url (every byte differs between neighbours)."""
    seed = (sum(url.encode()) * 131 + n * 7) % 251
    return bytes((seed + i) % 256 for i in range(cs))


def joined(url: str, first: int, stop: int) -> bytes:
    return b"".join(content(url, n) for n in range(first, stop))


class Fetches:
    """Records ranged fetches; optional delay (s) and scripted failure."""

    def __init__(self, delay: float = 1.0) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.delay = delay
        self.fail: BaseException | None = None

    def for_file(self, url: str):  # noqa: ANN201
        async def fetch(first: int, stop: int) -> bytes:
            self.calls.append((url, first, stop))
            await trio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return joined(url, first, stop)

        return fetch


# ---------------------------------------------------------------------- plain LRU


def test_put_get_nowait_and_lru_order() -> None:
    c = ChunkCache(4 * CS, CS)
    for n in range(4):
        assert c.put(("f", n), content("f", n))
    assert c.cached_bytes == 4 * CS
    assert c.get_nowait(("f", 0)) == content("f", 0)  # 0 becomes most recent
    assert c.put(("f", 4), content("f", 4))  # evicts 1, the least recently used
    assert c.get_nowait(("f", 1)) is None
    assert [k for k in (("f", n) for n in range(5)) if k in c] == [("f", 0), ("f", 2), ("f", 3), ("f", 4)]
    s = c.statistics()
    assert s["evictions"] == 1 and s["evicted_bytes"] == CS
    assert s["hits"] == 1 and s["misses"] == 1
    assert s["cached_bytes"] == 4 * CS and s["cached_chunks"] == 4
    c.check_invariants()


def test_short_last_chunk_counts_its_real_size() -> None:
    c = ChunkCache(2 * CS, CS)
    c.put(("f", 0), b"abc")
    assert c.cached_bytes == 3
    with pytest.raises(ValueError):
        c.put(("f", 1), b"x" * (CS + 1))


def test_invalidate_drops_one_file_only() -> None:
    c = ChunkCache(8 * CS, CS)
    for n in range(3):
        c.put(("a", n), content("a", n))
        c.put(("b", n), content("b", n))
    assert c.invalidate("a") == 3 * CS
    assert all(("a", n) not in c for n in range(3))
    assert all(c.peek(("b", n)) == content("b", n) for n in range(3))
    assert c.statistics()["files"] == 1
    c.check_invariants()


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        ChunkCache(CS - 1, CS)
    with pytest.raises(ValueError):
        ChunkCache(4 * CS, 0)


# ---------------------------------------------------------------------- single-flight


async def test_concurrent_gets_share_one_fetch(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(8 * CS, CS)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        return content("f", 3)

    results: list[bytes] = []

    async def getter() -> None:
        results.append(await c.get(("f", 3), fetch))

    async with trio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(getter)
    assert calls == 1
    assert results == [content("f", 3)] * 10
    s = c.statistics()
    assert s["coalesced"] == 9 and s["fetches"] == 1 and s["inflight_chunks"] == 0 and s["inflight_bytes"] == 0
    assert await c.get(("f", 3), fetch) == content("f", 3) and calls == 1  # now a hit


async def test_failed_fetch_wakes_every_waiter_and_leaves_no_entry(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(8 * CS, CS)
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        raise NotFound("file gone")

    errors: list[BaseException] = []

    async def getter() -> None:
        try:
            await c.get(("f", 0), failing)
        except NotFound as exc:
            errors.append(exc)

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(getter)
    assert calls == 1 and len(errors) == 5
    assert ("f", 0) not in c and not c.in_flight(("f", 0))
    assert c.reserved_bytes == 0 and c.statistics()["fetch_errors"] == 1

    async def ok() -> bytes:
        return content("f", 0)

    assert await c.get(("f", 0), ok) == content("f", 0)  # the next get fetches again


async def test_cancelled_fetcher_lets_a_waiter_fetch_instead(autojump_clock: trio.testing.MockClock) -> None:
    """A Cancelled belongs to the cancelled task: waiters retry, they never see it."""
    c = ChunkCache(8 * CS, CS)
    calls = 0

    async def slow() -> bytes:
        nonlocal calls
        calls += 1
        await trio.sleep(10)
        return content("f", 0)

    got: list[bytes] = []

    async def waiter() -> None:
        await trio.sleep(1)
        got.append(await c.get(("f", 0), slow))

    async with trio.open_nursery() as n:
        with trio.move_on_after(2):
            n.start_soon(waiter)
            await c.get(("f", 0), slow)  # first fetcher, cancelled at t=2
    assert got == [content("f", 0)] and calls == 2
    assert c.reserved_bytes == 0
    c.check_invariants()


# ---------------------------------------------------------------------- windows


async def test_get_range_fetches_missing_runs_in_one_get_each(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)
    f = Fetches()
    c.put(("f", 3), content("f", 3))
    chunks = await c.get_range("f", 0, 6, f.for_file("f"))
    assert b"".join(chunks) == joined("f", 0, 6)
    assert f.calls == [("f", 0, 3), ("f", 4, 6)]  # chunk 3 was cached: two runs, two GETs
    assert all(("f", n) in c for n in range(6))
    c.check_invariants()


async def test_get_range_extends_the_last_run_over_free_chunks(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)
    f = Fetches()
    c.put(("f", 6), content("f", 6))
    chunks = await c.get_range("f", 0, 2, f.for_file("f"), extend_to=10)
    assert b"".join(chunks) == joined("f", 0, 2)
    assert f.calls == [("f", 0, 6)]  # stopped at the cached chunk 6
    assert all(("f", n) in c for n in range(7))


async def test_get_range_waits_for_chunks_in_flight_elsewhere(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)
    f = Fetches(delay=5)
    w = c.claim("f", 2, 6, optional=True)
    assert w is not None and w.runs == [(2, 6)]
    async with trio.open_nursery() as n:
        n.start_soon(w.run, f.for_file("f"))
        await trio.sleep(1)
        chunks = await c.get_range("f", 0, 4, f.for_file("f"))
    assert b"".join(chunks) == joined("f", 0, 4)
    assert sorted(f.calls) == [("f", 0, 2), ("f", 2, 6)]  # 2 and 3 were not fetched twice


async def test_optional_window_shrinks_or_is_skipped_when_tight() -> None:
    c = ChunkCache(8 * CS, CS, readahead_share=0.5)  # read-ahead may reserve 4 chunks
    w = c.claim("f", 0, 10, optional=True)
    assert w is not None and (w.first, w.stop) == (0, 4) and w.nbytes == 4 * CS
    assert c.reserved_bytes == 4 * CS
    assert c.claim("g", 0, 4, optional=True) is None  # nothing left for read-ahead
    s = c.statistics()
    assert s["readahead_shrunk"] == 1 and s["readahead_skipped"] == 1 and s["inflight_chunks"] == 4
    w.abandon()
    assert c.reserved_bytes == 0 and not c.in_flight(("f", 0))


async def test_optional_window_of_cached_chunks_has_no_runs() -> None:
    c = ChunkCache(8 * CS, CS)
    for n in range(3):
        c.put(("f", n), content("f", n))
    w = c.claim("f", 0, 3, optional=True)
    assert w is not None and w.runs == [] and w.stop == 3
    await w.run(Fetches().for_file("f"))  # no call


async def test_failed_read_ahead_is_abandoned_so_waiters_fetch_themselves(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)
    bad = Fetches(delay=2)
    bad.fail = ServerError("reset")
    good = Fetches(delay=1)
    w = c.claim("f", 0, 4, optional=True)
    assert w is not None

    async def prefetch() -> None:
        with pytest.raises(ServerError):
            await w.run(bad.for_file("f"))

    async with trio.open_nursery() as n:
        n.start_soon(prefetch)
        await trio.sleep(0.5)
        chunks = await c.get_range("f", 1, 2, good.for_file("f"))
    assert chunks == [content("f", 1)]
    assert good.calls == [("f", 1, 2)]


async def test_short_reply_fails_the_missing_chunks(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)

    async def short(first: int, stop: int) -> bytes:
        return joined("f", first, stop)[: CS + 3]

    with pytest.raises(ServerError):
        await c.get_range("f", 0, 3, short)
    assert ("f", 0) in c and ("f", 2) not in c and c.reserved_bytes == 0
    c.check_invariants()


async def test_invalidate_during_fetch_inserts_nothing(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(32 * CS, CS)
    f = Fetches(delay=2)
    got: list[list[bytes]] = []

    async def reader() -> None:
        got.append(await c.get_range("f", 0, 2, f.for_file("f")))

    async with trio.open_nursery() as n:
        n.start_soon(reader)
        await trio.sleep(1)
        c.invalidate("f")
    assert b"".join(got[0]) == joined("f", 0, 2)  # the waiter still gets its data
    assert ("f", 0) not in c and c.cached_bytes == 0


async def test_required_fetch_waits_for_budget_space(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(4 * CS, CS, readahead_share=1.0)
    w = c.claim("a", 0, 3, optional=True)  # 3 of 4 chunks reserved
    assert w is not None
    slow = Fetches(delay=10)
    fast = Fetches(delay=1)
    done_at: list[float] = []

    async def reader() -> None:
        await c.get_range("b", 0, 2, fast.for_file("b"))  # needs 2 chunks: waits for a
        done_at.append(trio.current_time())

    async with trio.open_nursery() as n:
        n.start_soon(w.run, slow.for_file("a"))
        n.start_soon(reader)
        while True:  # watch the budget while both run
            c.check_invariants()
            if done_at:
                break
            await trio.sleep(0.5)
    assert done_at[0] >= 10  # it waited for the read-ahead to land
    c.check_invariants()


async def test_fetch_larger_than_the_budget_is_admitted_alone(autojump_clock: trio.testing.MockClock) -> None:
    c = ChunkCache(2 * CS, CS)
    f = Fetches()
    chunks = await c.get_range("f", 0, 5, f.for_file("f"))
    assert b"".join(chunks) == joined("f", 0, 5)
    assert c.statistics()["peak_bytes"] <= 2 * CS + 5 * CS
    c.check_invariants()


# ---------------------------------------------------------------------- property


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    return {
        "budget_chunks": draw(st.integers(2, 10)),
        "share": draw(st.sampled_from([0.25, 0.5, 1.0])),
        "ops": draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["range", "get", "prefetch", "put", "invalidate"]),
                    st.integers(0, 4),  # start time (s)
                    st.sampled_from(["a", "b", "c"]),
                    st.integers(0, 12),  # first chunk
                    st.integers(1, 4),  # chunks (the largest window is 4)
                    st.integers(0, 3),  # fetch time (s)
                    st.booleans(),  # fetch fails
                ),
                min_size=1,
                max_size=25,
            )
        ),
    }


MAX_WINDOW = 4 * CS


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_traffic_never_exceeds_budget_plus_one_window(sc: dict[str, Any]) -> None:
    budget = sc["budget_chunks"] * CS

    async def main() -> None:
        c = ChunkCache(budget, CS, readahead_share=sc["share"])

        # A fetch larger than the whole budget may overshoot it by itself (admitted alone);
        # otherwise cached + in flight never exceeds the budget at all.
        slack = 0 if budget >= MAX_WINDOW else MAX_WINDOW

        def check() -> None:
            c.check_invariants(slack=slack)
            assert c.statistics()["peak_bytes"] <= budget + slack

        async def op(kind: str, at: int, url: str, first: int, count: int, delay: int, fail: bool) -> None:
            await trio.sleep(at)

            async def fetch_range(a: int, b: int) -> bytes:
                check()
                await trio.sleep(delay)
                check()
                if fail:
                    raise ServerError("scripted")
                return joined(url, a, b)

            try:
                if kind == "range":
                    chunks = await c.get_range(url, first, first + count, fetch_range)
                    assert b"".join(chunks) == joined(url, first, first + count)
                elif kind == "get":

                    async def one() -> bytes:
                        return await fetch_range(first, first + 1)

                    assert await c.get((url, first), one) == content(url, first)
                elif kind == "prefetch":
                    w = c.claim(url, first, first + count, optional=True)
                    if w is not None:
                        await w.run(fetch_range)
                elif kind == "put":
                    c.put((url, first), content(url, first))
                else:
                    c.invalidate(url)
            except ServerError:
                pass
            check()
            for n in range(first, first + count):  # whatever is cached is right
                data = c.peek((url, n))
                assert data is None or data == content(url, n)

        async with trio.open_nursery() as nursery:
            for args in sc["ops"]:
                nursery.start_soon(op, *args)
        check()
        assert c.reserved_bytes == 0 and c.statistics()["inflight_chunks"] == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_delivered_chunks_reach_readers_before_the_window_ends(autojump_clock: trio.testing.MockClock) -> None:
    """A fetch that hands each chunk over as it arrives (deliver) lets a reader of chunk 0 go on while the
    rest of the ranged GET is still coming (issue 15.5); the run still returns every chunk, each inserted once."""
    cache = ChunkCache(64 * CS, CS)
    url = "u"
    got_at: dict[int, float] = {}

    async def fetch(first: int, stop: int) -> list[bytes]:
        out = []
        for n in range(first, stop):
            await trio.sleep(1.0)  # one chunk per second on the wire
            piece = content(url, n)
            cache.deliver(n, piece)
            out.append(piece)
        return out

    async def reader(n: int) -> None:
        (c,) = await cache.get_range(url, n, n + 1, fetch)
        assert c == content(url, n)
        got_at[n] = trio.current_time()

    w = cache.claim(url, 0, 4, optional=True)
    assert w is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w.run, fetch)
        await trio.sleep(0.1)
        nursery.start_soon(reader, 0)
        nursery.start_soon(reader, 2)
    assert got_at[0] == pytest.approx(1.0) and got_at[2] == pytest.approx(3.0)  # not 4.0: the window's end
    assert [cache.get_nowait((url, n)) for n in range(4)] == [content(url, n) for n in range(4)]
    assert cache.statistics()["fetched_bytes"] == 4 * CS
    cache.check_invariants()
    cache.deliver(0, b"x" * CS)  # outside a running fetch: ignored
    assert cache.get_nowait((url, 0)) == content(url, 0)
