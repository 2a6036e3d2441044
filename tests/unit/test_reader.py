"""ReadManager/Reader over a fake scheduler: link reuse, read-ahead growth, sharing, faults."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from fichierfs.api import FichierClient, endpoint_of
from fichierfs.chunks import ChunkCache
from fichierfs.errors import FloodLocked, LinkExpired, NotFound, ServerError
from fichierfs.models import DownloadLink, FileUrl
from fichierfs.reader import BODY_RETRIES, ReadManager
from fichierfs.scheduler import Lane

KiB = 1 << 10
MiB = 1 << 20
CS = 64 * KiB
URL = "https://1fichier.com/?big"


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


class FakeScheduler:
    """Serves ``files`` like 1fichier would, through ``call(client.method, *args, lane=…)``.

    * ``download/get_token`` → a DownloadLink; 1fichier's 300 s validity is modelled (§5):
      an older link, or one :meth:`expire_links` killed, answers ``LinkExpired``.
    * ``download`` → bytes ``[start, end)`` after ``latency + size / bandwidth`` seconds.
    * ``fail[endpoint]``: exceptions raised by the next calls of that endpoint, in order.
    * ``flood``: every call raises FloodLocked (breaker open).
    * ``check``: called at every call (e.g. the cache's budget invariant).
    """

    def __init__(self, files: dict[str, bytes], *, latency: float = 0.05, bandwidth: float = 50 * MiB) -> None:
        self.files = files
        self.latency = latency
        self.bandwidth = bandwidth
        self.calls: list[tuple[str, tuple[Any, ...], Lane]] = []
        self.downloads: list[tuple[int, int, Lane]] = []
        self.fail: dict[str, list[BaseException]] = {}
        self.flood = False
        self.calls_while_flooded = 0
        self.check: Any = None
        self._issued: dict[str, float] = {}
        self._n = 0
        self.client = FichierClient(None, "unused")  # type: ignore[arg-type]  # its methods are never run

    def next_allowed(self, endpoint: Any, folder_id: Any = None) -> float:
        return 0.0

    def token_calls(self) -> int:
        return sum(1 for e, _, _ in self.calls if e == "download/get_token")

    def download_sizes(self) -> list[int]:
        return [end - start for start, end, _ in self.downloads]

    def downloaded(self) -> int:
        return sum(self.download_sizes())

    def expire_links(self) -> None:
        self._issued.clear()

    async def call(self, fn: Any, *args: Any, lane: Lane = Lane.INTERACTIVE, **kw: Any) -> Any:
        assert isinstance(lane, Lane)
        endpoint = endpoint_of(fn)
        assert endpoint is not None, fn
        self.calls.append((endpoint, args, lane))
        if self.check is not None:
            self.check()
        if self.flood:
            self.calls_while_flooded += 1
            raise FloodLocked("Flood detected: IP Locked #374", code=374, http_status=403)
        if self.fail.get(endpoint):
            await trio.sleep(self.latency)
            raise self.fail[endpoint].pop(0)
        if endpoint == "download/get_token":
            (url,) = args
            await trio.sleep(self.latency)
            if url not in self.files:
                raise NotFound("Resource not found #469", code=469, http_status=403)
            self._n += 1
            direct = f"https://a-1.fake/p{self._n}"
            self._issued[direct] = trio.current_time()
            return DownloadLink(url=direct, file_url=FileUrl(url), single=bool(kw.get("single", False)))
        if endpoint == "download":
            link, start, end, *rest = args  # download_range(link, start, end) / download_chunks(…, chunk_size)
            assert isinstance(link, DownloadLink) and 0 <= start < end
            self.downloads.append((start, end, lane))
            issued = self._issued.get(link.url)
            await trio.sleep(self.latency + (end - start) / self.bandwidth)
            if issued is None or trio.current_time() - issued >= 300.0:
                raise LinkExpired("link answered an HTML page")
            data = self.files.get(link.file_url)
            if data is None:
                raise NotFound("HTTP 404", http_status=404)
            if rest:
                (cs,) = rest
                return [bytearray(data[o : min(o + cs, end)]) for o in range(start, min(end, len(data)), cs)]
            return data[start:end]
        raise AssertionError(f"unexpected endpoint {endpoint}")


def manager(sched: FakeScheduler, *, budget: int = 256 * MiB, readahead_max: int = 4 * MiB, **kw: Any) -> ReadManager:
    # these tests pin the mechanism with a 1.125 MiB first window (mountpoint-s3's); the
    # product default is smaller (reader.INITIAL_WINDOW) and is checked separately
    kw.setdefault("initial_window", MiB + 128 * KiB)
    return ReadManager(sched, ChunkCache(budget, CS), chunk_size=CS, readahead_max=readahead_max, **kw)


async def read_all(rm: ReadManager, url: str, size: int, step: int = 128 * KiB) -> bytes:
    h = rm.open(url, size)
    out = bytearray()
    try:
        for off in range(0, size, step):
            out += await h.read(off, step)
    finally:
        h.close()
    return bytes(out)


INITIAL = (MiB + 128 * KiB) // CS * CS  # 18 chunks of 64 KiB = 1.125 MiB


# ---------------------------------------------------------------------- sequential


async def test_sequential_read_one_token_and_doubling_windows(autojump_clock: trio.testing.MockClock) -> None:
    size = 16 * MiB
    data = blob(size)
    sched = FakeScheduler({URL: data})
    async with manager(sched, readahead_max=4 * MiB) as rm:
        assert await read_all(rm, URL, size) == data
        stats = rm.statistics()
    assert sched.token_calls() == 1
    sizes = sched.download_sizes()
    assert sched.downloaded() == size  # every byte exactly once
    assert sizes[0] == INITIAL
    cap = 4 * MiB
    for a, b in zip(sizes, sizes[1:-1]):  # the last window is cut at EOF
        assert b == min(2 * a, cap), sizes
    assert sizes[:4] == [INITIAL, 2 * INITIAL, cap, cap]
    # the first GET is the reader's (INTERACTIVE); the growing windows are read-ahead
    lanes = [lane for _, _, lane in sched.downloads]
    assert lanes[0] == Lane.INTERACTIVE and all(lane == Lane.PREFETCH for lane in lanes[1:])
    assert stats["token_calls"] == 1 and stats["downloaded_bytes"] == size
    assert stats["reads"] == size // (128 * KiB) and stats["read_bytes"] == size
    assert stats["random_resets"] == 0 and stats["readahead_windows"] == len(sizes) - 1
    assert all(e == "download/get_token" and lane == Lane.INTERACTIVE for e, _, lane in sched.calls if e != "download")


async def test_small_reorderings_keep_the_window(autojump_clock: trio.testing.MockClock) -> None:
    size = 16 * MiB
    data = blob(size, 2)
    sched = FakeScheduler({URL: data})
    step = 128 * KiB
    offsets = list(range(0, size, step))
    for i in range(2, len(offsets) - 1, 5):  # swap neighbours: 128 KiB backward steps
        offsets[i], offsets[i + 1] = offsets[i + 1], offsets[i]
    jump_from = offsets.index(6 * MiB)
    offsets = offsets[:jump_from] + [o for o in offsets[jump_from:] if not 6 * MiB <= o < 8 * MiB]  # 2 MiB skip
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        for off in offsets:
            assert await h.read(off, step) == data[off : off + step]
        h.close()
        stats = rm.statistics()
    assert stats["random_resets"] == 0
    sizes = sched.download_sizes()
    assert sizes[:4] == [INITIAL, 2 * INITIAL, 4 * MiB, 4 * MiB]
    assert max(sizes) == 4 * MiB and sched.token_calls() == 1
    assert sched.downloaded() <= size


async def test_random_reads_fetch_small_units(autojump_clock: trio.testing.MockClock) -> None:
    """Issue 15.3: a handle recognised as random fetches its request rounded to a small unit (a page for small
    reads, up to 64 KiB for bigger ones), not whole chunks."""
    size = 96 * MiB
    data = blob(size, 3)
    sched = FakeScheduler({URL: data})
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        assert await h.read(50 * MiB + 100, 4096) == data[50 * MiB + 100 : 50 * MiB + 4196]
        assert sched.download_sizes() == [INITIAL]  # first read: the initial window
        probes = [(5 * MiB + 7, 4096), (80 * MiB, 100), (20 * MiB + CS - 10, 20), (90 * MiB + 3, 2 * CS)]
        for off, n in probes:
            assert await h.read(off, n) == data[off : off + n]
        h.close()
        st = rm.statistics()
        assert st["random_resets"] == 1 and st["random_reads"] == 4
    # 4 KiB at +7: two pages; 100 B: one page; 20 B across a page boundary: two pages; 128 KiB at +3: rounded
    # to 64 KiB units, three of them
    assert sched.download_sizes()[1:] == [8 * KiB, 4 * KiB, 8 * KiB, 3 * 64 * KiB]
    assert all(lane == Lane.INTERACTIVE for _, _, lane in sched.downloads)


async def test_random_then_sequential_restarts_from_the_initial_window(autojump_clock: trio.testing.MockClock) -> None:
    size = 64 * MiB
    data = blob(size, 4)
    sched = FakeScheduler({URL: data})
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        await h.read(0, 4096)
        base = 40 * MiB
        for off in range(base, base + 6 * MiB, 128 * KiB):
            assert await h.read(off, 128 * KiB) == data[off : off + 128 * KiB]
        await trio.sleep(1)
        h.close()
    sizes = sched.download_sizes()
    assert sizes[1] == 2 * CS  # the random read: its 128 KiB (two 64 KiB units of the page cache)
    # the next read is contiguous: once RANDOM_BACK_TO_SEQ chunks were read in a row the handle is
    # sequential again; its own chunks at once, and read-ahead restarts from the initial window beside it
    assert sizes[2] == 2 * CS
    assert sizes[3:6] == [INITIAL, 2 * INITIAL, 4 * MiB]


# ---------------------------------------------------------------------- links


async def test_token_reused_within_ttl_and_renewed_after(autojump_clock: trio.testing.MockClock) -> None:
    size = 64 * MiB
    data = blob(size, 5)
    sched = FakeScheduler({URL: data})
    async with manager(sched, token_ttl=280.0) as rm:
        h = rm.open(URL, size)
        await h.read(0, 10)
        await trio.sleep(100)
        assert await h.read(30 * MiB, 10) == data[30 * MiB : 30 * MiB + 10]
        h2 = rm.open(URL, size)  # another handle shares the link
        assert await h2.read(60 * MiB, 10) == data[60 * MiB : 60 * MiB + 10]
        assert sched.token_calls() == 1
        await trio.sleep(200)  # link now 300 s old: older than token_ttl
        assert await h.read(0, 10) == data[:10]  # cached: no call at all
        assert sched.token_calls() == 1
        assert await h.read(45 * MiB, 10) == data[45 * MiB : 45 * MiB + 10]
        assert sched.token_calls() == 2  # renewed before use, never an HTML answer
        assert rm.statistics()["link_expired"] == 0
        h.close()
        h2.close()
        h3 = rm.open(URL, size)  # a reopen within the TTL reuses the link too
        assert await h3.read(10 * MiB, 10) == data[10 * MiB : 10 * MiB + 10]
        assert sched.token_calls() == 2
        h3.close()


async def test_link_expired_renews_once_then_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    size = 64 * MiB
    data = blob(size, 6)
    sched = FakeScheduler({URL: data})
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        await h.read(0, 10)
        sched.expire_links()  # the server forgot the link early
        assert await h.read(30 * MiB, 10) == data[30 * MiB : 30 * MiB + 10]
        assert sched.token_calls() == 2
        assert rm.statistics()["link_expired"] == 1
        h.close()


async def test_link_expired_twice_raises(autojump_clock: trio.testing.MockClock) -> None:
    size = 64 * MiB
    sched = FakeScheduler({URL: blob(size, 7)})
    sched.fail["download"] = [LinkExpired("html"), LinkExpired("html")]
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        with pytest.raises(LinkExpired):
            await h.read(0, 10)
        assert sched.token_calls() == 2  # the first link and one renewal, no more
        assert rm.statistics()["link_expired"] == 2
        # the next read starts afresh and works
        assert await h.read(0, 10) == sched.files[URL][:10]
        h.close()


# ---------------------------------------------------------------------- sharing


async def test_eight_concurrent_readers_share_chunks(autojump_clock: trio.testing.MockClock) -> None:
    size = 24 * MiB
    data = blob(size, 8)
    sched = FakeScheduler({URL: data})
    async with manager(sched, budget=64 * MiB, readahead_max=8 * MiB) as rm:
        sched.check = lambda: rm.cache.check_invariants(slack=8 * MiB)
        results: dict[int, bytes] = {}

        async def reader(i: int) -> None:
            await trio.sleep(i * 0.01)
            results[i] = await read_all(rm, URL, size, step=(64 + 32 * (i % 3)) * KiB)

        async with trio.open_nursery() as n:
            for i in range(8):
                n.start_soon(reader, i)
        stats = rm.statistics()
    assert all(results[i] == data for i in range(8))
    assert sched.token_calls() == 1
    assert sched.downloaded() <= 1.1 * size, (sched.downloaded(), size)
    assert stats["cache"]["coalesced"] > 0
    assert stats["cache"]["peak_bytes"] <= 64 * MiB + 8 * MiB


async def test_readahead_under_a_tight_budget_stays_within_it(autojump_clock: trio.testing.MockClock) -> None:
    size = 8 * MiB
    data = blob(size, 9)
    sched = FakeScheduler({URL: data})
    budget = 8 * CS
    async with manager(sched, budget=budget, readahead_max=4 * MiB) as rm:
        sched.check = lambda: rm.cache.check_invariants()
        assert await read_all(rm, URL, size, step=32 * KiB) == data
        stats = rm.statistics()
    assert stats["cache"]["peak_bytes"] <= budget + INITIAL  # the first read's window is the one overshoot
    assert max(sched.download_sizes()[1:]) <= budget // 2  # read-ahead kept to its share
    assert stats["cache"]["readahead_shrunk"] + stats["cache"]["readahead_skipped"] > 0


# ---------------------------------------------------------------------- faults


async def test_cached_data_is_served_while_flood_locked(autojump_clock: trio.testing.MockClock) -> None:
    size = 4 * MiB
    data = blob(size, 10)
    sched = FakeScheduler({URL: data})
    async with manager(sched) as rm:
        other_handle = rm.open(URL, size)  # two handles: passed chunks are kept (not a lone reader)
        assert await read_all(rm, URL, size) == data
        other_handle.close()
        sched.flood = True
        await trio.sleep(400)  # even with the link expired
        assert await read_all(rm, URL, size, step=100 * KiB) == data  # a new handle, other sizes
        assert sched.calls_while_flooded == 0
        other = "https://1fichier.com/?other"
        sched.files[other] = b"x" * 1000
        h = rm.open(other, 1000)
        with pytest.raises(FloodLocked):
            await h.read(0, 10)  # not cached: the lock is the caller's answer
        h.close()


async def test_lone_sequential_reader_drops_what_it_passed(autojump_clock: trio.testing.MockClock) -> None:
    """A one-pass read holds about seq_backward + its read-ahead in memory, not the whole file (issue 15.4)."""
    size = 32 * MiB
    data = blob(size, 12)
    sched = FakeScheduler({URL: data})
    async with manager(sched, budget=256 * MiB, readahead_max=4 * MiB) as rm:
        h = rm.open(URL, size)
        peak = 0
        for off in range(0, size, 128 * KiB):
            assert await h.read(off, 128 * KiB) == data[off : off + 128 * KiB]
            peak = max(peak, rm.cache.cached_bytes)
        h.close()
        st = rm.cache.statistics()
    # behind the reader: at most seq_backward (1 MiB) + one chunk; ahead: at most two windows of 4 MiB
    assert peak <= 1 * MiB + CS + 2 * 4 * MiB, peak
    assert st["discarded_bytes"] >= size - 10 * MiB, st
    assert sched.downloaded() <= size, "nothing is fetched twice"


async def test_readahead_failure_is_quiet_and_reader_recovers(autojump_clock: trio.testing.MockClock) -> None:
    size = 16 * MiB
    data = blob(size, 11)
    sched = FakeScheduler({URL: data})
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        await h.read(0, 128 * KiB)
        # the first read-ahead GET and its retries (a GET that fails on the way is tried again)
        sched.fail["download"] = [ServerError("connection reset")] * (BODY_RETRIES + 1)
        for off in range(128 * KiB, size, 128 * KiB):
            assert await h.read(off, 128 * KiB) == data[off : off + 128 * KiB]
        h.close()
        assert rm.statistics()["readahead_errors"] == 1


async def test_server_error_on_an_interactive_read_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    """A ranged GET that fails on the way is tried again (the fault soak saw EIO from one cut body)."""
    sched = FakeScheduler({URL: blob(MiB, 12)})
    sched.fail["download"] = [ServerError("HTTP 502")] * BODY_RETRIES
    async with manager(sched) as rm:
        h = rm.open(URL, MiB)
        assert await h.read(0, 10) == sched.files[URL][:10]
        h.close()


async def test_server_error_on_an_interactive_read_propagates(autojump_clock: trio.testing.MockClock) -> None:
    sched = FakeScheduler({URL: blob(MiB, 12)})
    sched.fail["download"] = [ServerError("HTTP 502")] * (BODY_RETRIES + 1)
    async with manager(sched) as rm:
        h = rm.open(URL, MiB)
        with pytest.raises(ServerError):
            await h.read(0, 10)
        assert await h.read(0, 10) == sched.files[URL][:10]
        h.close()


async def test_not_found_propagates_and_drops_the_file(autojump_clock: trio.testing.MockClock) -> None:
    gone = "https://1fichier.com/?gone"
    sched = FakeScheduler({URL: blob(8 * MiB, 13)})
    async with manager(sched) as rm:
        h = rm.open(gone, 5000)
        with pytest.raises(NotFound):
            await h.read(0, 10)
        h.close()
        h = rm.open(URL, 8 * MiB)
        await h.read(0, 10)
        del sched.files[URL]  # deleted remotely, link still valid
        with pytest.raises(NotFound):
            await h.read(4 * MiB, 10)  # a chunk beyond the first window
        assert rm.cache.statistics()["files"] == 0  # its chunks are gone too
        h.close()


async def test_short_download_is_a_server_error(autojump_clock: trio.testing.MockClock) -> None:
    sched = FakeScheduler({URL: blob(1000, 14)})
    async with manager(sched) as rm:
        h = rm.open(URL, 5000)  # meta claims more than the server has
        with pytest.raises(ServerError):
            await h.read(0, 5000)
        h.close()


# ---------------------------------------------------------------------- edges, lifecycle


async def test_reads_at_and_past_eof(autojump_clock: trio.testing.MockClock) -> None:
    size = 3 * CS + 123
    data = blob(size, 15)
    sched = FakeScheduler({URL: data, "https://1fichier.com/?empty": b""})
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        assert await h.read(size, 10) == b""
        assert await h.read(size + 1000, 10) == b""
        assert await h.read(0, 0) == b""
        assert sched.calls == []  # none of these costs anything
        assert await h.read(size - 100, 4096) == data[-100:]  # clamped
        assert await h.read(0, 10 * size) == data
        # the short last chunk (first read: its window stops at EOF), then the 3 others
        assert sched.download_sizes() == [123, 3 * CS]
        with pytest.raises(ValueError):
            await h.read(-1, 10)
        h.close()
        with pytest.raises(ValueError):
            await h.read(0, 10)
        e = rm.open("https://1fichier.com/?empty", 0)
        assert await e.read(0, 100) == b""
        e.close()
        assert len(sched.calls) == 3  # one token, two GETs


async def test_run_in_a_nursery_and_stop(autojump_clock: trio.testing.MockClock) -> None:
    size = 8 * MiB
    data = blob(size, 16)
    sched = FakeScheduler({URL: data})
    rm = manager(sched)
    async with trio.open_nursery() as n:
        await n.start(rm.run)
        assert await read_all(rm, URL, size) == data
        assert rm.statistics()["readahead_windows"] > 0
        rm.stop()


async def test_without_a_nursery_reads_work_without_readahead(autojump_clock: trio.testing.MockClock) -> None:
    size = 4 * MiB
    data = blob(size, 17)
    sched = FakeScheduler({URL: data})
    rm = manager(sched)
    assert await read_all(rm, URL, size) == data
    assert rm.statistics()["readahead_windows"] == 0
    assert all(lane == Lane.INTERACTIVE for _, _, lane in sched.downloads)


async def test_close_cancels_readahead(autojump_clock: trio.testing.MockClock) -> None:
    size = 64 * MiB
    sched = FakeScheduler({URL: blob(size, 18)}, bandwidth=1 * MiB)  # slow: 4 s per window
    async with manager(sched) as rm:
        h = rm.open(URL, size)
        for off in range(0, 3 * MiB, 128 * KiB):
            await h.read(off, 128 * KiB)
        assert rm.cache.statistics()["inflight_chunks"] > 0
        h.close()
        await trio.sleep(0.01)  # let the cancelled task run; its GET would need seconds more
        s = rm.cache.statistics()
        assert s["inflight_chunks"] == 0 and s["inflight_bytes"] == 0
        assert rm.statistics()["open_handles"] == 0


async def test_body_exception_is_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    sched = FakeScheduler({})
    with pytest.raises(KeyError):
        async with manager(sched):
            raise KeyError("x")


async def test_statistics_keys(autojump_clock: trio.testing.MockClock) -> None:
    sched = FakeScheduler({URL: blob(MiB, 19)})
    async with manager(sched) as rm:
        await read_all(rm, URL, MiB)
        s = rm.statistics()
    for key in (
        "open_handles",
        "files",
        "token_calls",
        "link_expired",
        "downloads",
        "downloaded_bytes",
        "reads",
        "read_bytes",
        "readahead_windows",
        "readahead_skipped",
        "readahead_errors",
        "random_resets",
    ):
        assert isinstance(s[key], int), key
    c = s["cache"]
    for key in ("cached_bytes", "hits", "misses", "evictions", "inflight_bytes", "inflight_chunks", "peak_bytes"):
        assert isinstance(c[key], int), key
    assert s["downloaded_bytes"] == MiB and c["cached_bytes"] == MiB and s["open_handles"] == 0


def test_chunk_size_must_match_the_cache() -> None:
    with pytest.raises(ValueError):
        ReadManager(FakeScheduler({}), ChunkCache(MiB, CS), chunk_size=2 * CS, readahead_max=MiB)


async def test_default_first_window_is_small_for_header_reads(autojump_clock: Any) -> None:
    """A 64 KiB header read of a 3 MiB file downloads 256 KiB, not a megabyte (scripts/bench head storm)."""
    from fichierfs.reader import INITIAL_WINDOW

    size = 3 * MiB
    sched = FakeScheduler({"u": bytes(size)})
    rm = ReadManager(sched, ChunkCache(64 * MiB, CS), chunk_size=CS, readahead_max=4 * MiB)
    r = rm.open("u", size)
    assert len(await r.read(0, 64 * KiB)) == 64 * KiB
    assert sched.download_sizes() == [INITIAL_WINDOW] == [256 * KiB]
    r.close()
