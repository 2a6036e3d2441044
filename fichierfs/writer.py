"""Writer: staging files and the WriteBack that owns the write side's parts (uploads, ops, replay).

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
* **Namespace ops** (``ops`` table, typed records of :mod:`fichierfs.oprecords`) are run by
  :mod:`fichierfs.nsops` (batched: one ``file/rm`` per run of deletes, …); the journal is
  replayed at mount by :mod:`fichierfs.replay`; upload batches are :mod:`fichierfs.uploader`'s.
* **Failures**: retryable errors back off (``retry_base`` doubling, capped at
  ``retry_max``); a flood lock is the scheduler's business (its breaker holds the call, the
  item keeps its place). Permanent errors are recorded and retried at the cap. Staged data
  is never deleted after failures; the error shows in ``statistics()``.

Improvement over design §11: the journal lives in SQLite (one small durable transaction per
namespace change) rather than an append-only log, because entries are updated in place
(renames of pending files, local folder ids resolved) and a log would need compaction.

Parts of WriteBack in their own modules: :class:`~fichierfs.staged.Staged` (a staged file's
state), :mod:`fichierfs.writespace` (df figures, ENOSPC) and :mod:`fichierfs.writestatus` (the
status section, waiting until drained), both bases of WriteBack.

Concurrency: all state is touched from the trio thread only; disk copies, fsync and
whirlpool run in worker threads (``trio.to_thread``).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, TypeVarTuple

import trio

from fichierfs import crashpoint
from fichierfs.errors import FichierError
from fichierfs.meta import MetaCache, Node
from fichierfs.models import RemoteFile
from fichierfs.names import decode, encode
from fichierfs.nsops import NamespaceOps
from fichierfs.oprecords import Dmv, Mv, Op, Rm, Rmdir
from fichierfs.replay import replay_journal
from fichierfs.scheduler import ApiCaller
from fichierfs.staged import Staged
from fichierfs.store import FileRow, Store
from fichierfs.uploader import MAX_FILE_SIZE, Uploader, whirlpool_of
from fichierfs.writespace import SpaceAccounting
from fichierfs.writestatus import WriteStatus

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

__all__ = ["WriteBack", "Staged", "MAX_FILE_SIZE", "whirlpool_of"]

log = logging.getLogger(__name__)

_COPY = 4 << 20  # bytes per piece when filling a staging file


@dataclass(frozen=True)
class _End:
    """What the journal step of an upload's end decided for one member (see complete_batch)."""

    row: FileRow
    rf: RemoteFile
    outcome: str  # done | changed (rewritten meanwhile: upload again) | unlinked


class WriteBack(SpaceAccounting, WriteStatus):
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
        self.nsops = NamespaceOps(self)
        self._clean: OrderedDict[str, tuple[Path, int]] = OrderedDict()  # url → (path, size)
        self._clean_seq = 0
        # called with (url, whirlpool, path, bytes) when a just-uploaded file becomes a clean copy
        self.on_clean: Callable[[str, str, Path, int], None] | None = None
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._init_status()
        self._init_space()

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
        self.meta.stage(ino, st)  # getattr shows st.size from now on (meta owns attr)

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
        # hold the inode now: the upload may end before the first read and rename the staging
        # copy into a clean copy; a lazy open would then re-create an EMPTY staging file
        # (read of 0 bytes right after a write: tests/core/test_write.py)
        st.open_fd()
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
        if row.state == "posting":
            # rewritten while its POST is in flight (copy on write): the row keeps what was sent
            # (state, size) until the batch's result is known, only ``gen`` says it changed.
            # Found by the fault soak: "dirty" here forgot the POST, and after a kill the POSTed
            # copy was never looked for (a stray file: ENOTEMPTY, `rm -r` stuck, a duplicate).
            self.store.update_file(st.row, gen=row.gen + 1)
        else:
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

    def _unstage(self, st: Staged) -> None:
        """``st`` is no longer its inode's content (``staged()`` answers None from now on)."""
        self.by_row.pop(st.row, None)
        self.meta.unstage(st.ino, st)

    def _forget_staged(self, st: Staged) -> None:
        self.meta.unstage(st.ino, st)
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
        # uploading, or POSTed before a kill and not resolved yet: the POST may have landed, so
        # the row stays (unlinked) until the upload's end deletes the fresh copy (found by the
        # fault soak: the row was dropped while its resolution waited, the copy stayed for ever)
        landing = st.row in self.uploader.inflight or row.state == "posting"
        with self.store.transaction():
            if landing:
                self.store.update_file(st.row, unlinked=True)
            else:
                self.drop_row(row)
        if not landing:
            self._unstage(st)
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

    def drop_row(self, row: FileRow) -> None:
        """Journal step of dropping a local file (inside a transaction): its replaced copies are
        deleted, its row and attributes go."""
        if row.replaces:
            self.store.add_op(Rm(tuple(row.replaces)))
        self.store.delete_file(row.id)
        self.store.drop_attrs(row.key)

    def forget_row(self, rid: int) -> None:
        """File step after :meth:`drop_row` of a row no handle can reach any more (unlinked)."""
        st = self.by_row.pop(rid, None)
        if st is not None and st.handles == 0:
            st.close_fd()
            self._forget_staged(st)
        if st is None or st.handles == 0:
            self._path(rid).unlink(missing_ok=True)
        self.snapshot_path(rid).unlink(missing_ok=True)

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
        """rmdir of a folder not created remotely yet (or being created): see nsops."""
        self.nsops.rmdir_local(folder_id)

    def rename_dir_local(self, folder_id: int, parent: int, name: str) -> None:
        self.store.update_dir(folder_id, parent=parent, name=name)

    # ------------------------------------------------------------------ intent-named calls (vfs)
    def delete_file(self, node: Node) -> None:
        """unlink of ``node`` (POSIX checks done by vfs): a local file is dropped (or deleted once
        its upload lands); a remote one is deleted by the batcher (one file/rm per run)."""
        st = self.staged(node.ino)
        log.debug("delete %r (ino %d): %s", node.name, node.ino,
                  f"local row {st.row}" if st is not None else node.file.url if node.file else "NOTHING")
        if st is not None:
            self.unlink_local(st)
        elif node.file is not None:
            self.add_op(Rm((node.file.url,)))

    def replaced_by_rename(self, target: Node) -> list[str]:
        """A rename over the file ``target`` (POSIX checks done by vfs): a local target is dropped
        and hands over the old copies it was to delete; a remote one is hidden. Returns the remote
        copies the moved file now replaces (deleted once the move is done: :meth:`move_file`)."""
        st = self.staged(target.ino)
        if st is not None:
            replaces = self.take_replaces(st)
            self.unlink_local(st)
            return replaces
        if target.file is not None:
            self.meta.hide_url(target.file.url)
            return [target.file.url]
        return []

    def delete_urls(self, urls: list[str]) -> None:
        """Remote copies replaced by a rename over them: deleted by the batcher."""
        if urls:
            self.add_op(Rm(tuple(urls)))

    def remove_folder(self, folder_id: int) -> None:
        """rmdir of an empty folder: a local one is forgotten, a remote one removed (folder/rm)."""
        if folder_id < 0:
            self.rmdir_local(folder_id)
        else:
            self.add_op(Rmdir(folder_id))

    def move_folder(self, folder_id: int, parent: int, name: str, *, from_parent: int, old_name: str) -> None:
        """A folder renamed or moved (folder/mv, or the pending mkdir's row for a local folder)."""
        if folder_id < 0:
            self.rename_dir_local(folder_id, parent, name)
        else:
            self.add_op(Dmv(folder_id, parent, name, from_parent=from_parent, old_name=old_name))

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
            self.add_op(Mv(node.file.url, folder, name, from_folder=from_folder, old_name=remote_name,
                           size=node.size, checksum=node.file.checksum, date=date))
        self.delete_urls(replaces)

    def add_op(self, op: Op) -> None:
        """Journal a namespace op of a remote object (fichierfs.oprecords; run by nsops)."""
        self.store.add_op(op)
        if isinstance(op, Rm):
            for u in op.urls:
                self.note_size(u)
                self.meta.hide_url(u)
        elif isinstance(op, Rmdir):
            self.meta.hide_folder(op.folder_id)
        self.poke()

    def retry_now(self) -> None:
        """Every failed item is tried again at once (``fichierfs sync --retry-now``)."""
        self.uploader.retry_now()
        self.nsops.retry_now()
        log.info("retry now: every upload, namespace change and folder creation is tried again")
        self.poke()


    # ================================================================== replay
    def replay(self) -> None:
        """Rebuild the local overlay from the journal (at mount) and make everything due now
        (fichierfs.replay shows it in meta; the local files are staged again here)."""
        now = self.clock()
        done = replay_journal(self.store, self.meta, staging_path=self.staging_path,
                              snapshot_path=self.snapshot_path)
        self.nsops.cancelled_dirs |= done.cancelled_dirs
        for f in done.files:
            st = Staged(f.row, f.ino, f.path, size=f.size, due=now)
            if f.unlinked:
                self.by_row[f.row] = st
            else:
                self.bind(st, f.ino)
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
            nursery.start_soon(self.nsops.run)
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
        self.nsops.wake()
        self._changed.set()
        self._changed = trio.Event()

    def complete_batch(self, done: list[tuple[FileRow, RemoteFile]], *, started: float | None = None) -> None:
        """The members ``done`` of one batch landed as the remote files given: their ends are
        journalled in ONE transaction (:meth:`_complete_journal` each), then the cache, the
        figures and the staging files follow (:meth:`_complete_files`, §8.6).

        Each ``sent`` is the row as the batch recorded it (``sent_gen``, ``sent_folder``,
        ``sent_name``). A member rewritten since (a later flush, or a write still unflushed
        into its copy-on-write staging file) is uploaded again; an unlinked one has its fresh
        copy deleted; a moved one is moved.
        """
        if not done:
            return
        now = self.clock()
        crashpoint.hit("after_end")
        for sent, rf in done:
            self.meta.shadow(int(sent.sent_folder if sent.sent_folder is not None else sent.folder_id),
                             encode(sent.sent_name or sent.name), rf.size, on=False)
        with self.store.transaction():
            ends = [self._complete_journal(sent, rf) for sent, rf in done]
        for end in ends:
            if end is not None:
                self._complete_files(end, now, started if started is not None else now)

    def _complete_journal(self, sent: FileRow, rf: RemoteFile) -> _End | None:
        """The journal step of one member's end (inside the caller's transaction); None when its
        row is gone."""
        rid = sent.id
        live = self.by_row.get(rid)
        row = self.store.file(rid)
        if row is None:
            return None
        if row.unlinked:
            self.store.add_op(Rm((rf.url, *row.replaces)))
            self.store.delete_file(rid)
            self.store.drop_attrs(row.key)
            return _End(row, rf, "unlinked")
        if row.gen != sent.sent_gen or (live is not None and (live.cowed or live.dirty or live.writers > 0)):
            self.store.update_file(rid, state="dirty", host=None, xid=None, replaces=[*row.replaces, rf.url],
                                   attempts=0, error=None, size=live.size if live is not None else row.size)
            return _End(row, rf, "changed")
        sent_folder = int(sent.sent_folder if sent.sent_folder is not None else sent.folder_id)
        sent_name = sent.sent_name or sent.name
        if row.folder_id != sent_folder or row.name != sent_name:
            self.store.add_op(Mv(rf.url, row.folder_id, row.name, from_folder=sent_folder,
                                 old_name=sent_name, size=rf.size, checksum=rf.checksum, date=self.wall()))
        if row.replaces:
            self.store.add_op(Rm(tuple(row.replaces)))
        self.store.delete_file(rid)
        self.store.rekey_attrs(row.key, rf.url)
        return _End(row, rf, "done")

    def _complete_files(self, end: _End, now: float, started: float) -> None:
        """The file step of one member's end, after its journal step committed: figures, meta,
        the staging file (dropped, or kept as the clean copy of the new url)."""
        row, rf, rid = end.row, end.rf, end.row.id
        self.uploaded_files += 1
        self.uploaded_bytes += rf.size
        self._recent.append((now, rf.size, started))
        st = self.by_row.get(rid)
        if end.outcome != "done":
            self.meta.hide_url(rf.url)
            if end.outcome == "unlinked":
                self.by_row.pop(rid, None)
                if st is not None:
                    self._unstage(st)
                    self._forget_staged(st)
                self._path(rid).unlink(missing_ok=True)
            return
        log.info("uploaded %r (%d bytes) → %s", row.name, rf.size, rf.url)
        log.debug("uploaded row %d ino %s folder %d → %s", rid, st.ino if st else None, row.folder_id, rf.url)
        for u in row.replaces:
            self.meta.hide_url(u)
        node = self.meta.node(st.ino) if st is not None else None
        if node is not None and node.local_key == row.key:
            self.meta.set_remote_file(node, rf, pinned_until=now + self.settle)
        if st is not None:
            self._unstage(st)
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


