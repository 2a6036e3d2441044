"""Replay: the local overlay rebuilt from the journal when a mount starts.

Everything an earlier process promised and 1fichier does not know yet (store.py) is shown
again before the first listing is served: local folders and files appear in their folders
(``MetaCache.add_orphan``: folders not listed yet get them when listed), replaced and
deleted urls are hidden, moved files and folders show at their new place, and files whose
upload was recorded (``posting``) are shadowed in their folder until end.pl or a listing
tells whether the POST landed (fichierfs.uploader resolves them).

:func:`replay_journal` changes the journal only where the staging directory tells more
than the journal (a staging copy written after its last journalled flush); it returns the
files to stage again, which the write-back binds (fichierfs.writer.WriteBack.replay).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from fichierfs.meta import MetaCache
from fichierfs.models import FileUrl, FolderId, RemoteFile
from fichierfs.names import encode
from fichierfs.oprecords import Dmv, Mv, Rm, Rmdir
from fichierfs.store import Store

__all__ = ["replay_journal", "Replayed", "Restored"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restored:
    """A local file of the journal, staged again: ``ino`` 0 for a file unlinked while its
    upload was in flight (not shown; its fresh copy is deleted once the upload lands)."""

    row: int
    ino: int
    path: Path
    size: int
    unlinked: bool = False


@dataclass
class Replayed:
    files: list[Restored] = field(default_factory=list)
    cancelled_dirs: set[int] = field(default_factory=set)
    """Local folders removed while their folder/mkdir was in flight (never shown)."""


def replay_journal(
    store: Store, meta: MetaCache, *, staging_path: Callable[[int], Path], snapshot_path: Callable[[int], Path]
) -> Replayed:
    """Show the journal's pending changes in ``meta``; return the local files to stage again."""
    out = Replayed()
    # (folder, name) of the local entries: a journaled move to a name a local entry holds now
    # (mv a→b, then b overwritten) must not show a second entry; the local one is the newer
    # (add_orphan cannot tell for a folder not listed yet; found by the fault soak: the old
    # remote bytes were read under the name, and a later write made a duplicate)
    taken: set[tuple[int, str]] = set()
    for dir_row in store.dirs():
        if dir_row.cancelled:  # removed by the user while its mkdir was in flight: never shown
            out.cancelled_dirs.add(dir_row.id)
            continue
        # pinned while its mkdir is pending (as vfs.mkdir's node is): a re-list of its parent
        # must not drop it (found by the fault soak: a folder we changed is re-listed before
        # it is served from the persisted view, and the acknowledged mkdir vanished)
        meta.add_orphan(dir_row.parent, dir_row.name, is_dir=True, folder_id=dir_row.id, pinned_until=math.inf)
        taken.add((dir_row.parent, dir_row.name))
    for row in store.files():
        path = staging_path(row.id)
        for u in row.replaces:
            meta.hide_url(u)
        if row.state == "posting" and row.sent_name is not None:
            meta.shadow(int(row.sent_folder or 0), encode(row.sent_name), row.size)
            if snapshot_path(row.id).exists() and row.gen == row.sent_gen:
                # written during its POST (copy on write) and killed before the flush
                # journaled it: the staging copy is newer than what was sent. Found by the
                # fault soak: the append was lost (the sent snapshot passed for the file).
                row = replace(row, gen=row.gen + 1)
                store.update_file(row.id, gen=row.gen)
        elif row.state != "posting":
            snapshot_path(row.id).unlink(missing_ok=True)
        if row.unlinked:
            out.files.append(Restored(row.id, 0, path, row.size, unlinked=True))
            continue
        try:
            size = path.stat().st_size
        except OSError:
            log.error("journal: staging copy of %r (row %d) is missing; left in the journal", row.name, row.id)
            store.update_file(row.id, error="staging copy missing")
            continue
        node = meta.add_orphan(row.folder_id, row.name, is_dir=False, local_key=row.key, size=size, mtime=0.0)
        if node is None:
            log.error("journal: %r (row %d) clashes with another local entry", row.name, row.id)
            continue
        taken.add((row.folder_id, row.name))
        out.files.append(Restored(row.id, node.ino, path, size))
        if size != row.size and row.state != "posting":
            store.update_file(row.id, size=size, gen=row.gen + 1, state="dirty" if size else row.state)
    ops = store.ops()
    # copies a journaled file/rm deletes: a pending move of one of them (mv a→b, b overwritten
    # and uploaded, then a kill) must not show the doomed copy under the name (found by the
    # fault soak: a later move of that name moved the doomed copy, the new one stayed behind)
    doomed = {u for o in ops if isinstance(o.op, Rm) for u in o.op.urls}
    doomed |= {u for r in store.files() for u in r.replaces}
    for o in ops:
        op = o.op
        if isinstance(op, Rm):
            for u in op.urls:
                meta.hide_url(u)
        elif isinstance(op, Rmdir):
            meta.hide_folder(op.folder_id)
        elif isinstance(op, Mv):
            rf = RemoteFile(
                FileUrl(op.url), encode(op.name), op.size, datetime.fromtimestamp(op.date, timezone.utc),
                op.checksum, folder_id=FolderId(op.folder_id),
            )
            old = meta.node_for_url(FileUrl(op.url))
            if old is not None:
                meta.remove(old)
            if (op.folder_id, op.name) in taken or op.url in doomed:
                continue  # a newer local entry holds the name, or this copy is being deleted
            # pinned while pending, as a live rename pins it (meta.move): the old folder's
            # listing still shows the file there until file/mv runs and must not take it back
            # (found by the fault soak: after a kill, `ls` of the old folder showed the old name
            # and the new one was ENOENT, yet the move landed)
            meta.add_orphan(op.folder_id, op.name, is_dir=False, file=rf, size=rf.size, mtime=op.date,
                            pinned_until=math.inf)
        elif isinstance(op, Dmv):
            old_dir = meta.node_for_folder(op.folder_id)
            if old_dir is not None:
                meta.remove(old_dir)
            if (op.parent, op.name) in taken:
                continue
            meta.add_orphan(op.parent, op.name, is_dir=True, folder_id=op.folder_id, pinned_until=math.inf)
    return out
