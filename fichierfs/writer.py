"""Writer: staging files and the WriteBack worker that turns them into 1fichier uploads.

1fichier has no partial write and never overwrites on upload (docs/1fichier-api.md §6,
§8.1, §8.3), so every change of a file is staged whole in a local file and uploaded whole
after the last close and a quiet delay (design.md Part B §11). The journal
(:mod:`fichierfs.store`) records every promise before FUSE hears "done".

Staging
=======

``<cache>/staging/<row id>`` holds the full new content of a local file. Reads of such a file
come from it (read-your-writes); ``stat`` shows its size at once and the local mtime from the
store. Opening a remote file for writing without ``O_TRUNC`` first copies its content in
(through the read path, or from the clean copy of a file this mount uploaded). After an
upload the staging file becomes a *clean copy* ``<cache>/clean/<n>`` of the new url, so
reading back or rewriting a file just written costs no download (bounded by
``clean_bytes``, oldest dropped first).

WriteBack worker (``run``)
==========================

* **Due-time queue.** A file is due ``delay`` seconds after its last flush/close; it is
  never uploaded while a handle has it open for writing (design §11.5). At most
  ``max_uploads`` run at once; every API call goes through the scheduler's WRITEBACK lane.
* **Upload in 3 legs** (§6): ``upload/get_upload_server`` → *record node + id in the journal*
  → POST ``upload.cgi`` (never repeated blindly: a second POST duplicates, §8.7) → ``end.pl``
  (retried: its result is kept 2 h, §6.4). If end.pl gives nothing (HTML, no links, gone),
  the folder is listed once and searched for name + size + whirlpool (computed locally);
  only when the file is not there is it uploaded again.
* **Overwrite**: the new copy is uploaded first; the replaced urls are deleted afterwards
  (one ``file/rm`` for all deletes due together, §2.5, §8.5). The listing cache is updated
  from end.pl's links, never by re-listing (§8.6).
* **Namespace ops** (``ops`` table) run in journal order, one task: runs of ``rm`` become
  one ``file/rm``; runs of plain moves to one folder one ``file/mv``; runs of in-place
  renames one ``file/rename``. Local folders are created (``folder/mkdir``) before anything
  that needs their id. An op waits while it depends on something not done yet (a local
  folder, files still uploading into a folder it removes).
* **Failures**: retryable errors back off (``retry_base`` doubling, capped at
  ``retry_max``); a flood lock is the scheduler's business (its breaker holds the call, the
  item keeps its place). Permanent errors are recorded and retried at the cap. Staged data
  is never deleted after failures; the error shows in ``statistics()``.

Improvement over design §11: the journal lives in SQLite (one small durable transaction per
namespace change) rather than an append-only log, because entries are updated in place
(renames of pending files, local folder ids resolved) and a log would need compaction.

Concurrency: all state is touched from the trio thread only; disk copies, fsync and
whirlpool run in worker threads (``trio.to_thread``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar, TypeVarTuple

import trio

from fichierfs import crashpoint
from fichierfs.backoff import backoff
from fichierfs.errors import FichierError, NotFound, RequestRejected
from fichierfs.meta import MetaCache, Node
from fichierfs.models import FileUrl, FolderId, RemoteFile
from fichierfs.names import decode, encode
from fichierfs.scheduler import ApiCaller, Lane
from fichierfs.store import FileRow, OpRow, Store
from fichierfs.uploader import MAX_FILE_SIZE, Uploader, whirlpool_of

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

__all__ = ["WriteBack", "Staged", "MAX_FILE_SIZE", "whirlpool_of"]

log = logging.getLogger(__name__)

_COPY = 4 << 20  # bytes per piece when filling a staging file


@dataclass(eq=False)
class Staged:
    """In-memory state of one local file (a ``files`` row, see store.py).

    Attributes:
        row: the journal row id (``staging/<row>``).
        ino: its inode.
        path: the staging file.
        size: bytes now (may be ahead of the row's ``size`` until the next flush).
        writers: open write handles; the file is not uploaded while > 0.
        handles: open handles of any kind that use the staging copy (fd kept open meanwhile).
        dirty: written since the last flush.
        due: clock time after which it may be uploaded.
    """

    row: int
    ino: int
    path: Path
    size: int = 0
    writers: int = 0
    handles: int = 0
    dirty: bool = False
    due: float = math.inf
    fd: int = -1
    inflight: bool = False
    """Its staging file is part of an upload batch in flight (the POST reads that inode)."""
    cowed: bool = False
    """Changed while in flight: the staging file was copied on write; upload it again."""

    def open_fd(self) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self.fd

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class WriteBack:
    """Staging plus the upload/ops worker (see module docstring).

    Args:
        scheduler: the only API caller (``call(endpoint, …, lane=Lane.WRITEBACK)``).
        store: the journal.
        meta: the inode table; updated from mutation replies.
        cache_dir: where ``staging/`` and ``clean/`` live.
        delay: seconds of quiet after the last close before an upload (``--write-back-delay``).
        settle: seconds a listing may lag behind our own changes (pins and hides last this long).
        max_uploads: upload batches in flight at once.
        batch_files, batch_bytes, batch_wait: bounds of one upload batch (see uploader.py).
        retry_base, retry_max: back-off of failed items, seconds.
        clean_bytes: bytes of clean copies kept after uploads.
        clock: monotonic seconds; ``wall``: epoch seconds (local mtimes).
    """

    def __init__(
        self,
        scheduler: ApiCaller,
        store: Store,
        meta: MetaCache,
        cache_dir: Path,
        *,
        delay: float = 3.0,
        settle: float = 300.0,
        max_uploads: int = 2,
        batch_files: int = 500,
        batch_bytes: int = 256 << 20,
        batch_wait: float = 10.0,
        retry_base: float = 5.0,
        retry_max: float = 300.0,
        clean_bytes: int = 1 << 30,
        clock: Callable[[], float] = trio.current_time,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.scheduler = scheduler
        self.store = store
        self.meta = meta
        self.staging = cache_dir / "staging"
        self.clean_dir = cache_dir / "clean"
        self.staging.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.clean_dir, ignore_errors=True)
        self.clean_dir.mkdir(parents=True, exist_ok=True)
        self.delay = delay
        self.settle = settle
        self.max_uploads = max_uploads
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.clean_bytes = clean_bytes
        self.clock = clock
        self.wall = wall
        self._by_ino: dict[int, Staged] = {}
        self.by_row: dict[int, Staged] = {}
        self.uploader = Uploader(self, max_uploads=max_uploads, batch_files=batch_files,
                                 batch_bytes=batch_bytes, batch_wait=batch_wait)
        self._op_not_before: dict[int, float] = {}  # op seq → back-off end
        self._dir_not_before: dict[int, float] = {}
        self._mkdir_inflight: set[int] = set()
        self._cancelled_dirs: set[int] = set()
        self._clean: OrderedDict[str, tuple[Path, int]] = OrderedDict()  # url → (path, size)
        self._clean_seq = 0
        # called with (url, whirlpool, path, bytes) when a just-uploaded file becomes a clean copy
        self.on_clean: Callable[[str, str, Path, int], None] | None = None
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._recent: deque[tuple[float, int, float]] = deque()  # (done, bytes, batch start)
        self.uploaded_files = 0
        self.uploaded_bytes = 0
        self.deleted_bytes = 0
        self._url_size: dict[str, int] = {}  # sizes of urls queued for deletion (df)
        self._space: tuple[int, int, int, int] | None = None  # (total, used, uploaded, deleted) at user/info
        self._pending_sum: tuple[float, int] = (-math.inf, 0)
        self.op_calls = 0

    # ================================================================== staging (vfs side)
    def staged(self, ino: int) -> Staged | None:
        """The live local file of ``ino`` (None once uploaded, unlinked, or never local)."""
        st = self._by_ino.get(ino)
        if st is None or self.by_row.get(st.row) is not st:
            return None
        return st

    def _path(self, row: int) -> Path:
        return self.staging / str(row)

    def staging_path(self, row: int) -> Path:
        """``staging/<row>``: the staged content of journal row ``row``."""
        return self.staging / str(row)

    def snapshot_path(self, row: int) -> Path:
        """``staging/<row>.sent``: a hard link to the inode a batch POSTs, made when a write
        replaces the staging file during the upload (:meth:`_cow`). After a kill it tells that
        the content changed since the POST, and it is what the POST sent (its whirlpool finds
        the upload in the listing). Removed once the row is no longer ``posting``."""
        return self.staging / f"{row}.sent"

    def drop_snapshot(self, row: int) -> None:
        """Remove the snapshot link of ``row`` unless the row still waits for its POST's result."""
        cur = self.store.file(row)
        if cur is None or cur.state != "posting":
            self.snapshot_path(row).unlink(missing_ok=True)

    def _cow(self, st: Staged, *, keep: bool) -> None:
        """Copy on write: the staging file of ``st`` is being POSTed; give the writer a new inode.

        The batch keeps reading the old inode (a stable snapshot); ``keep`` copies the content
        into the new one (not needed before a truncate to 0). The newer content is uploaded
        again once the batch is done (:meth:`complete` sees ``cowed``).
        """
        snap = self.snapshot_path(st.row)
        if not snap.exists():  # keep the POSTed inode reachable by name (found by the fault soak)
            os.link(st.path, snap)
        tmp = st.path.with_name(f"{st.row}.cow")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if keep:
                with open(st.path, "rb") as src:
                    while piece := src.read(_COPY):
                        os.write(fd, piece)
        finally:
            os.close(fd)
        os.replace(tmp, st.path)
        st.close_fd()
        st.cowed = True
        st.dirty = True

    def new_file(self, node_parent_folder: int, name: str, *, replaces: list[str] | None = None) -> Staged:
        """A new empty local file in folder ``node_parent_folder`` (journal row, empty staging file).

        The caller creates the meta node and calls :meth:`bind`.
        """
        row = self.store.new_file(node_parent_folder, name, state="empty", replaces=replaces)
        path = self._path(row.id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        return Staged(row.id, 0, path)

    def bind(self, st: Staged, ino: int) -> None:
        st.ino = ino
        self._by_ino[ino] = st
        self.by_row[st.row] = st

    async def take_over(
        self, node: Node, folder_id: int, fetch: Callable[[int, int], Awaitable[bytes]] | None, *, keep: bool
    ) -> Staged:
        """Make remote file ``node`` a local file (open for writing, truncate).

        ``keep``: copy the current content in (from a clean copy if there is one, else through
        ``fetch(offset, size)``, the read path); else start empty (O_TRUNC). The remote copy is
        recorded in ``replaces`` (deleted after the new upload) and hidden from listings.

        Raises:
            FichierError from ``fetch`` (the node is left unchanged then).
        """
        assert node.file is not None
        url = node.file.url
        row = self.store.new_file(folder_id, node.name, state="empty", replaces=[url])
        st = Staged(row.id, node.ino, self._path(row.id))
        try:
            size = 0
            if keep and node.size > 0:
                clean = self._clean.get(url)
                if clean is not None and clean[1] == node.size:
                    await trio.to_thread.run_sync(shutil.copyfile, clean[0], st.path)
                    size = node.size
                else:
                    assert fetch is not None
                    fd = os.open(st.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                    try:
                        while size < node.size:
                            data = await fetch(size, min(_COPY, node.size - size))
                            if not data:
                                raise FichierError(f"{node.name}: short read while staging at {size}")
                            await trio.to_thread.run_sync(os.pwrite, fd, data, size)
                            size += len(data)
                    finally:
                        os.close(fd)
            else:
                os.close(os.open(st.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600))
        except BaseException:
            self.store.delete_file(row.id)
            st.path.unlink(missing_ok=True)
            raise
        st.size = size
        self.store.update_file(row.id, size=size, state="dirty" if size else "empty")
        self.store.rekey_attrs(url, row.key)
        self.store.commit()
        self.meta.hide_url(url)
        self.meta.set_local(node, row.key, size)
        st.due = self.clock() + self.delay
        self.bind(st, node.ino)
        if not keep:
            st.dirty = True
        return st

    def write(self, st: Staged, offset: int, data: bytes) -> int:
        """pwrite into the staging copy (bytes at ``offset``). Raises FsError-like OSError EFBIG."""
        end = offset + len(data)
        if end > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "1fichier takes files up to 300 GB (§6)")
        self._check_space(st, end - st.size)
        if st.inflight and not st.cowed:
            self._cow(st, keep=True)
        n = os.pwrite(st.open_fd(), data, offset)
        self._pending_sum = (self._pending_sum[0], self._pending_sum[1] + max(0, offset + n - st.size))
        st.size = max(st.size, offset + n)
        st.dirty = True
        return n

    def truncate(self, st: Staged, size: int) -> None:
        if size > MAX_FILE_SIZE:
            raise OSError(errno.EFBIG, "1fichier takes files up to 300 GB (§6)")
        self._check_space(st, size - st.size)
        if st.inflight and not st.cowed:
            self._cow(st, keep=size > 0)
        os.truncate(st.path, size)
        st.size = size
        st.dirty = True

    def read(self, st: Staged, offset: int, size: int) -> bytes:
        if offset >= st.size:
            return b""
        return os.pread(st.open_fd(), min(size, st.size - offset), offset)

    def clean_copy(self, url: str) -> tuple[Path, int] | None:
        """The local copy of a file this mount uploaded (path, size), if still kept."""
        c = self._clean.get(url)
        if c is not None:
            self._clean.move_to_end(url)
        return c

    def opened(self, st: Staged, *, writing: bool) -> None:
        st.handles += 1
        if writing:
            st.writers += 1

    async def flush(self, st: Staged) -> None:
        """Make the staged data durable and journal it as due (flush/fsync/close of a writer).

        fsync of the staging file runs in a thread; then one commit records size, gen and
        state. Costs no API call.
        """
        if not st.dirty:
            return
        st.dirty = False
        if st.fd >= 0:
            await trio.to_thread.run_sync(os.fsync, st.fd)
        row = self.store.file(st.row)
        if row is None:
            return
        state = "dirty" if st.size > 0 else ("empty" if not row.replaces else "dirty")
        self.store.update_file(st.row, size=st.size, gen=row.gen + 1, state=state)
        st.due = self.clock() + self.delay
        self.poke()

    def released(self, st: Staged, *, writing: bool) -> None:
        """A handle closed (sync: the kernel's flush already made the data durable).

        Restarts the quiet delay, closes the fd when the last handle goes; data written
        without a flush (mmap) is flushed by a background task.
        """
        if writing:
            st.writers = max(0, st.writers - 1)
            st.due = self.clock() + self.delay
            if st.dirty and self._nursery is not None:
                self._nursery.start_soon(self.flush, st)
        st.handles = max(0, st.handles - 1)
        if st.handles == 0 and not st.dirty:
            st.close_fd()
            if self.by_row.get(st.row) is not st:
                self._forget_staged(st)
        self.poke()

    def _forget_staged(self, st: Staged) -> None:
        if self._by_ino.get(st.ino) is st:
            del self._by_ino[st.ino]
        if self.by_row.get(st.row) is st:
            del self.by_row[st.row]

    # ================================================================== namespace (vfs side)
    def unlink_local(self, st: Staged) -> None:
        """unlink of a local file: drop it, or mark it for deletion once its upload lands."""
        row = self.store.file(st.row)
        if row is None:
            return
        with self.store.transaction():
            if st.row in self.uploader.inflight:
                self.store.update_file(st.row, unlinked=True)
            else:
                if row.replaces:
                    self.store.add_op("rm", urls=row.replaces)
                self.store.delete_file(st.row)
                self.store.drop_attrs(row.key)
        if st.row not in self.uploader.inflight:
            self.by_row.pop(st.row, None)
            if st.handles > 0:
                # POSIX unlink-while-open: keep the data reachable through an open fd, or a
                # later lazy open would re-create an EMPTY file (found by a break-it session:
                # read after unlink returned 0 bytes)
                st.open_fd()
            st.path.unlink(missing_ok=True)
            if st.handles == 0:
                st.close_fd()
                self._forget_staged(st)
        self.poke()

    def rename_local(self, st: Staged, folder_id: int, name: str, *, also_replaces: list[str] = ()) -> None:  # type: ignore[assignment]
        """A local file moved: its row gets the new place (the upload carries the name)."""
        row = self.store.file(st.row)
        if row is None:
            return
        replaces = list(dict.fromkeys([*row.replaces, *also_replaces]))
        self.store.update_file(st.row, folder_id=folder_id, name=name, replaces=replaces)
        if row.state == "refused":  # refused for its name: the new name may do
            self.store.update_file(st.row, state="dirty", error=None, attempts=0)
            self.uploader.cap.pop(st.row, None)
            st.due = self.clock() + self.delay
        if replaces and row.state == "empty":
            st.due = self.clock() + self.delay
            self.store.update_file(st.row, state="dirty")
        self.poke()

    def take_replaces(self, st: Staged) -> list[str]:
        """Take the ``replaces`` list away from a local file that is about to be overwritten."""
        row = self.store.file(st.row)
        if row is None or not row.replaces:
            return []
        self.store.update_file(st.row, replaces=[])
        return row.replaces

    def mkdir(self, parent_folder: int, name: str) -> int:
        """A local folder (journal ``dirs`` row); returns its negative id."""
        d = self.store.new_dir(parent_folder, name)
        self.poke()
        return d.id

    def rmdir_local(self, folder_id: int) -> None:
        """rmdir of a folder not created remotely yet (or being created)."""
        if folder_id in self._mkdir_inflight:
            # durable: a restart before mkdir's answer must not bring the folder back
            # (found by tests/model: mkdir, rmdir, restart → the folder reappeared)
            self._cancelled_dirs.add(folder_id)
            self.store.update_dir(folder_id, cancelled=1)
            return
        with self.store.transaction():
            self.store.delete_dir(folder_id)
            self._drop_moves_through(folder_id)

    def _drop_moves_through(self, folder_id: int) -> None:
        """A local folder that will never exist: journaled moves into it are folded into the
        next move out of it (X → d → Y becomes X → Y) or dropped when the file was deleted
        (its ``rm`` deletes it where it is). Found by the fault soak: such a move waited for
        ever and blocked every later change of its old folder."""
        ops = self.store.ops()
        for i, op in enumerate(ops):
            if op.kind != "mv" or int(op.data["folder_id"]) != folder_id:
                continue
            url = op.data["url"]
            nxt = next((o for o in ops[i + 1:] if o.kind == "mv" and o.data["url"] == url
                        and int(o.data["from_folder"]) == folder_id), None)
            if nxt is not None:
                d = dict(nxt.data)
                d["from_folder"], d["old_name"] = op.data["from_folder"], op.data["old_name"]
                self.store.update_op(nxt.seq, data=d)
            self.store.delete_ops([op.seq])

    def rename_dir_local(self, folder_id: int, parent: int, name: str) -> None:
        self.store.update_dir(folder_id, parent=parent, name=name)

    # ------------------------------------------------------------------ intent-named calls (vfs)
    def delete_file(self, node: Node) -> None:
        """unlink of ``node`` (POSIX checks done by vfs): a local file is dropped (or deleted once
        its upload lands); a remote one is deleted by the batcher (one file/rm per run)."""
        st = self.staged(node.ino)
        if st is not None:
            self.unlink_local(st)
        elif node.file is not None:
            self.add_op("rm", urls=[node.file.url])

    def delete_urls(self, urls: list[str]) -> None:
        """Remote copies replaced by a rename over them: deleted by the batcher."""
        if urls:
            self.add_op("rm", urls=urls)

    def remove_folder(self, folder_id: int) -> None:
        """rmdir of an empty folder: a local one is forgotten, a remote one removed (folder/rm)."""
        if folder_id < 0:
            self.rmdir_local(folder_id)
        else:
            self.add_op("rmdir", folder_id=folder_id)

    def move_folder(self, folder_id: int, parent: int, name: str, *, from_parent: int, old_name: str) -> None:
        """A folder renamed or moved (folder/mv, or the pending mkdir's row for a local folder)."""
        if folder_id < 0:
            self.rename_dir_local(folder_id, parent, name)
        else:
            self.add_op("dmv", folder_id=folder_id, parent=parent, name=name, from_parent=from_parent,
                        old_name=old_name)

    def move_file(self, node: Node, folder: int, name: str, *, from_folder: int, replaces: list[str]) -> None:
        """A file renamed or moved to ``folder``/``name``, replacing the remote copies ``replaces``.

        A local file's row takes the new place (its upload carries the name); a remote file is
        moved by the batcher (file/rename or file/mv); replaced copies are deleted after.
        """
        st = self.staged(node.ino)
        if st is not None:
            self.rename_local(st, folder, name, also_replaces=replaces)
            return
        if node.file is None:
            return
        remote_name = decode(node.file.filename)
        if folder != from_folder or remote_name != name:
            date = node.file.date.timestamp() if node.file.date else 0.0
            self.add_op("mv", url=node.file.url, folder_id=folder, name=name, from_folder=from_folder,
                        old_name=remote_name, size=node.size, checksum=node.file.checksum, date=date)
        self.delete_urls(replaces)

    def add_op(self, kind: str, **data: Any) -> None:
        """Journal a namespace op of a remote object (see store.py ``ops``)."""
        self.store.add_op(kind, **data)
        if kind == "rm":
            for u in data["urls"]:
                self._note_size(u)
                self.meta.hide_url(u)
        elif kind == "rmdir":
            self.meta.hide_folder(int(data["folder_id"]))
        self.poke()

    def retry_now(self) -> None:
        """Every failed item is tried again at once (``fichierfs sync --retry-now``)."""
        self.uploader.retry_now()
        self._op_not_before.clear()
        self._dir_not_before.clear()
        log.info("retry now: every upload, namespace change and folder creation is tried again")
        self.poke()

    # ================================================================== space (df, ENOSPC)
    def _note_size(self, url: str) -> None:
        """Remember the size of a remote file about to be deleted (df counts it as freed)."""
        if url not in self._url_size:
            node = self.meta.node_for_url(FileUrl(url))
            if node is not None and node.file is not None:
                self._url_size[url] = int(node.file.size)

    def account_space(self, total: int, used: int) -> None:
        """A fresh ``user/info`` answer: the base of :meth:`space` (uploads and deletes since
        are added to it by this mount)."""
        self._space = (total, used, self.uploaded_bytes, self.deleted_bytes)

    def pending_bytes(self) -> int:
        """Bytes staged and not uploaded yet (recomputed at most once a second)."""
        now = self.clock()
        if now - self._pending_sum[0] >= 1.0:
            total = sum(st.size for st in self.by_row.values())
            self._pending_sum = (now, total)
        return self._pending_sum[1]

    def space(self) -> tuple[int, int] | None:
        """(total, used) as this mount knows it: the last user/info figure + bytes uploaded
        since − bytes deleted since + bytes staged and not uploaded yet; None before user/info."""
        if self._space is None:
            return None
        total, used, up0, del0 = self._space
        used = used + (self.uploaded_bytes - up0) - (self.deleted_bytes - del0) + self.pending_bytes()
        return total, max(0, used)

    def _check_space(self, st: Staged, growth: int) -> None:
        """ENOSPC when the account is known to be full (an over-quota refusal, or growth
        beyond the known free space)."""
        if growth <= 0:
            return
        if self.uploader.over_quota is not None:
            raise OSError(errno.ENOSPC, f"the 1fichier account is full ({self.uploader.over_quota})")
        sp = self.space()
        if sp is not None and sp[1] + growth > sp[0]:
            raise OSError(errno.ENOSPC, "the 1fichier account has no space left for this write")

    # ================================================================== replay
    def replay(self) -> None:
        """Rebuild the local overlay from the journal (at mount) and make everything due now.

        Local folders and files appear in their folders at once (``add_orphan``: folders not
        listed yet get them when listed); replaced and deleted urls are hidden; moved files
        and folders show at their new place.
        """
        now = self.clock()
        # (folder, name) of the local entries: a journaled move to a name a local entry holds now
        # (mv a→b, then b overwritten) must not show a second entry; the local one is the newer
        # (add_orphan cannot tell for a folder not listed yet; found by the fault soak: the old
        # remote bytes were read under the name, and a later write made a duplicate)
        taken: set[tuple[int, str]] = set()
        for dir_row in self.store.dirs():
            if dir_row.cancelled:  # removed by the user while its mkdir was in flight: never shown
                self._cancelled_dirs.add(dir_row.id)
                continue
            # pinned while its mkdir is pending (as vfs.mkdir's node is): a re-list of its parent
            # must not drop it (found by the fault soak: a folder we changed is re-listed before
            # it is served from the persisted view, and the acknowledged mkdir vanished)
            self.meta.add_orphan(dir_row.parent, dir_row.name, is_dir=True, folder_id=dir_row.id,
                                 pinned_until=math.inf)
            taken.add((dir_row.parent, dir_row.name))
        for row in self.store.files():
            path = self._path(row.id)
            for u in row.replaces:
                self.meta.hide_url(u)
            if row.state == "posting" and row.sent_name is not None:
                self.meta.shadow(int(row.sent_folder or 0), encode(row.sent_name), row.size)
                if self.snapshot_path(row.id).exists() and row.gen == row.sent_gen:
                    # written during its POST (copy on write) and killed before the flush
                    # journaled it: the staging copy is newer than what was sent. Found by the
                    # fault soak: the append was lost (the sent snapshot passed for the file).
                    row = replace(row, gen=row.gen + 1)
                    self.store.update_file(row.id, gen=row.gen)
            elif row.state != "posting":
                self.snapshot_path(row.id).unlink(missing_ok=True)
            if row.unlinked:
                st = Staged(row.id, 0, path, size=row.size, due=now)
                self.by_row[row.id] = st
                continue
            try:
                size = path.stat().st_size
            except OSError:
                log.error("journal: staging copy of %r (row %d) is missing; left in the journal", row.name, row.id)
                self.store.update_file(row.id, error="staging copy missing")
                continue
            node = self.meta.add_orphan(
                row.folder_id, row.name, is_dir=False, local_key=row.key, size=size, mtime=0.0
            )
            if node is None:
                log.error("journal: %r (row %d) clashes with another local entry", row.name, row.id)
                continue
            taken.add((row.folder_id, row.name))
            st = Staged(row.id, node.ino, path, size=size, due=now)
            if size != row.size and row.state != "posting":
                self.store.update_file(row.id, size=size, gen=row.gen + 1, state="dirty" if size else row.state)
            self.bind(st, node.ino)
        ops = self.store.ops()
        # copies a journaled file/rm deletes: a pending move of one of them (mv a→b, b overwritten
        # and uploaded, then a kill) must not show the doomed copy under the name (found by the
        # fault soak: a later move of that name moved the doomed copy, the new one stayed behind)
        doomed = {u for o in ops if o.kind == "rm" for u in o.data["urls"]}
        doomed |= {u for r in self.store.files() for u in r.replaces}
        for op in ops:
            d = op.data
            if op.kind == "rm":
                for u in d["urls"]:
                    self.meta.hide_url(u)
            elif op.kind == "rmdir":
                self.meta.hide_folder(int(d["folder_id"]))
            elif op.kind == "mv":
                rf = RemoteFile(
                    FileUrl(d["url"]), encode(d["name"]), int(d.get("size", 0)),
                    datetime.fromtimestamp(float(d.get("date", 0.0)), timezone.utc),
                    d.get("checksum", ""), folder_id=FolderId(int(d["folder_id"])),
                )
                old = self.meta.node_for_url(FileUrl(d["url"]))
                if old is not None:
                    self.meta.remove(old)
                if (int(d["folder_id"]), d["name"]) in taken or d["url"] in doomed:
                    continue  # a newer local entry holds the name, or this copy is being deleted
                # pinned while pending, as a live rename pins it (meta.move): the old folder's
                # listing still shows the file there until file/mv runs and must not take it back
                # (found by the fault soak: after a kill, `ls` of the old folder showed the old name
                # and the new one was ENOENT, yet the move landed)
                self.meta.add_orphan(int(d["folder_id"]), d["name"], is_dir=False, file=rf, size=rf.size,
                                     mtime=float(d.get("date", 0.0)), pinned_until=math.inf)
            elif op.kind == "dmv":
                old_dir = self.meta.node_for_folder(int(d["folder_id"]))
                if old_dir is not None:
                    self.meta.remove(old_dir)
                if (int(d["parent"]), d["name"]) in taken:
                    continue
                self.meta.add_orphan(int(d["parent"]), d["name"], is_dir=True, folder_id=int(d["folder_id"]),
                                     pinned_until=math.inf)
        n = self.store.journal_size()
        if n:
            log.info("journal: %d pending change(s) from an earlier mount; resuming them", n)
        self.poke()

    # ================================================================== worker
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The worker: start it with ``await nursery.start(writeback.run)``; ends on :meth:`stop`."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            nursery.start_soon(self._ops_loop)
            while True:
                wait = self.uploader.start_due(nursery)
                self._wakeup = trio.Event()
                with trio.move_on_after(max(0.0, min(wait, 3600.0))):
                    await self._wakeup.wait()

    def stop(self) -> None:
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        pending = self.pending()
        if pending:
            log.warning("%d change(s) not uploaded yet: kept in the journal for the next mount", pending)

    def poke(self) -> None:
        self._wakeup.set()
        self._changed.set()
        self._changed = trio.Event()

    async def complete(self, sent: FileRow, rf: RemoteFile, *, started: float | None = None) -> None:
        """Journal the end of one member's upload in one transaction, then update the cache (§8.6).

        ``sent`` is the row as the batch recorded it (``sent_gen``, ``sent_folder``,
        ``sent_name``). A member rewritten since (a later flush, or a write still unflushed
        into its copy-on-write staging file) is uploaded again; an unlinked one has its fresh
        copy deleted; a moved one is moved.
        """
        rid = sent.id
        now = self.clock()
        crashpoint.hit("after_end")
        self.meta.shadow(int(sent.sent_folder if sent.sent_folder is not None else sent.folder_id),
                         encode(sent.sent_name or sent.name), rf.size, on=False)
        live = self.by_row.get(rid)
        with self.store.transaction():
            row = self.store.file(rid)
            if row is None:
                return
            if row.unlinked:
                self.store.add_op("rm", urls=[rf.url, *row.replaces])
                self.store.delete_file(rid)
                self.store.drop_attrs(row.key)
                outcome = "unlinked"
            elif row.gen != sent.sent_gen or (live is not None and (live.cowed or live.dirty or live.writers > 0)):
                self.store.update_file(rid, state="dirty", host=None, xid=None, replaces=[*row.replaces, rf.url],
                                       attempts=0, error=None)
                outcome = "changed"
            else:
                sent_folder = int(sent.sent_folder if sent.sent_folder is not None else sent.folder_id)
                sent_name = sent.sent_name or sent.name
                if row.folder_id != sent_folder or row.name != sent_name:
                    self.store.add_op(
                        "mv", url=rf.url, folder_id=row.folder_id, name=row.name, from_folder=sent_folder,
                        old_name=sent_name, size=rf.size, checksum=rf.checksum, date=self.wall(),
                    )
                if row.replaces:
                    self.store.add_op("rm", urls=row.replaces)
                self.store.delete_file(rid)
                self.store.rekey_attrs(row.key, rf.url)
                outcome = "done"
        self.uploaded_files += 1
        self.uploaded_bytes += rf.size
        self._recent.append((now, rf.size, started if started is not None else now))
        st = self.by_row.get(rid)
        if outcome != "done":
            self.meta.hide_url(rf.url)
            if outcome == "unlinked":
                self.by_row.pop(rid, None)
                if st is not None:
                    self._forget_staged(st)
                self._path(rid).unlink(missing_ok=True)
            return
        log.info("uploaded %r (%d bytes) → %s", row.name, rf.size, rf.url)
        for u in row.replaces:
            self.meta.hide_url(u)
        node = self.meta.node(st.ino) if st is not None else None
        if node is not None and node.local_key == row.key:
            self.meta.set_remote_file(node, rf, pinned_until=now + self.settle)
        if st is not None:
            self.by_row.pop(rid, None)
            if st.handles == 0:
                self._forget_staged(st)
        # the staging copy becomes the clean copy of the new url (same inode: open fds still work)
        self._clean_seq += 1
        clean = self.clean_dir / str(self._clean_seq)
        try:
            os.rename(self._path(rid), clean)
            self._clean[rf.url] = (clean, rf.size)
            if self.on_clean is not None:  # the read side copies it into the on-disk read cache (issue 15)
                self.on_clean(rf.url, rf.checksum, clean, rf.size)
            self._trim_clean()
        except OSError:
            pass

    def _trim_clean(self) -> None:
        total = sum(s for _, s in self._clean.values())
        while total > self.clean_bytes and self._clean:
            _, (p, s) = self._clean.popitem(last=False)
            p.unlink(missing_ok=True)
            total -= s

    # ------------------------------------------------------------------ namespace ops
    async def _ops_loop(self) -> None:
        while True:
            progressed = await self._ops_step()
            if not progressed:
                wait = self._ops_wait()
                ev = self._changed
                with trio.move_on_after(max(0.01, min(wait, 3600.0))):
                    await ev.wait()

    def _ops_wait(self) -> float:
        now = self.clock()
        times = [t - now for t in (*self._op_not_before.values(), *self._dir_not_before.values()) if t > now]
        return min(times, default=math.inf)

    async def _ops_step(self) -> bool:
        """Run one batch of due ops; True if something was done or tried."""
        now = self.clock()
        # 1. local folders whose parent exists remotely
        for d in self.store.dirs():
            if d.parent >= 0 and self._dir_not_before.get(d.id, -math.inf) <= now:
                await self._mkdir(d.id)
                return True
        # 2. ops in journal order; blocked ones block later ops on the same objects
        ops = self.store.ops()
        if not ops:
            return False
        files = self.store.files()
        dirs = self.store.dirs()
        busy_folders = {f.folder_id for f in files} | {f.sent_folder for f in files if f.sent_folder is not None}
        busy_folders |= {d.parent for d in dirs} | {d.id for d in dirs}
        blocked: set[_Entity] = set()
        batch: list[OpRow] = []
        for op in ops:
            ents = _entities(op)
            waiting = (
                any(isinstance(e, int) and e < 0 for e in ents)
                or bool(ents & blocked)
                or self._op_not_before.get(op.seq, -math.inf) > now
                or (op.kind == "rmdir" and op.data["folder_id"] in busy_folders)
            )
            if waiting:
                blocked |= ents
                if batch:
                    break
                continue
            if not batch:
                batch = [op]
                if op.kind in ("rmdir", "dmv"):
                    break
                continue
            if _batchable(batch[0], op, batch):
                batch.append(op)
                continue
            break
        if not batch:
            return False
        await self._run_batch(batch)
        return True

    async def _run_batch(self, batch: list[OpRow]) -> None:
        kind = batch[0].kind
        seqs = [o.seq for o in batch]
        try:
            if kind == "rm":
                crashpoint.hit("before_delete_old")
                urls = list(dict.fromkeys(u for o in batch for u in o.data["urls"]))
                for u in urls:
                    self._note_size(u)
                try:
                    await self._call(self.scheduler.client.file_rm, urls)
                except NotFound:
                    pass  # already gone (deleted elsewhere, or before a crash)
                for u in urls:
                    self.meta.hide_url(u, self.clock() + self.settle)
                freed = sum(self._url_size.pop(u, 0) for u in urls)
                self.deleted_bytes += freed
                if freed:
                    self.uploader.space_freed()
            elif kind == "mv":
                await self._run_mv(batch)
            elif kind == "rmdir":
                fid = int(batch[0].data["folder_id"])
                try:
                    await self._call(self.scheduler.client.folder_rm, fid)
                except NotFound:
                    pass
                self.meta.hide_folder(fid, self.clock() + self.settle)
            elif kind == "dmv":
                d = batch[0].data
                fid = int(d["folder_id"])
                if d["name"] != d["old_name"]:
                    try:
                        await self._call(self.scheduler.client.folder_mv, fid, rename=encode(d["name"]))
                    except RequestRejected:
                        if d["parent"] == d["from_parent"]:
                            raise
                    d["old_name"] = d["name"]
                    self.store.update_op(batch[0].seq, data=d)
                if d["parent"] != d["from_parent"]:
                    await self._call(self.scheduler.client.folder_mv, fid, destination_folder_id=int(d["parent"]))
                node = self.meta.node_for_folder(fid)
                if node is not None:
                    self.meta.pin(node, self.clock() + self.settle)
        except FichierError as exc:
            attempts = batch[0].attempts + 1
            for o in batch:
                self.store.update_op(o.seq, attempts=attempts, error=str(exc))
                self._op_not_before[o.seq] = self.clock() + backoff(attempts, self.retry_base, self.retry_max)
            log.log(logging.INFO if attempts < 3 else logging.WARNING, "%s failed (attempt %d): %s",
                    kind, attempts, exc)
            return
        self.store.delete_ops(seqs)
        for s in seqs:
            self._op_not_before.pop(s, None)
        self.poke()

    async def _run_mv(self, batch: list[OpRow]) -> None:
        first = batch[0].data
        now = self.clock()
        if first["folder_id"] == first["from_folder"]:
            pairs = [(o.data["url"], encode(o.data["name"])) for o in batch]
            try:
                await self._call(self.scheduler.client.file_rename, pairs)
            except RequestRejected:
                # #312: nothing renamed, e.g. already done before a crash (§2.7); check one by one
                if not await self._already_there(batch):
                    raise
        elif len(batch) == 1 and first["name"] != first["old_name"]:
            try:
                await self._call(self.scheduler.client.file_mv, [first["url"]], int(first["folder_id"]),
                                 rename=encode(first["name"]))
            except RequestRejected:
                if not await self._already_there(batch):
                    raise
        else:
            try:
                await self._call(self.scheduler.client.file_mv, [o.data["url"] for o in batch], int(first["folder_id"]))
            except RequestRejected:
                # #313 "same name": done by an earlier try whose reply was lost (found by the soak)
                if not await self._already_there(batch):
                    raise
        for o in batch:
            node = self.meta.node_for_url(FileUrl(o.data["url"]))
            if node is not None:
                self.meta.pin(node, now + self.settle)

    async def _already_there(self, batch: list[OpRow]) -> bool:
        for o in batch:
            try:
                rf = await self.scheduler.call(self.scheduler.client.file_info, o.data["url"], lane=Lane.WRITEBACK)
            except NotFound:
                continue
            moved = rf.folder_id is not None and int(rf.folder_id) != int(o.data["folder_id"])
            if rf.filename != encode(o.data["name"]) or moved:
                return False
        return True

    async def _call(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, **kw: Any) -> T:
        """One metered mutation of the ops queue, in the WRITEBACK lane (counted in ``op_calls``)."""
        self.op_calls += 1
        return await self.scheduler.call(fn, *args, lane=Lane.WRITEBACK, **kw)

    async def _mkdir(self, did: int) -> None:
        d = self.store.dir(did)
        if d is None:
            return
        self._mkdir_inflight.add(did)
        try:
            try:
                new_id = int(await self._call(self.scheduler.client.folder_mkdir, d.parent, encode(d.name)))
            except RequestRejected:
                # "already exists": created before a crash (or by someone else): adopt it (§2.11)
                listing = await self.scheduler.call(self.scheduler.client.folder_ls, d.parent, files=True,
                                                    lane=Lane.WRITEBACK)
                # never adopt a folder that a journaled rmdir is about to remove (mkdir d; rmdir d;
                # mkdir d while the first mkdir was in flight — found by tests/model): retry after it
                doomed = {int(o.data["folder_id"]) for o in self.store.ops() if o.kind == "rmdir"}
                found = [s for s in listing.sub_folders if s.name == encode(d.name) and int(s.id) not in doomed]
                if not found:
                    raise
                new_id = int(found[0].id)
        except FichierError as exc:
            attempts = d.attempts + 1
            self.store.update_dir(did, attempts=attempts, error=str(exc))
            self._dir_not_before[did] = self.clock() + backoff(attempts, self.retry_base, self.retry_max)
            log.log(logging.INFO if attempts < 3 else logging.WARNING, "mkdir %r failed: %s", d.name, exc)
            return
        finally:
            self._mkdir_inflight.discard(did)
        cur = self.store.dir(did) or d
        with self.store.transaction():
            self.store.resolve_folder(did, new_id)
            if did in self._cancelled_dirs:
                self.store.add_op("rmdir", folder_id=new_id)
            elif cur.parent != d.parent or cur.name != d.name:
                self.store.add_op("dmv", folder_id=new_id, parent=cur.parent, name=cur.name,
                                  from_parent=d.parent, old_name=d.name)
        self._dir_not_before.pop(did, None)
        node = self.meta.node_for_folder(did)
        if node is not None:
            self.meta.set_folder_id(node, new_id)
            self.meta.pin(node, self.clock() + self.settle)
            if did in self._cancelled_dirs:
                self.meta.hide_folder(new_id)
        self._cancelled_dirs.discard(did)
        self.poke()

    # ================================================================== status
    def pending(self) -> int:
        """Files and ops not done yet (empty local files without old copies are not pending)."""
        return self.store.journal_size()

    def statistics(self) -> dict[str, Any]:
        """The ``writeback`` section of the status document (contract with ``fichierfs status``).

        Keys: pending, pending_bytes, uploading [{path, bytes_done, size}], uploaded_files,
        uploaded_bytes, rate (bytes/s over the last 60 s), failed, errors [{path, error,
        attempts}], journal (entries), ops (namespace ops pending), local_folders.
        """
        now = self.clock()
        while self._recent and self._recent[0][0] < now - 60:
            self._recent.popleft()
        files = self.store.files()
        ops = self.store.ops()
        dirs = self.store.dirs()
        pending_files = [f for f in files if f.state != "empty" or f.replaces]
        errors = [{"path": self._row_path(f), "error": f.error, "attempts": f.attempts}
                  for f in files if f.error and f.state != "refused"]
        errors += [{"path": f"{o.kind} {o.data.get('name') or o.data.get('urls') or o.data.get('folder_id')}",
                    "error": o.error, "attempts": o.attempts} for o in ops if o.error]
        errors += [{"path": d.name, "error": d.error, "attempts": d.attempts} for d in dirs if d.error]
        up = self.uploader.statistics()
        uploading = []
        for b in self.uploader.batches:
            first = b.members[0].row.name if b.members else "?"
            what = first if len(b.members) == 1 else f"{len(b.members)} files ({first}, …)"
            uploading.append({"path": what, "files": len(b.members), "bytes_done": b.bytes_done, "size": b.size,
                              "phase": b.phase})
        refused = [f for f in files if f.state == "refused"]
        return {
            "pending": len(pending_files) - len(refused) + len(ops) + len(dirs),
            "pending_bytes": sum(f.size for f in pending_files if f.state != "refused"),
            "uploading": uploading,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "rate": self._rate(now),
            "failed": len(errors),
            "errors": errors,
            "refused": [{"path": self._row_path(f), "error": f.error} for f in refused],
            "over_quota": up["over_quota"],
            "batches": up["batches"],
            "posts": up["posts"],
            "journal": len(files) + len(ops) + len(dirs),
            "journal_commits": self.store.commits,
            "journal_commit_seconds": round(self.store.commit_seconds, 3),
            "journal_commit_max": round(self.store.commit_max, 4),
            "ops": len(ops),
            "local_folders": len(dirs),
        }

    def _rate(self, now: float) -> float:
        """Bytes/s of the uploads finished in the last 60 s, over the time they actually took
        (from the start of the first of their batches to now), so a burst after a remount is
        not averaged over 60 s; 0 (no meaningful rate yet) with less than 2 s of history."""
        if not self._recent:
            return 0.0
        span = now - min(t0 for _, _, t0 in self._recent)
        if span < 2.0:
            return 0.0
        return sum(b for _, b, _ in self._recent) / span

    def _row_path(self, row: FileRow) -> str:
        st = self.by_row.get(row.id)
        if st is not None:
            try:
                return self.meta.path_of(st.ino)
            except FichierError:
                pass
        return row.name

    async def wait_drained(self) -> None:
        """Wait until nothing is pending (``fichierfs sync``, ``umount --wait``, tests)."""
        while self.pending() > 0:
            await self._changed.wait()


_Entity = tuple[str, str] | int
"""What an op touches: ``("u", url)`` for a file, an int folder id for a folder."""


def _entities(op: OpRow) -> set[_Entity]:
    d = op.data
    ents: set[_Entity] = set()
    if op.kind == "rm":
        ents |= {("u", u) for u in d["urls"]}
    elif op.kind == "mv":
        ents |= {("u", d["url"]), int(d["folder_id"]), int(d["from_folder"])}
    elif op.kind == "rmdir":
        ents.add(int(d["folder_id"]))
    elif op.kind == "dmv":
        ents |= {int(d["folder_id"]), int(d["parent"]), int(d["from_parent"])}
    return ents


def _batchable(first: OpRow, op: OpRow, batch: list[OpRow]) -> bool:
    if op.kind != first.kind:
        return False
    if op.kind == "rm":
        return sum(len(o.data["urls"]) for o in batch) + len(op.data["urls"]) <= 100
    if op.kind == "mv":
        a, b = first.data, op.data
        if any(o.data["url"] == b["url"] for o in batch) or len(batch) >= 100:
            return False
        if a["folder_id"] == a["from_folder"]:  # in-place renames: one file/rename
            return bool(b["folder_id"] == b["from_folder"])
        # plain moves to one folder (no rename): one file/mv
        return bool(a["name"] == a["old_name"] and b["name"] == b["old_name"] and b["folder_id"] == a["folder_id"]
                    and b["from_folder"] != b["folder_id"])
    return False
