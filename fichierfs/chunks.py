"""ChunkCache: one memory cache of fixed-size file chunks for the whole mount.

Design (../shared/design.md Part A §4.E, §6; Part B §10 steps 4–6)
---------------------------------------------------------------------
Every byte downloaded by any open file lands here, cut into chunks of ``chunk_size`` bytes
keyed by ``(file_url, chunk_index)`` (chunk ``n`` holds bytes ``[n*chunk_size,
(n+1)*chunk_size)``; the last chunk of a file may be shorter). There is **one** cache and
**one** byte budget for the mount, never one per handle: rclone's ``--buffer-size`` × open
files and mountpoint-s3's per-handle prefetch window are the OOM reports of §4.E.

The cache is an LRU (``OrderedDict``, most recent last). It knows nothing about 1fichier: the
caller passes a fetch function, and the reader (``reader.py``) owns links, lanes and retries.

Memory accounting
    ``cached_bytes`` is the sum of the lengths of the cached chunks. ``reserved_bytes`` is what
    fetches in flight will insert (a *window* reserves ``n_chunks * chunk_size`` before its GET
    starts and gives the reservation back chunk by chunk as data arrives). Reservations count
    against the budget exactly like cached data; cached chunks are always clean and evictable,
    so admitting a fetch means evicting LRU chunks until ``cached + reserved <= budget``.

Invariant (checked by :meth:`ChunkCache.check_invariants` and the hypothesis test)
    ``cached_bytes + reserved_bytes <= budget``, except while a single fetch larger than the
    whole budget is in flight alone; so peak memory held by the cache is at most
    ``budget + one window``. (A just-fetched window is briefly held twice while it is cut into
    chunks; bytes already handed to readers are theirs.)

Admission
    * *Required* fetches (a reader is waiting for these bytes) wait until
      ``reserved + n <= budget``; a fetch larger than the budget is admitted when nothing else
      is reserved, so nothing can starve forever nor deadlock (a reservation is only ever held
      by a task that is already fetching).
    * *Optional* fetches (read-ahead) never wait: they may use at most ``readahead_share`` of
      the budget for reservations, all optional and required in-flight bytes included. When
      the window does not fit it is **shrunk** to the chunks that do, and skipped (``None``)
      when not even one chunk fits. Improvement over "skip when tight": a shrunk window keeps
      the stream going under pressure instead of falling back to one-chunk interactive misses.
      The share (default ½) keeps at least half the budget for data already read ahead, so
      eight readers cannot evict each other's read-ahead before it is consumed.

Single-flight
    A chunk that is neither cached nor in flight is *claimed* by exactly one window: a
    ``_Flight`` (a ``trio.Event`` plus the outcome) is registered under its key **synchronously**
    (no checkpoint between "is it missing?" and "it is mine"), so every other task asking for it
    waits on that event instead of fetching it again. A window claims only free chunks and cuts
    them into runs of consecutive indexes; each run is **one** ranged GET (``fetch_range(first,
    stop)`` returns the bytes of chunks ``[first, stop)`` concatenated).

    Outcomes: success → each chunk is inserted and its waiters get the bytes from the flight
    itself (not from the cache, so an eviction in between cannot make them refetch). Failure of
    a *required* fetch → every waiter is woken with the same exception and no entry is left.
    Failure of an *optional* fetch, or cancellation of any fetch → the flights are *abandoned*:
    waiters wake up and fetch the chunk themselves (on their own, higher-priority lane, and with
    their own error if it fails again). A ``trio.Cancelled`` belongs to the task that was
    cancelled and is never re-raised in a waiter.

Concurrency notes
    Single trio thread, no locks: all bookkeeping (LRU, index, flights, reservations) happens
    between checkpoints. The only awaits are the caller's fetch function, waiting on a flight
    event, and waiting for budget space (``_space``, an event replaced each time it fires).
    :meth:`invalidate` drops cached chunks and detaches in-flight ones: their fetch still
    completes for whoever waits on it, but the result is not inserted.
    Look-ups (:meth:`get_nowait`, :meth:`put`, :meth:`invalidate`, :meth:`claim`) are plain
    functions (design.md Part B §7 colouring); only :meth:`get`, :meth:`get_range` and
    :meth:`Window.run` await.

Units: bytes for sizes and budgets, chunk indexes are ints counted from 0.
"""

from __future__ import annotations

import contextvars
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from fichierfs.errors import ServerError

__all__ = ["Chunk", "ChunkCache", "ChunkKey", "FetchRange", "Window"]

log = logging.getLogger(__name__)

ChunkKey = tuple[str, int]
"""``(file_url, chunk_index)``; chunk ``n`` is bytes ``[n*chunk_size, (n+1)*chunk_size)``."""

Chunk = bytes | bytearray
"""One chunk's bytes (a bytearray when it came from :meth:`FichierClient.download_chunks`; never mutated)."""

FetchRange = Callable[[int, int], Awaitable["bytes | bytearray | Sequence[Chunk | None]"]]
"""``fetch_range(first, stop)`` → the bytes of chunks ``[first, stop)`` of one file: concatenated, or already
cut into one buffer per chunk (no copy is then made to cache them; None for a chunk handed over already with
:meth:`ChunkCache.deliver`).

Only the last chunk of the file may be short; the callee is expected to check lengths.
"""


_RUNNING: contextvars.ContextVar[Window | None] = contextvars.ContextVar("fichierfs_chunks_window", default=None)
"""The window whose ``fetch_range`` this task is running (for :meth:`ChunkCache.deliver`)."""


class _Flight:
    """One chunk being fetched: waiters block on ``event``; exactly one outcome is set."""

    __slots__ = ("key", "event", "data", "error", "detached")

    def __init__(self, key: ChunkKey) -> None:
        self.key = key
        self.event = trio.Event()
        self.data: Chunk | None = None
        self.error: BaseException | None = None
        self.detached = False  # invalidated: deliver to waiters but do not insert

    async def wait(self) -> Chunk | None:
        """Wait for the outcome: bytes, the fetch's error raised, or None when abandoned."""
        await self.event.wait()
        if self.data is not None:
            return self.data
        if self.error is not None:
            raise self.error
        return None


class Window:
    """Chunks ``[first, stop)`` of one file claimed for fetching by one task (see module doc).

    Every chunk in ``[first, stop)`` is, at claim time, either cached, in flight elsewhere, or
    claimed here; :attr:`runs` lists the claimed ones as ``(first, stop)`` runs, one ranged GET
    each. Create with :meth:`ChunkCache.claim`; then ``await window.run(fetch_range)`` once, or
    :meth:`abandon` it. A window with no runs is complete already.
    """

    __slots__ = (
        "_cache", "file_url", "first", "stop", "runs", "optional", "_flights", "_reserved", "_admitted", "_done"
    )

    def __init__(
        self,
        cache: ChunkCache,
        file_url: str,
        first: int,
        stop: int,
        runs: list[tuple[int, int]],
        flights: dict[int, _Flight],
        *,
        optional: bool,
    ) -> None:
        self._cache = cache
        self.file_url = file_url
        self.first = first
        self.stop = stop
        self.runs = runs
        self.optional = optional
        self._flights = flights
        self._reserved = 0
        self._admitted = False
        self._done = not runs

    @property
    def nbytes(self) -> int:
        """Upper bound of the bytes this window fetches (claimed chunks × chunk size)."""
        return len(self._flights) * self._cache.chunk_size

    def __repr__(self) -> str:
        return f"Window({self.file_url!r}, [{self.first}, {self.stop}), runs={self.runs}, optional={self.optional})"

    async def run(self, fetch_range: FetchRange) -> None:
        """Fetch every run with one ``fetch_range`` call each and insert the chunks.

        Waits for budget space first when the window is required (optional windows were
        admitted when claimed). On an exception the remaining flights are failed (required)
        or abandoned (optional, or on cancellation) and the exception propagates.
        """
        if self._done:
            return
        cache = self._cache
        try:
            if not self._admitted:
                await cache._admit(self)
            token = _RUNNING.set(self)
            try:
                for first, stop in self.runs:
                    data = await fetch_range(first, stop)
                    cache._complete_run(self, first, stop, data)
            finally:
                _RUNNING.reset(token)
        except Exception as exc:
            self._finish(None if self.optional else exc)
            cache._fetch_errors += 1
            raise
        except BaseException:
            self._finish(None)
            raise
        finally:
            self._done = True
            cache._release(self, self._reserved)

    def abandon(self) -> None:
        """Give up a claimed window that will not be run: waiters fetch for themselves."""
        if not self._done:
            self._done = True
            self._finish(None)
            self._cache._release(self, self._reserved)

    def _finish(self, error: BaseException | None) -> None:
        for fl in list(self._flights.values()):
            if not fl.event.is_set():
                fl.error = error
                self._cache._end_flight(fl)


class ChunkCache:
    """The mount's one chunk cache: LRU under a global byte budget, single-flight fetches.

    Args:
        budget: bytes of chunk data (cached + being fetched) the mount may hold; the
            ``memory_budget`` option (design.md §6: cap memory globally, not per handle).
        chunk_size: bytes per chunk, the unit of caching and the granularity of ranged GETs.
        readahead_share: fraction of ``budget`` that optional (read-ahead) fetches may have
            reserved at once, in-flight required fetches included (default 0.5).

    See the module docstring for the invariants and the concurrency rules.
    """

    def __init__(self, budget: int, chunk_size: int, *, readahead_share: float = 0.5) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0 bytes")
        if budget < chunk_size:
            raise ValueError("budget must hold at least one chunk")
        if not 0.0 <= readahead_share <= 1.0:
            raise ValueError("readahead_share must be within [0, 1]")
        self.budget = budget
        self.chunk_size = chunk_size
        self.readahead_share = readahead_share
        self._lru: OrderedDict[ChunkKey, Chunk] = OrderedDict()
        self._by_file: dict[str, set[int]] = {}
        self._inflight: dict[ChunkKey, _Flight] = {}
        self._cached = 0
        self._reserved = 0
        self._space = trio.Event()
        self._peak = 0
        # counters
        self._hits = 0
        self._misses = 0
        self._coalesced = 0
        self._evictions = 0
        self._evicted_bytes = 0
        self._fetches = 0
        self._fetched_bytes = 0
        self._fetch_errors = 0
        self._readahead_shrunk = 0
        self._readahead_skipped = 0
        self._dropped_puts = 0
        self._discarded = 0
        self._discarded_bytes = 0

    # ------------------------------------------------------------------ plain look-ups
    @property
    def cached_bytes(self) -> int:
        """Bytes of chunk data held in the LRU."""
        return self._cached

    @property
    def reserved_bytes(self) -> int:
        """Bytes reserved by admitted fetches still in flight."""
        return self._reserved

    def get_nowait(self, key: ChunkKey) -> Chunk | None:
        """The cached chunk, or None; never fetches. Counts a hit or a miss, refreshes LRU."""
        data = self._lru.get(key)
        if data is None:
            self._misses += 1
            return None
        self._lru.move_to_end(key)
        self._hits += 1
        return data

    def demote(self, key: ChunkKey) -> None:
        """Make ``key`` the first to be evicted (a sequential reader has consumed it)."""
        if key in self._lru:
            self._lru.move_to_end(key, last=False)

    def discard(self, key: ChunkKey) -> int:
        """Drop ``key`` now if cached (a lone sequential reader has passed it); returns the bytes freed.

        Unlike eviction under pressure this frees memory at once, so a one-pass read of a big file holds
        about its read-ahead, not the whole budget."""
        freed = self._drop(key)
        if freed:
            self._discarded += 1
            self._discarded_bytes += freed
        return freed

    def peek(self, key: ChunkKey) -> Chunk | None:
        """Like :meth:`get_nowait` but touches neither the LRU order nor the counters."""
        return self._lru.get(key)

    def in_flight(self, key: ChunkKey) -> bool:
        """True while a fetch of ``key`` is under way."""
        return key in self._inflight

    def __contains__(self, key: object) -> bool:
        return key in self._lru

    def __len__(self) -> int:
        return len(self._lru)

    def put(self, key: ChunkKey, data: Chunk) -> bool:
        """Insert a clean chunk (≤ ``chunk_size`` bytes), evicting LRU chunks to make room.

        Returns False (and stores nothing) when in-flight reservations leave no room for it:
        a plain ``put`` never pushes the cache over its budget.
        """
        if len(data) > self.chunk_size:
            raise ValueError(f"chunk of {len(data)} bytes > chunk_size {self.chunk_size}")
        self._drop(key)
        if not self._make_room(len(data)):
            self._dropped_puts += 1
            return False
        self._insert(key, data)
        return True

    def invalidate(self, file_url: str) -> int:
        """Forget every chunk of ``file_url`` (cached or in flight); returns the bytes dropped.

        In-flight fetches still deliver to their current waiters but insert nothing, and a new
        request for the same chunk starts a new fetch.
        """
        dropped = 0
        for n in list(self._by_file.get(file_url, ())):
            dropped += self._drop((file_url, n))
        for key, fl in list(self._inflight.items()):
            if key[0] == file_url:
                fl.detached = True
                del self._inflight[key]
        return dropped

    def clear(self) -> None:
        """Drop every cached chunk (in-flight fetches are left alone)."""
        for url in list(self._by_file):
            for n in list(self._by_file.get(url, ())):
                self._drop((url, n))

    # ------------------------------------------------------------------ claiming
    def claim(self, file_url: str, first: int, stop: int, *, optional: bool = False) -> Window | None:
        """Claim the free chunks of ``[first, stop)`` of one file for fetching; no await.

        Args:
            file_url: the file.
            first: first chunk index.
            stop: one past the last chunk index (> first).
            optional: read-ahead. Admitted now or never: the window is shrunk (``stop``
                lowered) to the chunks that fit in ``readahead_share × budget`` minus what is
                reserved, or None is returned when not even one chunk fits.

        Returns:
            a :class:`Window` (possibly with no runs when everything is cached or in flight),
            or None for a skipped optional window.
        """
        if stop <= first or first < 0:
            raise ValueError(f"bad chunk range [{first}, {stop})")
        cs = self.chunk_size
        if optional:
            room = int(self.budget * self.readahead_share) - self._reserved
            allowed = max(0, room) // cs
        else:
            allowed = stop - first
        runs: list[tuple[int, int]] = []
        flights: dict[int, _Flight] = {}
        end = first
        for n in range(first, stop):
            key = (file_url, n)
            if key in self._lru or key in self._inflight:
                end = n + 1
                continue
            if len(flights) >= allowed:
                break
            flights[n] = _Flight(key)
            if runs and runs[-1][1] == n:
                runs[-1] = (runs[-1][0], n + 1)
            else:
                runs.append((n, n + 1))
            end = n + 1
        if optional:
            if not flights and end < stop:
                self._readahead_skipped += 1
                return None
            if end < stop:
                self._readahead_shrunk += 1
        return self._open_window(file_url, first, end, runs, flights, optional=optional)

    def _open_window(
        self,
        file_url: str,
        first: int,
        stop: int,
        runs: list[tuple[int, int]],
        flights: dict[int, _Flight],
        *,
        optional: bool,
    ) -> Window:
        w = Window(self, file_url, first, stop, runs, flights, optional=optional)
        for fl in flights.values():
            self._inflight[fl.key] = fl
        if optional and flights:
            self._reserve(w, w.nbytes)
            w._admitted = True
        return w

    def _claim_extended(self, file_url: str, first: int, stop: int, extend_to: int) -> Window:
        """Claim the free chunks of ``[first, stop)``; grow the last run towards ``extend_to``
        while the following chunks are free (the reader's initial window rides on the miss).

        The extension is read-ahead in all but name, so it obeys the read-ahead share: it
        only takes chunks that fit in ``readahead_share × budget`` beside what is reserved
        and what this window needs anyway.
        """
        w = self.claim(file_url, first, stop)
        assert w is not None
        if w.runs and w.runs[-1][1] == stop:
            room = int(self.budget * self.readahead_share) - self._reserved - w.nbytes
            limit = min(extend_to, stop + max(0, room) // self.chunk_size)
            n = stop
            while n < limit and (file_url, n) not in self._lru and (file_url, n) not in self._inflight:
                fl = _Flight((file_url, n))
                w._flights[n] = fl
                self._inflight[fl.key] = fl
                n += 1
            w.runs[-1] = (w.runs[-1][0], n)
            w.stop = max(w.stop, n)
        return w

    # ------------------------------------------------------------------ awaiting
    async def get(self, key: ChunkKey, fetch: Callable[[], Awaitable[bytes]]) -> Chunk:
        """The chunk at ``key``: from the cache, from a fetch already in flight, or by calling
        ``fetch()`` (single-flight: N concurrent callers → one ``fetch`` call).

        Raises:
            whatever ``fetch`` raised, in the fetching task and in every waiter.
        """

        async def one(first: int, stop: int) -> bytes:
            return await fetch()

        (data,) = await self.get_range(key[0], key[1], key[1] + 1, one)
        return data

    async def get_range(
        self, file_url: str, first: int, stop: int, fetch_range: FetchRange, *, extend_to: int = 0
    ) -> list[Chunk]:
        """Chunks ``[first, stop)`` of ``file_url``, fetching the missing ones (required fetch).

        Cached chunks are returned as they are; chunks in flight are waited for; the free ones
        are claimed and fetched in this task with one ``fetch_range`` call per run of
        consecutive missing chunks. When the last run ends at ``stop`` it is extended up to
        ``extend_to`` (exclusive) over free chunks, so a first read can bring its initial
        window in the same GET.

        Raises:
            the error of any fetch this result depends on (own or another task's required
            fetch). Abandoned fetches are retried here.
        """
        count = stop - first
        out: list[Chunk | None] = [None] * count
        first_pass = True
        while True:
            waits: list[tuple[int, _Flight]] = []
            for i in range(count):
                if out[i] is not None:
                    continue
                key = (file_url, first + i)
                data = self._lru.get(key)
                if data is not None:
                    self._lru.move_to_end(key)
                    if first_pass:
                        self._hits += 1
                    out[i] = data
                    continue
                if first_pass:
                    self._misses += 1
                fl = self._inflight.get(key)
                if fl is not None:
                    self._coalesced += 1
                    waits.append((i, fl))
            first_pass = False
            waited = {i for i, _ in waits}
            missing = [i for i in range(count) if out[i] is None and i not in waited]
            own: Window | None = None
            if missing:
                own = self._claim_extended(file_url, first + missing[0], first + missing[-1] + 1, max(extend_to, stop))
                extend_to = 0  # extend at most once per call
                for n, fl in own._flights.items():
                    if first <= n < stop and out[n - first] is None:
                        waits.append((n - first, fl))
                await own.run(fetch_range)
            for i, fl in waits:
                data = await fl.wait()
                if data is not None:
                    out[i] = data
            if all(x is not None for x in out):
                return [x for x in out if x is not None]

    def deliver(self, index: int, piece: Chunk) -> None:
        """Chunk ``index`` of the fetch this task is running arrived before the rest of its ranged GET:
        complete it now (cached, its waiters woken), so a reader need not wait for the whole window.

        Call it only from inside a ``fetch_range`` that :meth:`Window.run` of this cache called (the window
        is the task's own, so a fetch of an invalidated version never fills a newer claim); anything else,
        or a chunk already complete, is ignored. In the chunks ``fetch_range`` then returns for the run, a
        delivered chunk may be None (so that the fetch need not keep a reference to bytes a reader has
        already dropped)."""
        w = _RUNNING.get()
        if w is None or w._cache is not self or not piece:
            return
        fl = w._flights.get(index)
        if fl is None or fl.event.is_set():
            return
        self._fetched_bytes += len(piece)
        self._release(w, self.chunk_size)
        if not fl.detached and self._make_room(len(piece)):
            self._drop(fl.key)
            self._insert(fl.key, piece)
        fl.data = piece
        self._end_flight(fl)

    # ------------------------------------------------------------------ internals
    async def _admit(self, w: Window) -> None:
        """Wait until the required window ``w`` fits in the budget, then reserve it."""
        need = w.nbytes
        while self._reserved and self._reserved + need > self.budget:
            space = self._space
            await space.wait()
        self._reserve(w, need)
        w._admitted = True

    def _reserve(self, w: Window, nbytes: int) -> None:
        self._reserved += nbytes
        w._reserved += nbytes
        self._evict_to(self.budget - self._reserved)
        self._note_peak()

    def _release(self, w: Window, nbytes: int) -> None:
        if nbytes <= 0:
            return
        nbytes = min(nbytes, w._reserved)
        w._reserved -= nbytes
        self._reserved -= nbytes
        self._space.set()
        self._space = trio.Event()

    def _complete_run(
        self, w: Window, first: int, stop: int, data: bytes | bytearray | Sequence[Chunk | None]
    ) -> None:
        cs = self.chunk_size
        self._fetches += 1
        if isinstance(data, (bytes, bytearray)):
            pieces: Sequence[Chunk | None] | None = None
            total = len(data)
            view: memoryview | None = memoryview(data)
        else:
            pieces, total, view = data, sum(len(p) for p in data if p is not None), None
        for n in range(first, stop):
            fl = w._flights[n]
            i = n - first
            if fl.event.is_set() and fl.data is not None:  # delivered as it arrived (deliver)
                continue
            piece: Chunk
            if pieces is not None:
                piece = (pieces[i] if i < len(pieces) else None) or b""
            else:
                assert view is not None
                piece = bytes(view[i * cs : (i + 1) * cs])
            if not piece:  # the rest of the run is failed or abandoned by Window.run
                raise ServerError(f"ranged read of chunks [{first}, {stop}) came back short ({total} bytes)")
            self._fetched_bytes += len(piece)
            self._release(w, cs)
            if not fl.detached and self._make_room(len(piece)):
                self._drop((w.file_url, n))
                self._insert((w.file_url, n), piece)
            fl.data = piece
            self._end_flight(fl)

    def _end_flight(self, fl: _Flight) -> None:
        if self._inflight.get(fl.key) is fl:
            del self._inflight[fl.key]
        fl.event.set()

    def _make_room(self, nbytes: int) -> bool:
        limit = self.budget - self._reserved - nbytes
        if limit < 0:
            return False
        self._evict_to(limit)
        return True

    def _evict_to(self, limit: int) -> None:
        while self._cached > limit and self._lru:
            key, data = self._lru.popitem(last=False)
            self._unindex(key, len(data))
            self._evictions += 1
            self._evicted_bytes += len(data)

    def _insert(self, key: ChunkKey, data: Chunk) -> None:
        self._lru[key] = data
        self._by_file.setdefault(key[0], set()).add(key[1])
        self._cached += len(data)
        self._note_peak()

    def _drop(self, key: ChunkKey) -> int:
        data = self._lru.pop(key, None)
        if data is None:
            return 0
        self._unindex(key, len(data))
        return len(data)

    def _unindex(self, key: ChunkKey, size: int) -> None:
        self._cached -= size
        idx = self._by_file.get(key[0])
        if idx is not None:
            idx.discard(key[1])
            if not idx:
                del self._by_file[key[0]]

    def _note_peak(self) -> None:
        self._peak = max(self._peak, self._cached + self._reserved)

    # ------------------------------------------------------------------ introspection
    def check_invariants(self, slack: int = 0) -> None:
        """Assert the bookkeeping is consistent and ``cached + reserved <= budget + slack``
        (bytes). For tests and debugging."""
        assert self._cached == sum(len(v) for v in self._lru.values()), "cached_bytes drifted"
        assert self._reserved >= 0, "negative reservation"
        assert sum(len(s) for s in self._by_file.values()) == len(self._lru), "file index drifted"
        assert all(len(v) <= self.chunk_size for v in self._lru.values())
        assert self._cached + self._reserved <= self.budget + slack, (
            f"over budget: {self._cached} cached + {self._reserved} reserved > {self.budget} + {slack}"
        )

    def statistics(self) -> dict[str, Any]:
        """Counters for ``status`` (sizes in bytes).

        Keys: ``budget``, ``chunk_size``, ``cached_bytes``, ``cached_chunks``, ``files``,
        ``inflight_chunks``, ``inflight_bytes`` (reserved), ``peak_bytes`` (max cached +
        reserved), ``hits``, ``misses``, ``coalesced`` (waits on another task's fetch),
        ``evictions``, ``evicted_bytes``, ``fetches`` (ranged GETs completed),
        ``fetched_bytes``, ``fetch_errors``, ``readahead_shrunk``, ``readahead_skipped``,
        ``dropped_puts``, ``discarded`` / ``discarded_bytes`` (chunks a lone sequential reader had passed).
        """
        return {
            "budget": self.budget,
            "chunk_size": self.chunk_size,
            "cached_bytes": self._cached,
            "cached_chunks": len(self._lru),
            "files": len(self._by_file),
            "inflight_chunks": len(self._inflight),
            "inflight_bytes": self._reserved,
            "peak_bytes": self._peak,
            "hits": self._hits,
            "misses": self._misses,
            "coalesced": self._coalesced,
            "evictions": self._evictions,
            "evicted_bytes": self._evicted_bytes,
            "fetches": self._fetches,
            "fetched_bytes": self._fetched_bytes,
            "fetch_errors": self._fetch_errors,
            "readahead_shrunk": self._readahead_shrunk,
            "readahead_skipped": self._readahead_skipped,
            "dropped_puts": self._dropped_puts,
            "discarded": self._discarded,
            "discarded_bytes": self._discarded_bytes,
        }
