"""ReadManager and Reader: the read path from a FUSE ``read`` to ranged GETs (design.md §10).

Design
------
``ReadManager`` is one object per mount. It owns

* the **one download link per file** (``_FileState``), shared by every handle of that file
  and by the read-ahead tasks (1fichier-api.md §5: a ``single:0`` token may serve many
  ranged GETs within its 5-minute validity; design.md Part A §5.4 "fewer calls per read"),
* a nursery for the read-ahead tasks (``async with ReadManager(...)`` or
  ``await nursery.start(manager.run)``),
* nothing else: the bytes live in the mount's single :class:`~fichierfs.chunks.ChunkCache`.

``ReadManager.open(file_url, size)`` returns a :class:`Reader`, one per open file handle. A
Reader holds only its sequential detector; it never buffers data of its own, so memory does
not grow with the number of open handles (Part A §4.E, rclone #3049, mountpoint #987).

Data path of ``Reader.read(offset, size)``
    1. Clamp to the file size (``offset >= size`` → ``b""`` without any call).
    2. Update the sequential detector (below) synchronously, so concurrent reads on one
       handle see a consistent state.
    3. Maybe claim the next read-ahead window (synchronously: its chunks become "in flight"
       at once, so nobody else fetches them) and fetch it in a background task on the
       PREFETCH lane.
    4. ``ChunkCache.get_range``: cached chunks are sliced without any call (even while the
       API is flood-locked, Part A §5.8); chunks in flight are waited for; missing chunks are
       fetched in this task on the INTERACTIVE lane, one ranged GET per run of consecutive
       missing chunks (the first read of a handle stretches that GET over its initial
       window).
    5. Join the slices.

Sequential detector (per handle; after mountpoint-s3's prefetcher, design.md §6)
    * The **first read** fetches the chunks it needs plus an initial window of
      ``initial_window`` bytes (default 1 MiB + 128 KiB) *rounded down* to whole chunks,
      never less than one chunk. Rounding down rather than up: the extra 128 KiB exists in
      mountpoint to cover one 1 MiB read plus the kernel's first 128 KiB read-ahead; with
      chunk alignment, rounding up would double the first GET for 1 MiB chunks (the
      default), which is exactly what a file manager sniffing headers does not need.
    * A read is **sequential** when its offset lies within ``[pos - seq_backward, pos +
      seq_forward]`` (default 1 MiB back, 16 MiB forward) of the end of the furthest read
      so far: the kernel and multi-threaded readers reorder a little, and a small forward
      jump (skipping a header, a seek within a media file) should keep the stream warm.
    * While reads are sequential, when less than half of the last window is still ahead of
      the reader, the next window is claimed right after the previous one and its size
      doubles, up to ``readahead_max`` (rounded down to chunks). So the GET sizes of a
      sequential read are initial, 2×, 4×, … cap, cap, … (the last one cut at EOF).
    * Any other read is **random**: only the chunks it needs are fetched, and the window
      starts again from the initial size when the reads become sequential again.

Read-ahead is skipped (and interactive misses just fetch what they need) when
    * the cache refuses the window: ``ChunkCache.claim(optional=True)`` admits read-ahead only
      within ``readahead_share`` of the global budget, shrinking the window to what fits;
    * the file's link must be renewed and the scheduler reports the token endpoint blocked for
      more than ``PRESSURE_WAIT`` seconds (breaker open, budgets spent): a prefetch must
      not queue behind a flood lock while holding claimed chunks;
    * a download answered ``FloodLocked`` in the last ``FLOOD_PAUSE`` seconds;
    * the manager has no nursery (not entered / not running).

Links (1fichier-api.md §5, §2.15, §8.9)
    A link is fetched with ``scheduler.call("download/get_token", file_url)`` (``single`` left
    at the client's default 0, so the link allows sub-requests) and reused by every handle and
    every window of the file while it is younger than ``token_ttl`` seconds (default 280 s,
    20 s under the documented 5 minutes: covers the reply latency and clock skew, because
    ``issued_at`` is stamped when the reply arrives). An older link is renewed before use.
    A GET answered with HTML (``LinkExpired``) drops that link, gets a new one and retries
    **once**; a second ``LinkExpired`` propagates. Only one task per file asks for a new link
    at a time (a per-file ``trio.Lock``), so eight readers cost one token call even without
    the scheduler's coalescing. Token calls always use the INTERACTIVE lane, also for
    read-ahead: a prefetch runs at most one window ahead of a reader that will need the same
    link a moment later, and a PREFETCH-lane token call would wait without the scheduler's
    stall limit while holding chunks that readers wait for. Links of closed files are kept
    until they expire, so a reopen within the TTL costs no call.

Errors
    Everything propagates as raised (the vfs maps errno). ``NotFound`` additionally drops
    the file's link and cached chunks (the file is gone). A failed read-ahead is logged at
    debug level and forgotten: its claimed chunks are abandoned, so a reader waiting on them
    fetches them itself on the INTERACTIVE lane and gets its own error, if any.

Concurrency notes
    Single trio thread. Shared state: ``ReadManager._links`` (replaced atomically; refreshed
    under ``_FileState.lock``) and the ChunkCache (see chunks.py). Detector state is per
    handle and updated before the first await of ``read``. Read-ahead tasks run in the
    manager's nursery under a per-handle cancel scope; closing the handle cancels them and
    their claimed chunks are abandoned. A known, bounded priority inversion: an interactive
    read that hits a chunk being read ahead waits for that PREFETCH-lane GET (which is already
    on the wire; the scheduler's download limiter has no lanes).

Departures from design.md §9/§10, and why
    * The link belongs to the *file* (manager), not to the handle (§9 says "Reader (one per
      open file): download-link reuse"): eight handles of one file, or a close and reopen,
      then cost one token call instead of one each.
    * Read-ahead windows are claimed synchronously in ``read`` and only fetched in the
      background: the chunks are "in flight" before the first checkpoint, so the reader's own
      next read, and every other handle, wait on that GET instead of racing it.
    * Under memory pressure read-ahead shrinks before it is skipped (chunks.py).
    * Token calls always use the INTERACTIVE lane (above), and a failed read-ahead never
      hands its error to an interactive reader (chunks.py: abandoned, not failed).
    * The first window is rounded down, not up, to whole chunks (above).

Units: offsets and sizes in bytes, times in seconds (``clock``, default
``trio.current_time``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import trio
from cachetools import TTLCache

from fichierfs.chunks import Chunk, ChunkCache, FetchRange, Window
from fichierfs.diskcache import DiskCache
from fichierfs.errors import FichierError, FloodLocked, LinkExpired, NotFound, ServerError
from fichierfs.models import DownloadLink
from fichierfs.scheduler import ApiCaller, Lane

__all__ = ["ReadManager", "Reader", "SchedulerLike", "INITIAL_WINDOW", "SEQ_FORWARD", "SEQ_BACKWARD"]

log = logging.getLogger(__name__)

MiB = 1 << 20
INITIAL_WINDOW = 256 * 1024
"""Bytes the first read of a handle brings (rounded down to whole chunks, ≥ 1 chunk).

256 KiB rather than mountpoint-s3's 1.125 MiB: the commonest first read of a remote file is a
header (file managers, ``file``, thumbnailers read 4–64 KiB; the kernel turns it into one
128 KiB request). scripts/bench's head storm (64 KiB of 200 files of 1–3 MiB) downloaded
200 MiB with a 1 MiB first window; sequential readers lose little, the window doubles on
each step."""
SEQ_FORWARD = 16 * MiB
"""Largest forward jump (bytes) that still counts as sequential."""
SEQ_BACKWARD = 1 * MiB
"""Largest backward step (bytes) that still counts as sequential."""
PRESSURE_WAIT = 5.0
BODY_RETRIES = 2
"""A ranged GET that failed on the way (5xx, reset, body cut short) is tried this many times more."""
BODY_RETRY_WAIT = 0.5
"""Seconds before the n-th such retry: n × this."""
"""Seconds: read-ahead that needs a new link is skipped if the token call could not start sooner."""
FLOOD_PAUSE = 30.0
"""Seconds without read-ahead after a download answered FloodLocked (1fichier-api.md §4, §8.10)."""
PAGE = 4 * 1024
"""Bytes: the unit of the random-read cache (a page; fio's and databases' smallest read)."""
RANDOM_UNIT_MAX = 64 * 1024
"""Bytes: the largest unit a random read is rounded to (the unit follows the handle's request size)."""
RANDOM_BACK_TO_SEQ = 2
"""Chunks of strictly contiguous reads that turn a random handle sequential again."""
DISK_BATCH = 8
"""Chunks the disk cache's writer thread writes per trip (a reader waiting for room waits for one trip)."""
DISK_QUEUE_MAX = 32 * MiB
"""Bytes of downloaded chunks waiting for the disk cache's writer thread (at most 1/8 of the memory budget);
beyond it the download waits for the writer: the queued bytes stay referenced until written, so this bounds
the memory they add to the budget."""


def budget_shares(memory_budget: int, chunk_size: int) -> tuple[int, int, int]:
    """Split the mount's one memory budget (``--memory-budget``) between what holds downloaded bytes: the chunk
    cache (¾), the random-read page cache (⅛) and the disk cache's write queue (⅛; its chunks stay referenced
    until written, even once the chunk cache dropped them). Their sum never exceeds the budget, so the data a
    mount holds is at most the budget however the reads mix (issue 15.4; before, the page cache and the queue
    came on top of it). Returns ``(chunk cache, pages, disk queue)`` in bytes."""
    pages = max(16 * RANDOM_UNIT_MAX, min(memory_budget // 8, 32 * MiB))
    queue = min(DISK_QUEUE_MAX, memory_budget // 8)
    return max(chunk_size, memory_budget - pages - queue), pages, queue


SchedulerLike = ApiCaller
"""What the reader needs of :class:`fichierfs.scheduler.Scheduler` (kept name; see ApiCaller)."""


class _FileState:
    """Per-file state shared by every handle of the file: its download link, its disk cache key."""

    __slots__ = ("file_url", "size", "lock", "handles", "checksum", "disk_key")

    def __init__(self, file_url: str, size: int) -> None:
        self.file_url = file_url
        self.size = size
        self.checksum = ""
        self.disk_key: str | None = None
        self.lock = trio.Lock()
        self.handles = 0


class ReadManager:
    """Every open file's reads: link reuse, sequential read-ahead, one global chunk cache.

    Args:
        scheduler: the only caller of the API client (``scheduler.call(client.method, *args,
            lane=…)``); used for ``download_get_token`` (metered, §2.15) and
            ``download_range`` (unmetered ranged GET, §5).
        cache: the mount's :class:`ChunkCache`.
        chunk_size: bytes per chunk; must equal ``cache.chunk_size`` (default: the cache's).
        readahead_max: largest read-ahead window of one handle, bytes (rounded down to whole
            chunks, at least one).
        token_ttl: seconds a download link is reused (1fichier: valid 300 s, §5).
        clock: monotonic seconds; ``trio.current_time`` (MockClock in tests).
        initial_window: bytes of the first read of a handle (see module docstring).
        seq_forward: largest forward jump (bytes) that keeps a handle sequential.
        seq_backward: largest backward step (bytes) that keeps a handle sequential.

    Use ``async with ReadManager(...) as rm:`` or ``await nursery.start(rm.run)`` (then
    ``rm.stop()``); without either, reads work but nothing is read ahead.
    """

    def __init__(
        self,
        scheduler: SchedulerLike,
        cache: ChunkCache,
        *,
        chunk_size: int | None = None,
        readahead_max: int,
        token_ttl: float = 280.0,
        clock: Callable[[], float] = trio.current_time,
        initial_window: int = INITIAL_WINDOW,
        seq_forward: int = SEQ_FORWARD,
        seq_backward: int = SEQ_BACKWARD,
        disk: DiskCache | None = None,
        pages_budget: int | None = None,
        disk_queue_max: int | None = None,
    ) -> None:
        cs = cache.chunk_size if chunk_size is None else chunk_size
        if cs != cache.chunk_size:
            raise ValueError(f"chunk_size {cs} differs from the cache's {cache.chunk_size}")
        if token_ttl <= 0:
            raise ValueError("token_ttl must be > 0 s")
        self._scheduler = scheduler
        self.cache = cache
        self.disk = disk if disk is not None and disk.limit and disk.chunk_size == cs else None
        self.chunk_size = cs
        self.token_ttl = token_ttl
        self._clock = clock
        self.max_chunks = max(1, readahead_max // cs)
        self.initial_chunks = min(self.max_chunks, max(1, initial_window // cs))
        self.seq_forward = seq_forward
        self.seq_backward = seq_backward
        self._files: dict[str, _FileState] = {}
        # file URL -> its download link, expired token_ttl seconds after it was stored (TTL is the meaning:
        # 1fichier's link is valid 300 s, §5). maxsize only bounds memory: an evicted link costs one call.
        self._links: TTLCache[str, DownloadLink] = TTLCache(maxsize=65536, ttl=token_ttl, timer=clock)
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None
        self._readahead_paused_until = -math.inf
        self._handles = 0
        # counters
        self._token_calls = 0
        self._link_expired = 0
        self._downloads = 0
        self._downloaded_bytes = 0
        self._reads = 0
        self._read_bytes = 0
        self._readahead_windows = 0
        self._readahead_skipped = 0
        self._readahead_errors = 0
        self._random_resets = 0
        self._random_reads = 0
        self._disk_bytes = 0
        self._adopted_files = 0
        self._disk_queue: list[tuple[str, int, Chunk]] = []
        self._disk_queued = 0
        self._disk_waits = 0
        self._disk_drained = trio.Event()
        self._disk_wake = trio.Event()
        self._disk_idle = trio.Event()
        self._disk_idle.set()
        self.disk_queue_max = min(DISK_QUEUE_MAX, cache.budget // 8) if disk_queue_max is None else disk_queue_max
        self._adopted_bytes = 0
        self._random_fetched = 0
        # random handles fetch pages, not chunks: their own small cache (see budget_shares)
        if pages_budget is None:
            pages_budget = max(16 * RANDOM_UNIT_MAX, min(cache.budget // 8, 32 * MiB))
        self.pages = ChunkCache(pages_budget, PAGE)

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> ReadManager:
        if self._nursery is not None:
            raise RuntimeError("ReadManager is already running")
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._disk_writer)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        if exc_type is None:
            await self.flush_disk()
        nursery, cm = self._nursery, self._nursery_cm
        self._nursery = self._nursery_cm = None
        assert nursery is not None and cm is not None
        nursery.cancel_scope.cancel()  # read-ahead is never worth waiting for
        # The children never raise (read-ahead errors are swallowed and logged), so close the
        # nursery as if the body had ended normally: the body's own exception then propagates
        # as it is instead of wrapped in an ExceptionGroup (trio's strict groups).
        await cm.__aexit__(None, None, None)
        return None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the read-ahead tasks until :meth:`stop` or cancellation (``nursery.start``)."""
        if self._nursery is not None:
            raise RuntimeError("ReadManager is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._disk_writer)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def stop(self) -> None:
        """Cancel the read-ahead tasks and end :meth:`run` (sync; returns at once)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ handles
    def open(self, file_url: str, size: int, checksum: str = "") -> Reader:
        """A new :class:`Reader` for ``file_url`` of ``size`` bytes whose whirlpool is ``checksum`` (no API
        call). Another size or checksum than the file's open handles had means another version of the file:
        what is cached of the old one is dropped, and the disk cache is keyed by URL + whirlpool."""
        if size < 0:
            raise ValueError("size must be ≥ 0 bytes")
        st = self._files.get(file_url)
        if st is not None and (st.size != size or st.checksum != checksum.lower()):
            self.cache.invalidate(file_url)
            self.pages.invalidate(file_url)
        if st is None:
            self._prune()
            st = self._files[file_url] = _FileState(file_url, size)
        st.size = size
        st.checksum = checksum.lower()
        st.disk_key = self.disk.key(file_url, st.checksum) if self.disk is not None else None
        st.handles += 1
        self._handles += 1
        return Reader(self, st)

    def has_local(self, file_url: str, size: int, checksum: str = "") -> bool:
        """True when reading every byte of this file version needs no download (memory or disk cache)."""
        disk = self.disk
        key = disk.key(file_url, checksum) if disk is not None else ""
        for i in range(-(-size // self.chunk_size)):
            if (file_url, i) not in self.cache and (disk is None or (key, i) not in disk):
                return False
        return True

    def adopt(self, file_url: str, checksum: str, path: Path, size: int) -> None:
        """Copy a local file whose content is this file version (the writer's clean copy of a file just
        uploaded, whirlpool ``checksum`` known) into the on-disk read cache, so that reading it back, also after
        a remount, costs no download-link call and no byte from 1fichier (issue 15). No await: the file is
        opened now (the writer may drop its copy at once) and copied chunk by chunk in a background task (a
        checkpoint between chunks); nothing happens without a disk cache or a running manager, or when the
        file is larger than the cache's limit."""
        disk = self.disk
        if disk is None or self._nursery is None or not checksum or size > disk.limit:
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.debug("cannot adopt %s: %s", path, exc)
            return
        try:
            if os.fstat(fd).st_size != size:
                raise OSError("size changed")
            self._nursery.start_soon(self._adopt, disk, disk.key(file_url, checksum), fd, size)
        except (OSError, RuntimeError):
            os.close(fd)

    async def _adopt(self, disk: DiskCache, key: str, fd: int, size: int) -> None:
        cs = self.chunk_size

        def copy(i: int, n: int) -> bool:  # in a worker thread: file system only
            data = os.pread(fd, n, i * cs)
            return len(data) == n and disk.write(key, i, data)

        try:
            for i in range(-(-size // cs)):
                n = min(cs, size - i * cs)
                if disk.reserve(key, i, n):
                    ok = False
                    try:
                        ok = await trio.to_thread.run_sync(copy, i, n)
                    finally:
                        disk.commit(key, i, ok)
                    if not ok:
                        disk.invalidate(key)  # never a partial version
                        return
                    self._adopted_bytes += n
                elif (key, i) not in disk:
                    return  # no room (or being written by a download): the rest would be evicted first anyway
            self._adopted_files += 1
        finally:
            os.close(fd)

    async def _to_disk(self, disk: DiskCache, key: str, index: int, data: Chunk) -> None:
        """Hand a downloaded chunk to the disk cache's writer thread; nothing when it is stored or queued
        already. When the writer is behind, wait for it (the GET pauses): a disk slower than the network slows
        the reads down rather than growing memory or leaving holes in the cache. The loop never writes beside
        the thread: two writers renaming into one folder cost the kernel 3× the CPU (measured on ext4, a
        256 MiB read on bare loopback: daemon system time 1.26 → 0.41 s, 230 → 390 MiB/s)."""
        if self._nursery is None:  # no writer thread (a ReadManager used without ``run``)
            disk.put(key, index, data)
            return
        while self._disk_queued and self._disk_queued + len(data) > self.disk_queue_max:
            self._disk_waits += 1
            await self._disk_drained.wait()
        if disk.reserve(key, index, len(data)):
            self._disk_queue.append((key, index, data))
            self._disk_queued += len(data)
            self._disk_wake.set()
            if self._disk_idle.is_set():
                self._disk_idle = trio.Event()

    async def flush_disk(self) -> None:
        """Wait until every downloaded chunk handed to the disk cache is written."""
        await self._disk_idle.wait()

    async def _disk_writer(self) -> None:
        """Write queued chunks into the disk cache in a worker thread, off the event loop (issue 15.5)."""
        disk = self.disk
        if disk is None:
            return
        while True:
            await self._disk_wake.wait()
            self._disk_wake = trio.Event()
            while self._disk_queue:
                batch, self._disk_queue = self._disk_queue[:DISK_BATCH], self._disk_queue[DISK_BATCH:]
                done = [False] * len(batch)

                def work(batch: list[tuple[str, int, Chunk]] = batch, done: list[bool] = done) -> None:
                    for n, (key, index, data) in enumerate(batch):
                        done[n] = disk.write(key, index, data)

                try:
                    await trio.to_thread.run_sync(work)
                finally:
                    for n, (key, index, data) in enumerate(batch):
                        disk.commit(key, index, done[n])
                        self._disk_queued -= len(data)
                    self._disk_drained.set()
                    self._disk_drained = trio.Event()
            self._disk_idle.set()

    def forget(self, file_url: str) -> None:
        """Drop the file's link and cached chunks (it was deleted or replaced remotely)."""
        st = self._files.get(file_url)
        self._links.pop(file_url, None)
        if st is not None:
            if st.handles == 0:
                del self._files[file_url]
        self.cache.invalidate(file_url)
        self.pages.invalidate(file_url)

    def _closed(self, st: _FileState) -> None:
        st.handles -= 1
        self._handles -= 1
        if st.handles == 0 and st.file_url not in self._links:
            self._files.pop(st.file_url, None)

    def _prune(self) -> None:
        """Forget idle files whose link has expired (bounded by token calls per TTL)."""
        for url, st in list(self._files.items()):
            if st.handles == 0 and url not in self._links:
                del self._files[url]

    # ------------------------------------------------------------------ links and GETs
    def _link_of(self, st: _FileState) -> DownloadLink | None:
        """The file's link while younger than ``token_ttl`` (a cachetools TTLCache on ``clock`` expires it)."""
        link: DownloadLink | None = self._links.get(st.file_url)
        return link

    async def _link(self, st: _FileState) -> DownloadLink:
        """The file's link, renewed when older than ``token_ttl`` (one call per file at a time)."""
        link = self._link_of(st)
        if link is not None:
            return link
        async with st.lock:
            link = self._link_of(st)
            if link is not None:
                return link
            self._token_calls += 1
            got = await self._scheduler.call(
                self._scheduler.client.download_get_token, st.file_url, lane=Lane.INTERACTIVE
            )
            link = dataclasses.replace(got, issued_at=self._clock())
            self._links[st.file_url] = link
            return link

    def _fetcher(self, st: _FileState, lane: Lane, unit: int = 0) -> FetchRange:
        """Fetch function of the chunk cache (``unit`` 0: the disk cache first, downloads stored there) or of
        the page cache (``unit`` = PAGE)."""
        cs = unit or self.chunk_size
        disk, key = (self.disk, st.disk_key) if not unit else (None, None)

        async def fetch(first: int, stop: int) -> list[Chunk | None]:
            if unit:
                pages = await self._download(st, first * cs, min(stop * cs, st.size), lane, cs)
                self._random_fetched += sum(len(c) for c in pages if c is not None)
                return list(pages)
            out: list[Chunk | None] = []
            i = first
            while i < stop:
                c = disk.get(key, i) if disk is not None and key is not None else None
                if c is not None:
                    self._disk_bytes += len(c)
                    out.append(c)
                    i += 1
                    continue
                j = i + 1
                while j < stop and not (disk is not None and (key, j) in disk):
                    j += 1
                got = await self._download(st, i * cs, min(j * cs, st.size), lane, cs, first=i, disk_key=key)
                if disk is not None and key is not None:
                    for n, piece in enumerate(got):  # those on_chunk did not hand over (none when it ran)
                        if piece is not None:
                            await self._to_disk(disk, key, i + n, piece)
                out.extend(got)
                i = j
            return out

        return fetch

    async def _download(
        self, st: _FileState, start: int, end: int, lane: Lane, unit: int, *, first: int | None = None,
        disk_key: str | None = None,
    ) -> list[bytes | None]:
        """Bytes ``[start, end)`` of the file in one ranged GET, cut into chunks as they arrive (``start`` is
        chunk-aligned); one link renewal on HTML. A body cut short, a 5xx or a reset is tried again
        (``BODY_RETRIES`` times, ``BODY_RETRY_WAIT`` × n seconds apart): found by the fault soak, a truncated
        ranged GET surfaced EIO to ``cat`` and to an append's copy-in. With ``first`` (the index of the chunk
        at ``start``), each chunk is handed to the chunk cache as soon as it is complete
        (:meth:`ChunkCache.deliver`): a sequential reader follows the GET instead of waiting for its whole
        window; with ``disk_key`` it is also queued for the disk cache then (a read-ahead cancelled after its
        GET loses nothing), and None in the returned list (not kept: a lone sequential reader drops the
        chunks it has passed before the GET ends)."""
        client = self._scheduler.client
        cache, disk = self.cache, self.disk
        on_chunk: Callable[[int, bytes], Awaitable[None]] | None = None
        handed: dict[int, int] = {}  # piece index -> bytes handed over by on_chunk (any attempt)
        if first is not None:

            async def on_chunk(k: int, piece: bytes) -> None:
                handed[k] = len(piece)
                cache.deliver(first + k, piece)
                if disk is not None and disk_key is not None:
                    await self._to_disk(disk, disk_key, first + k, piece)

        renewed = False
        failures = 0
        while True:
            link = await self._link(st)
            try:
                data = await self._scheduler.call(
                    client.download_chunks, link, start, end, unit, lane=lane, on_chunk=on_chunk
                )
            except LinkExpired:
                self._link_expired += 1
                if self._links.get(st.file_url) is link:
                    self._links.pop(st.file_url, None)
                if renewed:
                    raise
                renewed = True
                log.debug("link of %s expired early; renewing it once", st.file_url)
                continue
            except NotFound:
                self.forget(st.file_url)
                raise
            except ServerError as exc:
                failures += 1
                if failures > BODY_RETRIES:
                    raise
                log.info("%s; trying again (%d/%d)", exc, failures, BODY_RETRIES)
                await trio.sleep(BODY_RETRY_WAIT * failures)
                continue
            got = sum(handed.get(k, 0) if c is None else len(c) for k, c in enumerate(data))
            self._downloads += 1
            self._downloaded_bytes += got
            if got != end - start:
                failures += 1
                short = ServerError(f"download of {st.file_url}: {got} of {end - start} bytes arrived")
                if failures > BODY_RETRIES:
                    raise short
                log.info("%s; trying again (%d/%d)", short, failures, BODY_RETRIES)
                await trio.sleep(BODY_RETRY_WAIT * failures)
                continue
            return data

    # ------------------------------------------------------------------ read-ahead
    def _readahead_blocked(self, st: _FileState) -> bool:
        if self._nursery is None or self._clock() < self._readahead_paused_until:
            return True
        if self._link_of(st) is not None:
            return False
        return self._scheduler.next_allowed(self._scheduler.client.download_get_token) > PRESSURE_WAIT

    def _spawn(self, reader: Reader, w: Window) -> None:
        if not w.runs:
            return
        assert self._nursery is not None
        self._readahead_windows += 1
        # The scope exists before the task runs, so a close() in between still cancels it.
        scope = trio.CancelScope()
        reader._scopes.add(scope)
        try:
            self._nursery.start_soon(self._prefetch, reader, w, scope)
        except RuntimeError:  # nursery closing
            reader._scopes.discard(scope)
            w.abandon()

    async def _prefetch(self, reader: Reader, w: Window, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await w.run(self._fetcher(reader._st, Lane.PREFETCH))
            except FichierError as exc:
                self._readahead_errors += 1
                if isinstance(exc, FloodLocked):
                    self._readahead_paused_until = self._clock() + FLOOD_PAUSE
                reader._reset()
                log.debug("read-ahead of %s failed: %s", w.file_url, exc)
            except Exception:  # a bug: keep the mount alive, but say so loudly
                self._readahead_errors += 1
                log.exception("read-ahead of %s crashed", w.file_url)
            finally:
                reader._scopes.discard(scope)

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> dict[str, Any]:
        """Counters for ``status`` (bytes, counts).

        Keys: ``open_handles``, ``files`` (with a handle or a live link), ``token_calls``,
        ``link_expired`` (HTML answers), ``downloads`` (ranged GETs that answered),
        ``downloaded_bytes``, ``reads``, ``read_bytes``, ``readahead_windows`` (started),
        ``readahead_skipped``, ``readahead_errors``, ``random_resets``, ``cache`` (the
        :meth:`ChunkCache.statistics`).
        """
        return {
            "open_handles": self._handles,
            "files": len(self._files),
            "token_calls": self._token_calls,
            "link_expired": self._link_expired,
            "downloads": self._downloads,
            "downloaded_bytes": self._downloaded_bytes,
            "reads": self._reads,
            "read_bytes": self._read_bytes,
            "readahead_windows": self._readahead_windows,
            "readahead_skipped": self._readahead_skipped,
            "readahead_errors": self._readahead_errors,
            "random_resets": self._random_resets,
            "random_reads": self._random_reads,
            "random_fetched_bytes": self._random_fetched,
            "disk_read_bytes": self._disk_bytes,
            "adopted_files": self._adopted_files,
            "adopted_bytes": self._adopted_bytes,
            "disk_queue_waits": self._disk_waits,
            "disk": self.disk.statistics() if self.disk is not None else None,
            "cache": self.cache.statistics(),
            "pages": self.pages.statistics(),
        }


class Reader:
    """One open file handle's reads (create with :meth:`ReadManager.open`).

    Holds the sequential detector only; data lives in the shared ChunkCache and the link in
    the manager's per-file state.
    """

    def __init__(self, manager: ReadManager, st: _FileState) -> None:
        self._m = manager
        self._st = st
        self._closed = False
        self._scopes: set[trio.CancelScope] = set()
        self._pos: int | None = None  # end (bytes) of the furthest read; None before the first
        self._ra_next = 0  # first chunk index not yet requested by this handle
        self._last = 0  # chunks of the last window requested
        self._window = manager.initial_chunks  # chunks of the next read-ahead window
        self._drop_next = 0  # first chunk index this handle has not dropped yet (lone sequential reader)
        self._random = False  # reads go to the page cache (after a non-sequential jump)
        self._streak = 0  # bytes of strictly contiguous reads while random

    @property
    def file_url(self) -> str:
        return self._st.file_url

    @property
    def size(self) -> int:
        """The file size in bytes given to :meth:`ReadManager.open`."""
        return self._st.size

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"Reader({self.file_url!r}, size={self.size}, pos={self._pos}, window={self._window})"

    def close(self) -> None:
        """Release the handle; cancels its read-ahead (idempotent, no await)."""
        if self._closed:
            return
        self._closed = True
        for scope in list(self._scopes):
            scope.cancel()
        self._m._closed(self._st)

    def _reset(self) -> None:
        self._window = self._m.initial_chunks

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (bytes), clamped to the file size.

        Returns ``b""`` at or past the end of the file, or for ``size <= 0``, without any call.
        Cached chunks are served without any API call (also while the API is flood-locked).

        Raises:
            NotFound: the file is gone remotely (its link and cached chunks are dropped).
            LinkExpired: a renewed link also answered HTML (1fichier-api.md §5).
            FichierError: any other error of the scheduler or the download, as raised.
            ValueError: negative offset, or the handle is closed.
        """
        if self._closed:
            raise ValueError("read on a closed Reader")
        if offset < 0:
            raise ValueError("offset must be ≥ 0")
        fsize = self._st.size
        end = min(offset + size, fsize)
        if size <= 0 or offset >= fsize:
            return b""
        m = self._m
        cs = m.chunk_size
        nchunks = -(-fsize // cs)
        first, stop = offset // cs, -(-end // cs)
        extend_to = 0
        sequential = random_path = False

        # -- sequential detector (no await before the fetch is planned) --
        if self._pos is not None and self._random:
            # a random handle turns sequential again only after strictly contiguous reads
            self._streak = self._streak + (end - offset) if offset == self._pos else 0
            self._pos = end
            if self._streak >= RANDOM_BACK_TO_SEQ * cs:
                self._random = False
                self._ra_next = stop
                self._last = stop - first
                self._window = m.initial_chunks
                sequential = True
                self._issue(stop, self._window, grow=True)  # read-ahead restarts beside this read
            else:
                random_path = True
        elif self._pos is None:
            init_stop = min(first + m.initial_chunks, nchunks)
            if self._present(first, stop):
                self._ra_next = stop
                self._last = stop - first
                self._issue(stop, init_stop - stop)  # initial window as read-ahead
            else:
                extend_to = init_stop
                self._ra_next = max(stop, init_stop)
                self._last = self._ra_next - first
            self._window = min(2 * m.initial_chunks, m.max_chunks)
            self._pos = end
        elif self._pos - m.seq_backward <= offset <= self._pos + m.seq_forward:
            sequential = True
            self._pos = max(self._pos, end)
            self._ra_next = max(self._ra_next, stop)
            ahead = self._ra_next * cs - end
            if self._ra_next < nchunks and ahead < self._last * cs // 2:
                self._issue(self._ra_next, self._window, grow=True)
        else:
            m._random_resets += 1
            self._random, self._streak = True, 0
            random_path = True
            self._pos = end
            self._ra_next = stop
            self._last = stop - first
            self._window = m.initial_chunks

        if random_path and not self._present(first, stop) and not self._on_disk(first, stop):
            return await self._read_pages(offset, end)

        chunks = await m.cache.get_range(
            self.file_url, first, stop, m._fetcher(self._st, Lane.INTERACTIVE), extend_to=extend_to
        )
        m._reads += 1
        m._read_bytes += end - offset
        if sequential and self._st.handles == 1:
            # A lone sequential reader will not come back to chunks it has read past: drop them
            # now (not merely first in line for eviction), so that a one-pass read holds about its
            # read-ahead rather than the whole budget, and 100 concurrent readers under a small
            # budget do not evict each other's current chunk and read-ahead. Chunks within
            # ``seq_backward`` behind the furthest read stay: the kernel reorders a little. The
            # furthest read, not this one: with 1 MiB kernel read-ahead several reads are in flight
            # and this one is rarely the furthest when it returns (measured: nothing was dropped,
            # peak RSS 116 instead of 85 MiB for a 256 MiB read under a 64 MiB budget).
            upto = max(0, (self._pos - m.seq_backward) // cs)
            for n in range(max(self._drop_next, upto - (m.seq_backward + m.seq_forward) // cs - 1, 0), upto):
                m.cache.discard((self.file_url, n))
            self._drop_next = max(self._drop_next, upto)
        if len(chunks) == 1:
            c = chunks[0]
            if offset == first * cs and end - offset == len(c) and isinstance(c, bytes):
                return c
            return bytes(memoryview(c)[offset - first * cs : end - first * cs])  # the one copy
        head = offset - first * cs
        tail = end - (stop - 1) * cs
        views: list[Chunk | memoryview] = [memoryview(chunks[0])[head:], *chunks[1:-1], memoryview(chunks[-1])[:tail]]
        return b"".join(views)

    async def _read_pages(self, offset: int, end: int) -> bytes:
        """A random read: the request rounded out to a small unit (a power of two between PAGE and
        RANDOM_UNIT_MAX that follows the request's size), from the page cache; missing neighbouring pages
        are fetched together, one ranged GET per run (issue 15.3)."""
        m = self._m
        unit = min(RANDOM_UNIT_MAX, max(PAGE, 1 << (end - offset - 1).bit_length()))
        lo = offset // unit * unit
        hi = min(-(-end // unit) * unit, self._st.size)
        first, stop = lo // PAGE, -(-hi // PAGE)
        pages = await m.pages.get_range(self.file_url, first, stop, m._fetcher(self._st, Lane.INTERACTIVE, PAGE))
        m._reads += 1
        m._read_bytes += end - offset
        m._random_reads += 1
        p0, p1 = offset // PAGE - first, -(-end // PAGE) - first
        base = (first + p0) * PAGE
        if p1 - p0 == 1:
            return bytes(memoryview(pages[p0])[offset - base : end - base])
        views = [memoryview(pages[p0])[offset - base :], *pages[p0 + 1 : p1 - 1],
                 memoryview(pages[p1 - 1])[: end - (first + p1 - 1) * PAGE]]
        return b"".join(views)

    def _on_disk(self, first: int, stop: int) -> bool:
        disk, key = self._m.disk, self._st.disk_key
        return disk is not None and all((key, n) in disk for n in range(first, stop))

    def _present(self, first: int, stop: int) -> bool:
        cache, url = self._m.cache, self.file_url
        return all((url, n) in cache or cache.in_flight((url, n)) for n in range(first, stop))

    def _issue(self, first: int, count: int, *, grow: bool = False) -> None:
        """Claim chunks ``[first, first + count)`` (clamped to EOF) as read-ahead and start it."""
        m = self._m
        stop = min(first + count, -(-self._st.size // m.chunk_size))
        if stop <= first:
            return
        if m._readahead_blocked(self._st):
            m._readahead_skipped += 1
            return
        if m._link_of(self._st) is None and (self._pos or 0) < 2 * m.initial_chunks * m.chunk_size:
            # everything so far came from the caches (a header read after a remount): read-ahead that would
            # cost a download-link call waits until the reader has gone past two first windows
            m._readahead_skipped += 1
            return
        w = m.cache.claim(self.file_url, first, stop, optional=True)
        if w is None:
            m._readahead_skipped += 1
            return
        self._ra_next = max(self._ra_next, w.stop)
        self._last = w.stop - first
        if grow and w.stop == stop:
            self._window = min(2 * self._window, m.max_chunks)
        m._spawn(self, w)
