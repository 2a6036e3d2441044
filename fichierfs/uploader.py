"""Uploader: local files due for upload go out in batches (../shared/1fichier-api.md §6).

1fichier takes up to 500 files in one upload POST (several ``file[]`` parts, one end.pl
report for all of them; per file ≤ 300 GB, per upload ≤ 500 GB, §6 limits). A new file
therefore costs 3 upload-side calls *per batch*, not per file.

Forming batches (:meth:`Uploader.start_due`)
===========================================

* A file is *due* ``delay`` seconds after its last close (never while a handle writes it).
* Due files of one destination folder form batches in journal order, bounded by
  ``batch_files`` (≤ 500) and ``batch_bytes``; a file of ``batch_bytes`` or more goes alone.
  Names are unique within a batch (end.pl's links are matched back by name).
* A folder's batch leaves when it is full, when nothing else of that folder is still being
  written or waiting for its quiet delay and no new member came for ``LINGER`` (1 s), or
  when its oldest due member has waited ``batch_wait`` seconds (a steady ``cp -r`` of
  10,000 files never waits for a quiet moment).
* At most ``max_uploads`` batches are in flight (1fichier dislikes many parallel streams).

One batch (:meth:`Uploader._run_batch`)
======================================

1. every member's staging file is opened: the POST reads these descriptors, a *stable
   snapshot* — a member rewritten meanwhile is copied on write by the writer
   (:meth:`fichierfs.writer.WriteBack._cow`), an unlinked one keeps its inode;
2. ``upload/get_upload_server``; then ONE journal transaction records node + id + the gen,
   folder and name sent for every member (state ``posting``) BEFORE the POST (§8.7);
3. one streamed POST (exact Content-Length, never built in memory);
4. one end.pl; its links are matched to members by name and size. Members end.pl does not
   list (or all of them, when end.pl gives nothing) are looked for in ONE listing of the
   folder by name + size + whirlpool; only members found nowhere are sent again;
5. the matched members are completed together (:meth:`WriteBack.complete_batch`: ONE journal
   transaction for all of them, then each member's files and cache entries): old copies are
   queued for deletion (the namespace-op batcher deletes them in one ``file/rm``), a member
   rewritten in flight is uploaded again later, an unlinked one has its fresh copy removed.

Outcomes per member: a member missing from a report is retried alone; a batch refused as a
whole (an HTML page) is split in halves, so one bad member never blocks the others; a file
refused alone for its name is marked ``refused`` (reported, kept locally, no longer pending:
``sync`` does not wait for it forever); an over-quota refusal stops every upload until space
is freed by this mount, ``retry_now`` is called (``fichierfs sync --retry-now``) or
``retry_max`` has passed.

Replay: ``posting`` rows of an earlier process are grouped by upload id and resolved the
same way (end.pl, then one listing) before anything is sent again.
"""

from __future__ import annotations

import logging
import math
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

import trio

from fichierfs import crashpoint
from fichierfs.api import UploadSource
from fichierfs.backoff import backoff
from fichierfs.errors import FichierError, RequestRejected, ServerError, UploadFailed
from fichierfs.models import FolderId, RemoteFile, UploadServer
from fichierfs.names import encode
from fichierfs.oprecords import Rm
from fichierfs.scheduler import ApiCaller, Lane
from fichierfs.store import FileRow, Store


class StagedFile(Protocol):
    """What the uploader reads and sets on a staged file (fichierfs.writer.Staged)."""

    path: Path
    size: int
    writers: int
    dirty: bool
    due: float
    inflight: bool
    cowed: bool


class WriteSide(Protocol):
    """What the uploader needs from the write-back (fichierfs.writer.WriteBack)."""

    store: Store
    meta: Any  # MetaCache (uploader ranks below meta's users; only shadow/node_for_url are used)
    scheduler: ApiCaller
    by_row: Any  # dict[int, Staged]
    retry_base: float
    retry_max: float

    def clock(self) -> float: ...
    def poke(self) -> None: ...
    def staging_path(self, row: int) -> Path: ...
    def snapshot_path(self, row: int) -> Path: ...
    def drop_snapshot(self, row: int) -> None: ...
    def drop_row(self, row: FileRow) -> None: ...
    def forget_row(self, rid: int) -> None: ...
    def complete_batch(self, done: list[tuple[FileRow, RemoteFile]], *, started: float | None = None) -> None: ...

__all__ = ["Uploader", "Batch", "Member", "MAX_FILE_SIZE", "MAX_BATCH_FILES", "MAX_BATCH_BYTES", "whirlpool_of"]

log = logging.getLogger(__name__)

MAX_FILE_SIZE = 300 * 10**9
"""Largest file 1fichier takes: 300 GB (§6 limits); larger writes fail with EFBIG."""
MAX_BATCH_FILES = 500
"""Files per upload POST (§6 limits)."""
MAX_BATCH_BYTES = 500 * 10**9
"""Bytes per upload POST (§6 limits)."""
LINGER = 1.0
"""A partial batch leaves once no file of its folder became due for this long (and none is
being written): a program that pauses a moment between files still fills one batch."""


def whirlpool_of(path: Path | int) -> str:
    """Whirlpool hex digest of a file or an open descriptor (1fichier's checksum, §7). Blocking."""
    import whirlpool

    h = whirlpool.new(b"")
    if isinstance(path, int):
        off = 0
        while piece := os.pread(path, 1 << 20, off):
            h.update(piece)
            off += len(piece)
        return str(h.hexdigest())
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            h.update(piece)
    return str(h.hexdigest())


def is_quota_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "quota" in text or "not enough space" in text or "espace disque" in text


def is_name_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "nom de fichier" in text or "file name" in text or "filename" in text


class _Counting:
    """A file object for httpx's multipart stream that counts the bytes sent (progress).

    ``fileno`` is kept so httpx computes the exact Content-Length with ``fstat``.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sent += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self.fh.seek(offset, whence)
        if whence == 0 and offset == 0:
            self.sent = 0
        return pos

    def tell(self) -> int:
        return self.fh.tell()

    def fileno(self) -> int:
        return self.fh.fileno()


@dataclass(eq=False)
class Member:
    """One file of a batch: its journal row (as sent), remote name, size and snapshot."""

    row: FileRow
    name: str
    size: int
    fh: _Counting | None = None


@dataclass(eq=False)
class Batch:
    """An upload POST of several files into one folder (see module docstring)."""

    folder: int
    members: list[Member]
    started: float
    server: UploadServer | None = None
    phase: str = "waiting"  # waiting (for a node) → posting → checking → done

    @property
    def size(self) -> int:
        return sum(m.size for m in self.members)

    @property
    def bytes_done(self) -> int:
        return sum(m.fh.sent for m in self.members if m.fh is not None)


@dataclass
class _Group:
    """Due rows of one folder (for forming batches)."""

    rows: list[FileRow] = field(default_factory=list)
    oldest: float = math.inf
    newest: float = -math.inf
    more_coming: bool = False


def _fd_room(max_uploads: int) -> int:
    """Files one batch may hold open: the descriptor limit shared by the parallel batches."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover
        return MAX_BATCH_FILES
    if soft == resource.RLIM_INFINITY:
        return MAX_BATCH_FILES
    return max(1, (soft - 256) // max(1, max_uploads))


class Uploader:
    """Forms and runs upload batches for a :class:`~fichierfs.writer.WriteBack` (see module docstring).

    Args:
        wb: the write-back (staging, journal, meta, scheduler, completion of a member).
        max_uploads: batches in flight at once.
        batch_files: files per batch (capped at 500 and by the descriptor limit).
        batch_bytes: bytes per batch; a file this large goes alone.
        batch_wait: longest wait of a due file for its batch to fill.
    """

    def __init__(
        self,
        wb: WriteSide,
        *,
        max_uploads: int = 2,
        batch_files: int = MAX_BATCH_FILES,
        batch_bytes: int = 256 << 20,
        batch_wait: float = 10.0,
    ) -> None:
        self.wb = wb
        self.max_uploads = max(1, max_uploads)
        self.batch_files = max(1, min(batch_files, MAX_BATCH_FILES, _fd_room(self.max_uploads)))
        self.batch_bytes = max(1, min(batch_bytes, MAX_BATCH_BYTES))
        self.batch_wait = batch_wait
        self.linger = min(LINGER, batch_wait)
        self.batches: list[Batch] = []
        self.inflight: dict[int, Batch] = {}  # row id → its batch
        self.not_before: dict[int, float] = {}  # row id → back-off end
        self.cap: dict[int, int] = {}  # row id → largest batch it may join (halved on refusals)
        self.resolving: set[str] = set()  # upload ids of an earlier process being resolved
        self.over_quota: str | None = None
        self.quota_until = -math.inf
        self.quota_files: list[str] = []
        self.posts = 0

    # ------------------------------------------------------------------ control
    def retry_now(self) -> None:
        """Forget every back-off and the over-quota stop (``fichierfs sync --retry-now``)."""
        self.not_before.clear()
        self.over_quota = None
        self.quota_until = -math.inf
        self.quota_files = []
        for row in self.wb.store.files():
            if row.state == "refused":
                self.wb.store.update_file(row.id, state="dirty", error=None, attempts=0)
            self.cap.pop(row.id, None)

    def space_freed(self) -> None:
        """Something of this mount was deleted: an over-quota stop may be over."""
        if self.over_quota is not None:
            log.info("space was freed: retrying the uploads stopped by the quota")
            self.over_quota = None
            self.quota_until = -math.inf
            for rid in list(self.not_before):
                self.not_before.pop(rid, None)

    # ------------------------------------------------------------------ forming batches
    def start_due(self, nursery: trio.Nursery) -> float:
        """Start every batch that may leave now; returns seconds until the next may."""
        wb = self.wb
        now = wb.clock()
        wait = math.inf
        rows = wb.store.files()
        # posting rows of an earlier process (or of a failed resolution): one resolution per upload id
        posting: dict[str, list[FileRow]] = {}
        groups: dict[int, _Group] = {}
        for row in rows:
            if row.id in self.inflight:
                continue
            if row.state == "posting" and row.host and row.xid:
                if (row.sent_folder or 0) >= 0 and self.not_before.get(row.id, -math.inf) <= now:
                    posting.setdefault(row.xid, []).append(row)
                continue
            if row.state in ("refused",) or (row.state == "empty" and not row.replaces):
                continue
            if row.folder_id < 0:
                continue
            st = wb.by_row.get(row.id)
            if st is None:
                continue
            g = groups.setdefault(row.folder_id, _Group())
            if st.writers > 0 or st.dirty:  # being written, or written and not flushed yet
                g.more_coming = True
                continue
            due = max(st.due, self.not_before.get(row.id, -math.inf))
            if due > now:
                if self.not_before.get(row.id, -math.inf) <= now:
                    g.more_coming = True  # closed recently: more of this folder is on its way
                wait = min(wait, due - now)
                continue
            g.rows.append(row)
            g.oldest = min(g.oldest, st.due)
            g.newest = max(g.newest, st.due)
        for xid, members in posting.items():
            if xid not in self.resolving and len(self.batches) < self.max_uploads:
                self.resolving.add(xid)
                nursery.start_soon(self._resolve_task, xid, members)
        if self.over_quota is not None:
            if now < self.quota_until:
                return min(wait, self.quota_until - now)
            self.over_quota = None
        for folder, g in groups.items():
            if not g.rows:
                continue
            for batch_rows, full in self._split(g.rows):
                if len(self.batches) >= self.max_uploads:
                    return wait
                quiet = not g.more_coming and now - g.newest >= self.linger
                leave = full or quiet or now - g.oldest >= self.batch_wait
                if not leave:
                    wait = min(wait, g.oldest + self.batch_wait - now)
                    if g.newest + self.linger > now:
                        wait = min(wait, g.newest + self.linger - now)
                    break
                batch = self._open(folder, batch_rows, now)
                if batch is not None:
                    nursery.start_soon(self._batch_task, batch)
        return wait

    def _split(self, rows: list[FileRow]) -> Iterable[tuple[list[FileRow], bool]]:
        """Rows of one folder in batches: (rows, full?). Big files alone; unique names."""
        wb = self.wb
        cur: list[FileRow] = []
        cur_bytes = 0
        names: set[str] = set()
        cap = self.batch_files
        rest: list[FileRow] = []
        for row in rows:
            st = wb.by_row.get(row.id)
            size = st.size if st is not None else row.size
            if size >= self.batch_bytes or self.cap.get(row.id, MAX_BATCH_FILES) <= 1:
                yield [row], True
                continue
            row_cap = self.cap.get(row.id, MAX_BATCH_FILES)
            if row.name in names or (cur and (len(cur) >= min(cap, row_cap) or cur_bytes + size > self.batch_bytes)):
                if row.name in names:
                    rest.append(row)
                    continue
                yield cur, True
                cur, cur_bytes, names, cap = [], 0, set(), self.batch_files
            cur.append(row)
            cur_bytes += size
            names.add(row.name)
            cap = min(cap, row_cap)
        if cur:
            yield cur, len(cur) >= cap
        if rest:
            yield from self._split(rest)

    def _open(self, folder: int, rows: list[FileRow], now: float) -> Batch | None:
        """Open the members' snapshots (their staging files) and register the batch."""
        members: list[Member] = []
        for row in rows:
            st = self.wb.by_row.get(row.id)
            if st is None:
                continue
            try:
                fh = open(st.path, "rb")  # noqa: SIM115 - closed by _close
            except OSError as exc:
                log.error("upload of %r: staging copy unreadable (%s)", row.name, exc)
                self.wb.store.update_file(row.id, error=f"local: {exc}", attempts=row.attempts + 1)
                self.not_before[row.id] = now + self.wb.retry_max
                continue
            size = os.fstat(fh.fileno()).st_size
            members.append(Member(row, encode(row.name), size, _Counting(fh)))
            st.inflight = True
            st.cowed = False
        if not members:
            return None
        batch = Batch(folder, members, now)
        self.batches.append(batch)
        for m in members:
            self.inflight[m.row.id] = batch
        return batch

    def _close(self, batch: Batch) -> None:
        for m in batch.members:
            if m.fh is not None:
                m.fh.fh.close()
            if self.inflight.get(m.row.id) is batch:
                del self.inflight[m.row.id]
            st = self.wb.by_row.get(m.row.id)
            if st is not None:
                st.inflight = False
            self.wb.drop_snapshot(m.row.id)
        if batch in self.batches:
            self.batches.remove(batch)

    # ------------------------------------------------------------------ one batch
    async def _batch_task(self, batch: Batch) -> None:
        try:
            await self._run_batch(batch)
        except FichierError as exc:
            self._failed([m.row for m in batch.members], exc, whole_batch=len(batch.members) > 1)
        except OSError as exc:
            for m in batch.members:
                row = self.wb.store.file(m.row.id)
                if row is not None:
                    self.wb.store.update_file(row.id, attempts=row.attempts + 1, error=f"local: {exc}")
                self.not_before[m.row.id] = self.wb.clock() + self.wb.retry_max
            log.error("upload batch: local error %s", exc)
        finally:
            self._close(batch)
            self.wb.poke()

    async def _run_batch(self, batch: Batch) -> None:
        wb = self.wb
        store = wb.store
        # empty files cannot be uploaded (§6, §8.8): they stay local; their old copies go
        for m in list(batch.members):
            if m.size == 0:
                with store.transaction():
                    row = store.file(m.row.id)
                    if row is not None:
                        if row.replaces:
                            store.add_op(Rm(tuple(row.replaces)))
                            st = wb.by_row.get(row.id)
                            node = wb.meta.node(st.ino) if st is not None else None
                            for url in row.replaces if node is not None else ():
                                wb.meta.url_removed(node, url)
                        store.update_file(row.id, state="empty", replaces=[], size=0, attempts=0, error=None)
                batch.members.remove(m)
                if m.fh is not None:
                    m.fh.fh.close()
                self.inflight.pop(m.row.id, None)
            elif m.size > MAX_FILE_SIZE:
                store.update_file(m.row.id, state="refused", error="larger than 300 GB, the most 1fichier takes (§6)")
                batch.members.remove(m)
                self.inflight.pop(m.row.id, None)
        if not batch.members:
            return
        client = wb.scheduler.client
        server: UploadServer = await wb.scheduler.call(client.upload_get_upload_server, lane=Lane.WRITEBACK)
        batch.server = server
        with store.transaction():  # the batch is journalled before the POST (§8.7)
            for m in batch.members:
                row = store.file(m.row.id)
                if row is None:
                    continue
                # the gen and name of the SNAPSHOT (taken when the batch formed), not of the row
                # now: a member rewritten or renamed since must not pass for sent after a crash
                # (found by tests/model: kill after the POST lost a rewrite made while in flight)
                snap = m.row
                store.update_file(row.id, state="posting", host=server.host, xid=server.id, sent_gen=snap.gen,
                                  sent_folder=batch.folder, sent_name=snap.name, size=m.size)
                m.row = FileRow(**{**row.__dict__, "state": "posting", "host": server.host, "xid": server.id,
                                   "sent_gen": snap.gen, "sent_folder": batch.folder, "sent_name": snap.name,
                                   "size": m.size})
        for m in batch.members:
            wb.meta.shadow(batch.folder, m.name, m.size)
        post_error: FichierError | None = None
        batch.phase = "posting"
        crashpoint.hit("before_post")
        self.posts += 1
        try:
            await wb.scheduler.call(
                client.upload_post, server, [UploadSource(m.name, "", m.size, file=m.fh) for m in batch.members],
                batch.folder, lane=Lane.WRITEBACK,
            )
        except FichierError as exc:
            post_error = exc
            log.info("upload.cgi of %d file(s) failed (%s); checking what landed", len(batch.members), exc)
        crashpoint.hit("after_post")
        batch.phase = "checking"
        found = await self._resolve(server, batch.folder, [m.row for m in batch.members],
                                    posted_ok=post_error is None, refused=isinstance(post_error, UploadFailed),
                                    fds={m.row.id: m.fh.fileno() for m in batch.members if m.fh is not None})
        missing = [m.row for m in batch.members if m.row.id not in found]
        landed = [(m.row, found[m.row.id]) for m in batch.members if m.row.id in found]
        wb.complete_batch(landed, started=batch.started)  # one journal transaction for the batch
        for row, _ in landed:
            self.not_before.pop(row.id, None)
            self.cap.pop(row.id, None)
        batch.phase = "done"
        if missing:
            self._unsend(missing)
            if post_error is not None:
                raise post_error
            # the POST worked but the report lacks these: a refused name, a node that dropped them
            if len(batch.members) > 1:
                for row in missing:
                    self.cap[row.id] = 1
                    self.not_before[row.id] = wb.clock() + wb.retry_base
                log.info("%d of %d file(s) missing from the upload report; retried one by one",
                         len(missing), len(batch.members))
                return
            raise UploadFailed("the upload report did not list the file")

    def _unsend(self, rows: list[FileRow]) -> None:
        """Members that did not land: back to ``dirty`` (sent again later); one removed meanwhile
        (``unlinked``) is dropped, not sent again just to be deleted."""
        gone: list[int] = []
        with self.wb.store.transaction():
            for row in rows:
                self.wb.meta.shadow(int(row.sent_folder if row.sent_folder is not None else row.folder_id),
                                    encode(row.sent_name or row.name), row.size, on=False)
                cur = self.wb.store.file(row.id)
                if cur is None:
                    continue
                if cur.unlinked:
                    self.wb.drop_row(cur)
                    gone.append(cur.id)
                    continue
                st = self.wb.by_row.get(row.id)
                self.wb.store.update_file(row.id, state="dirty", host=None, xid=None,
                                          size=st.size if st is not None else row.size)
        for rid in gone:
            self.wb.forget_row(rid)

    def _failed(self, rows: list[FileRow], exc: FichierError, *, whole_batch: bool) -> None:
        """A batch (or some of its members) failed with ``exc``: back-off, split, refuse or stop."""
        wb = self.wb
        now = wb.clock()
        names = [r.name for r in rows]
        if is_quota_error(exc):
            self.over_quota = str(exc)
            self.quota_until = now + wb.retry_max
            self.quota_files = sorted(set(self.quota_files) | set(names))
            for row in rows:
                cur = wb.store.file(row.id)
                if cur is not None:
                    wb.store.update_file(row.id, attempts=cur.attempts + 1, error=f"account full: {exc}")
            log.warning("the account is full (%s): %d file(s) wait; uploads resume when this mount frees "
                        "space, after %.0f s, or on 'fichierfs sync --retry-now'", exc, len(rows), wb.retry_max)
            return
        if whole_batch and len(rows) > 1 and isinstance(exc, (UploadFailed, RequestRejected)):
            # refused as a whole (an HTML page): one bad member must not block the others
            half = max(1, len(rows) // 2)
            for row in rows:
                self.cap[row.id] = min(self.cap.get(row.id, MAX_BATCH_FILES), half)
            log.info("upload of %d file(s) refused (%s); trying again in smaller batches", len(rows), exc)
            return
        if len(rows) == 1 and isinstance(exc, (UploadFailed, RequestRejected)) and is_name_error(exc):
            row = rows[0]
            wb.store.update_file(row.id, state="refused", error=f"1fichier refuses this name: {exc}")
            log.warning("upload of %r refused for its name (%s): kept locally, not uploaded; rename it to "
                        "upload it", row.name, exc)
            return
        for row in rows:
            cur = wb.store.file(row.id)
            attempts = (cur.attempts if cur else row.attempts) + 1
            delay = backoff(attempts, wb.retry_base, wb.retry_max)
            if cur is not None:
                wb.store.update_file(row.id, attempts=attempts, error=str(exc))
            self.not_before[row.id] = now + delay
        lvl = logging.INFO if (rows and rows[0].attempts < 2) else logging.WARNING
        log.log(lvl, "upload of %s failed: %s; retried", _names(names), exc)

    # ------------------------------------------------------------------ resolution
    async def _resolve_task(self, xid: str, rows: list[FileRow]) -> None:
        """Posting rows of one upload id whose POST may have landed before a crash (§8.7)."""
        wb = self.wb
        host = rows[0].host or ""
        folder = int(rows[0].sent_folder if rows[0].sent_folder is not None else rows[0].folder_id)
        dummy = Batch(folder, [Member(r, encode(r.sent_name or r.name), r.size) for r in rows], wb.clock(),
                      UploadServer(host, xid), "checking")
        self.batches.append(dummy)
        for r in rows:
            self.inflight[r.id] = dummy
        try:
            found = await self._resolve(UploadServer(host, xid), folder, rows, posted_ok=False, refused=False, fds={})
            wb.complete_batch([(r, found[r.id]) for r in rows if r.id in found])
            self._unsend([r for r in rows if r.id not in found])
        except FichierError as exc:
            for r in rows:
                self.not_before[r.id] = wb.clock() + backoff(r.attempts + 1, wb.retry_base, wb.retry_max)
            log.info("could not check an earlier upload (%s); will try again", exc)
        finally:
            self.resolving.discard(xid)
            self._close(dummy)
            wb.poke()

    async def _resolve(
        self, server: UploadServer, folder: int, rows: list[FileRow], *, posted_ok: bool, refused: bool,
        fds: dict[int, int],
    ) -> dict[int, RemoteFile]:
        """Which members of a recorded POST landed: end.pl first, then ONE listing search.

        Returns row id → the remote file. ``refused``: the node answered the POST with an
        error page, so nothing landed (no end.pl, no listing: 0 calls).
        """
        wb = self.wb
        found: dict[int, RemoteFile] = {}
        if refused:
            return found
        by_name = {encode(r.sent_name or r.name): r for r in rows}
        try:
            links = await wb.scheduler.call(wb.scheduler.client.upload_end, server, lane=Lane.WRITEBACK,
                                            retries=4 if posted_ok else 1)
            now = datetime.now(timezone.utc)
            for x in links:
                r = by_name.get(x.filename)
                if r is not None and r.id not in found and (x.size == r.size or not r.size):
                    found[r.id] = RemoteFile(x.url, x.filename, x.size, now, x.whirlpool, folder_id=FolderId(folder))
            if len(found) == len(rows):
                return found
            # a report that lacks members: refused or dropped — or landed and left out of the
            # report; the listing tells (never send a file twice, §8.7)
        except FichierError as exc:
            log.info("end.pl gave nothing (%s); searching the folder listing", exc)
        left = [r for r in rows if r.id not in found]
        wants: dict[int, tuple[int, str]] = {}
        for r in left:
            fd = fds.get(r.id)
            path = wb.snapshot_path(r.id)  # rewritten during the POST: what was sent (writer._cow)
            if not path.exists():
                path = wb.staging_path(r.id)
            try:
                size = os.fstat(fd).st_size if fd is not None else path.stat().st_size
            except OSError:
                continue
            wp = await trio.to_thread.run_sync(whirlpool_of, fd if fd is not None else path)
            wants[r.id] = (size, wp)
        if not wants:
            return found
        # 1fichier's answer now, never a listing shared by another mount (or by this mount's
        # previous process) that may predate the POST: found by the fault soak, a kill after the
        # POST and before the "changed" notice, the older shared listing served: sent twice
        listing = await wb.scheduler.call(wb.scheduler.client.folder_ls, folder, files=True, lane=Lane.WRITEBACK,
                                          coalesce=False)
        taken: set[str] = set()
        for r in left:
            want = wants.get(r.id)
            if want is None:
                continue
            name = encode(r.sent_name or r.name)
            for rf in listing.files:
                if (rf.filename == name and rf.size == want[0] and rf.checksum.lower() == want[1]
                        and rf.url not in r.replaces and rf.url not in taken):
                    known = wb.meta.node_for_url(rf.url)
                    if known is None or known.gone:
                        log.info("found the upload of %r in the listing", r.name)
                        found[r.id] = rf
                        taken.add(rf.url)
                        break
        return found

    # ------------------------------------------------------------------ status
    def statistics(self) -> dict[str, Any]:
        """Batches in flight: [{folder, files, bytes, bytes_done, phase, seconds}]."""
        now = self.wb.clock()
        return {
            "batches": [
                {"folder": b.folder, "files": len(b.members), "bytes": b.size, "bytes_done": b.bytes_done,
                 "phase": b.phase, "seconds": round(now - b.started, 1)}
                for b in self.batches
            ],
            "posts": self.posts,
            "over_quota": None if self.over_quota is None else {
                "reason": self.over_quota, "files": self.quota_files,
                "retry_in": max(0.0, self.quota_until - now) if self.quota_until > now else 0.0,
            },
        }


def _names(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


__all__ += ["is_quota_error", "is_name_error", "ServerError"]
