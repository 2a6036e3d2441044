"""Namespace ops: the journal's ``ops`` and ``dirs`` turned into as few API calls as possible.

One task (:meth:`NamespaceOps.run`) works through the journal in order:

* local folders (``dirs`` rows) whose parent exists remotely are created first
  (``folder/mkdir``; "already exists" after a crash → the folder is adopted from one listing,
  never one a journalled ``rmdir`` is about to remove), then every reference to the local id
  is rewritten (``Store.resolve_folder``);
* ops run in journal order (``seq``), batched: runs of ``rm`` become one ``file/rm`` (≤ 100
  urls, §2.5), gathering the later deletes that no op in between touches (``rm -r`` journals
  deletes and folder removals interleaved); runs of in-place renames one ``file/rename``
  (§2.7); runs of plain moves to one folder one ``file/mv`` (§2.6); a move with a rename, an
  ``rmdir`` and a ``dmv`` go alone;
* an op waits while it depends on something not done yet (a local folder, files still
  uploading into a folder it removes), and a waiting op blocks later ops on the same objects;
  an ``rmdir`` waits for the moves out of its folder and blocks nobody (what follows it
  is what empties the folder);
* failures back off (fichierfs.backoff) and keep their place; an op refused because it was
  already done before a crash (#312/#313, "already exists") is checked and counted as done.

The records are typed (fichierfs.oprecords); the write-back journals them through
:meth:`fichierfs.writer.WriteBack.add_op` and wakes this task with :meth:`wake`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar, TypeVarTuple

import trio

from fichierfs import crashpoint
from fichierfs.backoff import backoff
from fichierfs.errors import FichierError, NotFound, RequestRejected
from fichierfs.meta import MetaCache
from fichierfs.models import FileUrl
from fichierfs.names import encode
from fichierfs.oprecords import Dmv, Mv, Rm, Rmdir
from fichierfs.scheduler import ApiCaller, Lane
from fichierfs.store import OpRow, Store

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

__all__ = ["NamespaceOps", "NamespaceSide"]

log = logging.getLogger(__name__)

MAX_PER_CALL = 100
"""urls per file/rm, files per file/mv or file/rename (§2.5–§2.7)."""


class NamespaceSide(Protocol):
    """What the batcher needs from the write-back (fichierfs.writer.WriteBack)."""

    store: Store
    meta: MetaCache
    scheduler: ApiCaller
    settle: float
    retry_base: float
    retry_max: float

    def clock(self) -> float: ...
    def poke(self) -> None: ...
    def note_size(self, url: str) -> None: ...
    def deleted(self, urls: list[str]) -> None: ...


class NamespaceOps:
    """The namespace-op batcher (see module docstring)."""

    def __init__(self, wb: NamespaceSide) -> None:
        self.wb = wb
        self.op_not_before: dict[int, float] = {}  # op seq → back-off end
        self.dir_not_before: dict[int, float] = {}
        self.mkdir_inflight: set[int] = set()
        self.cancelled_dirs: set[int] = set()
        """Local folders removed while their folder/mkdir was in flight."""
        self.op_calls = 0
        self._wake = trio.Event()

    def wake(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def retry_now(self) -> None:
        self.op_not_before.clear()
        self.dir_not_before.clear()

    # ------------------------------------------------------------------ journal side (vfs calls)
    def rmdir_local(self, folder_id: int) -> None:
        """rmdir of a folder not created remotely yet (or being created)."""
        store = self.wb.store
        d = store.dir(folder_id)
        if folder_id in self.mkdir_inflight or (d is not None and d.attempts > 0):
            # durable: a restart before mkdir's answer must not bring the folder back
            # (found by tests/model: mkdir, rmdir, restart → the folder reappeared). A failed
            # try may have made it too (its answer lost): it is made or adopted, then removed
            # (found by the fault soak: the folder of a lost answer stayed for ever, #366)
            self.cancelled_dirs.add(folder_id)
            store.update_dir(folder_id, cancelled=1)
            return
        with store.transaction():
            store.delete_dir(folder_id)
            self._drop_moves_through(folder_id)

    def _drop_moves_through(self, folder_id: int) -> None:
        """A local folder that will never exist: journaled moves into it are folded into the
        next move out of it (X → d → Y becomes X → Y) or dropped when the file was deleted
        (its ``rm`` deletes it where it is). Found by the fault soak: such a move waited for
        ever and blocked every later change of its old folder."""
        store = self.wb.store
        rows = store.ops()
        for i, row in enumerate(rows):
            op = row.op
            if not isinstance(op, Mv) or op.folder_id != folder_id:
                continue
            nxt = next((o for o in rows[i + 1:] if isinstance(o.op, Mv) and o.op.url == op.url
                        and o.op.from_folder == folder_id), None)
            if nxt is not None:
                assert isinstance(nxt.op, Mv)
                store.update_op(nxt.seq, op=replace(nxt.op, from_folder=op.from_folder, old_name=op.old_name))
            store.delete_ops([row.seq])

    # ------------------------------------------------------------------ the task
    async def run(self) -> None:
        while True:
            progressed = await self.step()
            if not progressed:
                wait = self._wait()
                ev = self._wake
                with trio.move_on_after(max(0.01, min(wait, 3600.0))):
                    await ev.wait()

    def _wait(self) -> float:
        now = self.wb.clock()
        times = [t - now for t in (*self.op_not_before.values(), *self.dir_not_before.values()) if t > now]
        return min(times, default=math.inf)

    async def step(self) -> bool:
        """Run one batch of due ops; True if something was done or tried."""
        store = self.wb.store
        now = self.wb.clock()
        # 1. local folders whose parent exists remotely
        for d in store.dirs():
            if d.parent >= 0 and self.dir_not_before.get(d.id, -math.inf) <= now:
                await self._mkdir(d.id)
                return True
        # 2. ops in journal order; blocked ones block later ops on the same objects
        ops = store.ops()
        if not ops:
            return False
        files = store.files()
        dirs = store.dirs()
        busy_folders = {f.folder_id for f in files} | {f.sent_folder for f in files if f.sent_folder is not None}
        busy_folders |= {d.parent for d in dirs} | {d.id for d in dirs}
        # moves out of a folder (also those journaled after its rmdir: an upload POSTed to it
        # under its old place, then moved and the folder removed) empty it: its rmdir waits
        busy_folders |= {o.op.from_folder for o in ops if isinstance(o.op, Mv)}
        busy_folders |= {o.op.from_parent for o in ops if isinstance(o.op, Dmv)}
        blocked: set[_Entity] = set()
        passed: set[_Entity] = set()  # what the ops a run of deletes has gone past touch
        batch: list[OpRow] = []
        for row in ops:
            ents = _entities(row)
            if batch and isinstance(batch[0].op, Rm):
                # a run of deletes gathers the later deletes it can run before the ops in between:
                # deleting a file earlier only helps (an rmdir waits for its folder to empty) — never
                # past an op on the same file. Found by the 30-minute soak: `rm -r` journals deletes
                # and folder removals interleaved, a file/rm covered a few files, and the queue fell
                # behind (12,283 ops after 30 minutes).
                if (isinstance(row.op, Rm) and not ents & (passed | blocked)
                        and self.op_not_before.get(row.seq, -math.inf) <= now):
                    if not _batchable(batch[0], row, batch):
                        break  # full
                    batch.append(row)
                    continue
                passed |= ents
                continue
            if isinstance(row.op, Rmdir):
                # folder/rm of a folder not empty yet is refused (#366): it waits for the moves out
                # and the uploads, and blocks nobody while it waits (or backs off after #366): what
                # follows it is what empties the folder — a move out journaled after it, or the
                # removal of a sub-folder whose mkdir landed after the user removed it. Found by
                # the fault soak: the move out of a just-POSTed file waited behind it for ever.
                if (bool(ents & blocked) or row.op.folder_id in busy_folders
                        or self.op_not_before.get(row.seq, -math.inf) > now):
                    if batch:
                        break
                    continue
            waiting = (
                any(isinstance(e, int) and e < 0 for e in ents)
                or bool(ents & blocked)
                or self.op_not_before.get(row.seq, -math.inf) > now
            )
            if waiting:
                blocked |= ents
                if batch:
                    break
                continue
            if not batch:
                batch = [row]
                if isinstance(row.op, Rmdir | Dmv):
                    break
                continue
            if _batchable(batch[0], row, batch):
                batch.append(row)
                continue
            break
        if not batch:
            return False
        await self._run_batch(batch)
        return True

    async def _run_batch(self, batch: list[OpRow]) -> None:
        wb = self.wb
        first = batch[0].op
        seqs = [o.seq for o in batch]
        try:
            if isinstance(first, Rm):
                crashpoint.hit("before_delete_old")
                urls = list(dict.fromkeys(u for o in batch if isinstance(o.op, Rm) for u in o.op.urls))
                for u in urls:
                    wb.note_size(u)
                try:
                    await self._call(wb.scheduler.client.file_rm, urls)
                except NotFound:
                    pass  # already gone (deleted elsewhere, or before a crash)
                for u in urls:
                    wb.meta.hide_url(u, wb.clock() + wb.settle)
                wb.deleted(urls)
            elif isinstance(first, Mv):
                await self._run_mv([o.op for o in batch if isinstance(o.op, Mv)])
            elif isinstance(first, Rmdir):
                try:
                    await self._call(wb.scheduler.client.folder_rm, first.folder_id)
                except NotFound:
                    pass
                wb.meta.hide_folder(first.folder_id, wb.clock() + wb.settle)
            else:
                fid = first.folder_id
                if first.name != first.old_name:
                    try:
                        await self._call(wb.scheduler.client.folder_mv, fid, rename=encode(first.name))
                    except RequestRejected:
                        if first.parent == first.from_parent:
                            raise
                    first = replace(first, old_name=first.name)
                    wb.store.update_op(batch[0].seq, op=first)
                if first.parent != first.from_parent:
                    await self._call(wb.scheduler.client.folder_mv, fid, destination_folder_id=first.parent)
                node = wb.meta.node_for_folder(fid)
                if node is not None:
                    wb.meta.pin(node, wb.clock() + wb.settle)
                wb.meta.folders_changed({first.parent, first.from_parent})
        except FichierError as exc:
            attempts = batch[0].attempts + 1
            for o in batch:
                wb.store.update_op(o.seq, attempts=attempts, error=str(exc))
                self.op_not_before[o.seq] = wb.clock() + backoff(attempts, wb.retry_base, wb.retry_max)
            log.log(logging.INFO if attempts < 3 else logging.WARNING, "%s failed (attempt %d): %s",
                    first.kind, attempts, exc)
            return
        log.debug("done: %s", [o.op for o in batch])
        wb.store.delete_ops(seqs)
        for s in seqs:
            self.op_not_before.pop(s, None)
        wb.poke()

    async def _run_mv(self, batch: list[Mv]) -> None:
        wb = self.wb
        first = batch[0]
        now = wb.clock()
        if first.folder_id == first.from_folder:
            pairs = [(o.url, encode(o.name)) for o in batch]
            try:
                await self._call(wb.scheduler.client.file_rename, pairs)
            except RequestRejected:
                # #312: nothing renamed, e.g. already done before a crash (§2.7); check one by one
                if not await self._already_there(batch):
                    raise
        elif len(batch) == 1 and first.name != first.old_name:
            try:
                await self._call(wb.scheduler.client.file_mv, [first.url], first.folder_id,
                                 rename=encode(first.name))
            except RequestRejected:
                if not await self._already_there(batch):
                    raise
        else:
            try:
                await self._call(wb.scheduler.client.file_mv, [o.url for o in batch], first.folder_id)
            except RequestRejected:
                # #313 "same name": done by an earlier try whose reply was lost (found by the soak)
                if not await self._already_there(batch):
                    raise
        for o in batch:
            node = wb.meta.node_for_url(FileUrl(o.url))
            if node is not None:
                wb.meta.pin(node, now + wb.settle)
        # the journal forgets these moves: views persisted before them must not come back
        wb.meta.folders_changed({f for o in batch for f in (o.folder_id, o.from_folder)})

    async def _already_there(self, batch: list[Mv]) -> bool:
        wb = self.wb
        for o in batch:
            try:
                rf = await wb.scheduler.call(wb.scheduler.client.file_info, o.url, lane=Lane.WRITEBACK)
            except NotFound:
                continue
            moved = rf.folder_id is not None and int(rf.folder_id) != o.folder_id
            if rf.filename != encode(o.name) or moved:
                return False
        return True

    async def _call(self, fn: Callable[[*Ts], Awaitable[T]], /, *args: *Ts, **kw: Any) -> T:
        """One metered mutation of the ops queue, in the WRITEBACK lane (counted in ``op_calls``)."""
        self.op_calls += 1
        return await self.wb.scheduler.call(fn, *args, lane=Lane.WRITEBACK, **kw)

    async def _mkdir(self, did: int) -> None:
        wb = self.wb
        store = wb.store
        d = store.dir(did)
        if d is None:
            return
        self.mkdir_inflight.add(did)
        try:
            try:
                new_id = int(await self._call(wb.scheduler.client.folder_mkdir, d.parent, encode(d.name)))
            except RequestRejected:
                # "already exists": created before a crash (or by someone else): adopt it (§2.11)
                listing = await wb.scheduler.call(wb.scheduler.client.folder_ls, d.parent, files=True,
                                                  lane=Lane.WRITEBACK)
                # never adopt a folder that a journaled rmdir is about to remove (mkdir d; rmdir d;
                # mkdir d while the first mkdir was in flight — found by tests/model): retry after it
                doomed = {o.op.folder_id for o in store.ops() if isinstance(o.op, Rmdir)}
                found = [s for s in listing.sub_folders if s.name == encode(d.name) and int(s.id) not in doomed]
                if not found:
                    raise
                new_id = int(found[0].id)
        except FichierError as exc:
            attempts = d.attempts + 1
            store.update_dir(did, attempts=attempts, error=str(exc))
            self.dir_not_before[did] = wb.clock() + backoff(attempts, wb.retry_base, wb.retry_max)
            log.log(logging.INFO if attempts < 3 else logging.WARNING, "mkdir %r failed: %s", d.name, exc)
            return
        finally:
            self.mkdir_inflight.discard(did)
        cur = store.dir(did) or d
        with store.transaction():
            store.resolve_folder(did, new_id)
            if did in self.cancelled_dirs:
                store.add_op(Rmdir(new_id))
            elif cur.parent != d.parent or cur.name != d.name:
                store.add_op(Dmv(new_id, cur.parent, cur.name, from_parent=d.parent, old_name=d.name))
        self.dir_not_before.pop(did, None)
        log.debug("mkdir %r (local %d) → folder %d", d.name, did, new_id)
        node = wb.meta.node_for_folder(did)
        if node is not None:
            wb.meta.set_folder_id(node, new_id)
            wb.meta.pin(node, wb.clock() + wb.settle)
            if did in self.cancelled_dirs:
                wb.meta.hide_folder(new_id)
        self.cancelled_dirs.discard(did)
        wb.poke()


_Entity = tuple[str, str] | int
"""What an op touches: ``("u", url)`` for a file, an int folder id for a folder."""


def _entities(row: OpRow) -> set[_Entity]:
    op = row.op
    if isinstance(op, Rm):
        return {("u", u) for u in op.urls}
    if isinstance(op, Mv):
        return {("u", op.url), op.folder_id, op.from_folder}
    if isinstance(op, Rmdir):
        return {op.folder_id}
    return {op.folder_id, op.parent, op.from_parent}


def _batchable(first: OpRow, row: OpRow, batch: list[OpRow]) -> bool:
    a, b = first.op, row.op
    if isinstance(a, Rm) and isinstance(b, Rm):
        return sum(len(o.op.urls) for o in batch if isinstance(o.op, Rm)) + len(b.urls) <= MAX_PER_CALL
    if isinstance(a, Mv) and isinstance(b, Mv):
        if any(isinstance(o.op, Mv) and o.op.url == b.url for o in batch) or len(batch) >= MAX_PER_CALL:
            return False
        if a.folder_id == a.from_folder:  # in-place renames: one file/rename
            return b.folder_id == b.from_folder
        # plain moves to one folder (no rename): one file/mv
        return a.name == a.old_name and b.name == b.old_name and b.folder_id == a.folder_id \
            and b.from_folder != b.folder_id
    return False
