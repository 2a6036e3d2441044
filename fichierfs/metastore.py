"""MetaStore: folder listings persisted in SQLite beside the journal, so a remount serves them at once.

What is kept is what 1fichier answered, not the merged view: per listed folder its
sub-folders (id, name, creation date) and files (url, remote name, size, upload date,
checksum, MIME type), the wall-clock time of the listing, and the inode number each entry had.
On the next mount :class:`fichierfs.meta.MetaCache` re-merges these listings in tree order
(so the journal's pending changes, replayed first, stay merged over them exactly as over a
fresh listing) and gives every entry its old inode number back.

Trust rules (never serve a listing we cannot vouch for):

* ``PRAGMA user_version`` holds :data:`FORMAT`; an older or newer format is rebuilt;
* the ``identity`` row (API address, account, remote folder) must match the mount's; a
  foreign DB (copied from another account or folder) is rebuilt;
* ``PRAGMA quick_check`` must answer ``ok`` and the schema must be readable; a damaged file
  is moved aside (``metadata.db.bad``) and rebuilt.

Writes never block a FUSE request: :meth:`MetaStore.put_listing` only queues a snapshot (the
listing objects are immutable); :meth:`MetaStore.flush` writes every queued listing in one
transaction and is run from a worker thread (``trio.to_thread``) by :meth:`MetaStore.run`,
about once a second. A kill -9 loses at most the last second of listings: they are a cache,
the next mount re-lists them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import trio

from fichierfs.models import FileUrl, FolderId, FolderListing, RemoteFile, RemoteFolder

__all__ = ["FORMAT", "MetaStore", "Persisted", "Snapshot"]

log = logging.getLogger(__name__)

FORMAT = 3
"""Schema version in ``PRAGMA user_version`` (1, 2 were never released; 0 = an empty or foreign file)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    folder_id INTEGER PRIMARY KEY,
    parent INTEGER,              -- folder_id of the parent (NULL for the mount root)
    ino INTEGER NOT NULL,
    name TEXT NOT NULL,          -- remote (encoded) name
    created REAL NOT NULL,       -- creation date, seconds since the epoch (0 = unknown)
    listed REAL,                 -- wall-clock time of the last listing of this folder, NULL = never
    dirty INTEGER NOT NULL DEFAULT 0  -- changed by us since its row was last written: re-list before use
);
CREATE INDEX IF NOT EXISTS folders_parent ON folders(parent);
CREATE TABLE IF NOT EXISTS files (
    url TEXT PRIMARY KEY,
    folder INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    date REAL,
    checksum TEXT NOT NULL,
    ctype TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_folder ON files(folder);
"""


@dataclass(frozen=True, slots=True)
class Persisted:
    """One folder's persisted listing, ready to merge: the listing, its wall time, the inodes."""

    folder_id: int
    listing: FolderListing
    listed_wall: float
    inodes: dict[int | str, int]
    """folder_id (sub-folders) or url (files) → inode number."""
    dirty: bool = False
    """Changed by this mount after the row was written and not written again (a crash): the
    listing may lag behind the journal, so it is re-listed before it is served."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a mount needs from the DB: listings in tree order (parents first)."""

    root_folder_id: int
    folders: list[Persisted]
    max_ino: int


def _ts(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _dt(x: float | None) -> datetime | None:
    return None if x is None or x == 0 else datetime.fromtimestamp(x, tz=timezone.utc)


class MetaStore:
    """The persisted listings of one mount (see module doc).

    Args:
        path: the DB file (``<store_dir>/metadata.db``).
        identity: what this DB must belong to (API address, account, remote folder).
    """

    def __init__(self, path: Path, identity: str) -> None:
        self.path = path
        self.identity = identity
        self.rebuilt: str | None = None
        """Why the DB was rebuilt at open (None: it was trusted or new)."""
        self._lock = threading.Lock()
        self._queue: dict[int, tuple[int | None, FolderListing, float, dict[int | str, int]]] = {}
        self._forget: set[int] = set()
        self._root: int | None = None
        self.writes = 0
        self._db = self._open()

    # ------------------------------------------------------------------ open / trust
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _open(self) -> sqlite3.Connection:
        fresh = not self.path.exists()
        reason: str | None = None
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            if not fresh:
                reason = self._distrust(db)
        except sqlite3.DatabaseError as exc:
            reason = f"unreadable ({exc})"
        if reason is not None:
            log.warning("metadata cache %s %s: rebuilt from new listings", self.path, reason)
            self.rebuilt = reason
            if db is not None:
                db.close()
            if self.path.exists():
                os.replace(self.path, Path(str(self.path) + ".bad"))
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            db = self._connect()
        assert db is not None
        if fresh or reason is not None:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={FORMAT}")
            db.execute("INSERT OR REPLACE INTO info VALUES ('identity', ?)", (self.identity,))
        return db

    def _distrust(self, db: sqlite3.Connection) -> str | None:
        """Why ``db`` must not be trusted, or None."""
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != FORMAT:
            return f"has format {version}, this version uses {FORMAT}"
        ok = db.execute("PRAGMA quick_check").fetchone()[0]
        if ok != "ok":
            return f"is damaged ({ok})"
        row = db.execute("SELECT v FROM info WHERE k='identity'").fetchone()
        if row is None or row[0] != self.identity:
            return "belongs to another account, API address or remote folder"
        db.execute("SELECT folder_id, parent, ino, name, created, listed, dirty FROM folders LIMIT 1").fetchall()
        db.execute("SELECT url, folder, ino, filename, size, date, checksum, ctype FROM files LIMIT 1").fetchall()
        return None

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ load
    def load(self) -> Snapshot | None:
        """The persisted tree, parents before children; None when no root listing is kept."""
        with self._lock:
            db = self._db
            row = db.execute("SELECT v FROM info WHERE k='root'").fetchone()
            if row is None:
                return None
            root = int(row[0])
            folders: dict[int, tuple[int | None, int, str, float, float | None]] = {
                r[0]: (r[1], r[2], r[3], r[4], r[5])
                for r in db.execute("SELECT folder_id, parent, ino, name, created, listed FROM folders")
            }
            dirty = {r[0] for r in db.execute("SELECT folder_id FROM folders WHERE dirty=1")}
            if root not in folders or folders[root][4] is None:
                return None
            subs: dict[int, list[int]] = {}
            for fid, (parent, *_rest) in folders.items():
                if parent is not None:
                    subs.setdefault(parent, []).append(fid)
            files: dict[int, list[tuple[str, int, str, int, float | None, str, str]]] = {}
            for r in db.execute("SELECT folder, url, ino, filename, size, date, checksum, ctype FROM files"):
                files.setdefault(r[0], []).append(r[1:])
            max_ino = max([f[1] for f in folders.values()] + [0])
            max_ino = max([max_ino] + [x[1] for fl in files.values() for x in fl])
        out: list[Persisted] = []
        todo = [root]
        while todo:
            fid = todo.pop(0)
            parent, ino, name, created, listed = folders[fid]
            if listed is None:
                continue
            inodes: dict[int | str, int] = {}
            sub_folders = []
            for sid in sorted(subs.get(fid, ())):
                s = folders[sid]
                inodes[sid] = s[1]
                sub_folders.append(RemoteFolder(FolderId(sid), s[2], _dt(s[3])))
                todo.append(sid)
            rfiles = []
            for url, fino, filename, size, date, checksum, ctype in files.get(fid, ()):
                inodes[url] = fino
                rfiles.append(RemoteFile(FileUrl(url), filename, size, _dt(date), checksum, sys.intern(ctype),
                                         folder_id=FolderId(fid)))
            listing = FolderListing(FolderId(fid), name, _dt(created), tuple(sub_folders), tuple(rfiles))
            out.append(Persisted(fid, listing, listed, inodes, fid in dirty))
        return Snapshot(root, out, max_ino)

    def root_inode_of(self, folder_id: int) -> int | None:
        """The persisted inode of a folder (to keep it stable), or None."""
        with self._lock:
            row = self._db.execute("SELECT ino FROM folders WHERE folder_id=?", (folder_id,)).fetchone()
        return None if row is None else int(row[0])

    # ------------------------------------------------------------------ writes (queued)
    def set_root(self, folder_id: int, ino: int) -> None:
        """The mount root is ``folder_id`` (the resolved ``--remote-folder``)."""
        self._root = folder_id
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO info VALUES ('root', ?)", (str(folder_id),))
            self._db.execute(
                "INSERT INTO folders (folder_id, parent, ino, name, created, listed) VALUES (?, NULL, ?, '', 0, NULL) "
                "ON CONFLICT(folder_id) DO UPDATE SET parent=NULL, ino=excluded.ino", (folder_id, ino))

    def mark_dirty(self, folder_id: int) -> None:
        """Folder ``folder_id`` changed in memory (written now, synchronously: one small row; WAL
        without fsync, so it survives a kill -9): until its view is written again, a crash
        makes the next mount re-list it before serving it. A view of it still queued is
        older than this change: it is dropped (written, it would clear the mark)."""
        with self._lock:
            self._queue.pop(folder_id, None)
            try:
                self._db.execute("UPDATE folders SET dirty=1 WHERE folder_id=?", (folder_id,))
            except sqlite3.Error as exc:
                log.warning("metadata cache %s: %s", self.path, exc)

    def put_listing(self, folder_id: int, listing: FolderListing, inodes: dict[int | str, int],
                    wall: float | None = None) -> None:
        """Queue folder ``folder_id``'s new listing (written by the next :meth:`flush`)."""
        with self._lock:
            self._forget.discard(folder_id)
            self._queue[folder_id] = (None, listing, time.time() if wall is None else wall, inodes)

    def forget(self, folder_id: int) -> None:
        """Drop the persisted listing of ``folder_id`` (``fichierfs forget``; a folder gone remotely)."""
        with self._lock:
            self._queue.pop(folder_id, None)
            self._forget.add(folder_id)

    def pending(self) -> int:
        return len(self._queue) + len(self._forget)

    def flush(self) -> int:
        """Write every queued listing in one transaction (call from a worker thread). Returns how many."""
        with self._lock:
            queue, self._queue = self._queue, {}
            forget, self._forget = self._forget, set()
            if not queue and not forget:
                return 0
            db = self._db
            try:
                db.execute("BEGIN")
                for fid in forget:
                    db.execute("UPDATE folders SET listed=NULL WHERE folder_id=?", (fid,))
                    db.execute("DELETE FROM files WHERE folder=?", (fid,))
                for fid, (_p, listing, wall, inodes) in queue.items():
                    self._write_listing(db, fid, listing, wall, inodes)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                log.warning("metadata cache %s: listings not saved: %s", self.path, exc)
                return 0
            self.writes += len(queue)
            return len(queue)

    @staticmethod
    def _write_listing(db: sqlite3.Connection, fid: int, listing: FolderListing, wall: float,
                       inodes: dict[int | str, int]) -> None:
        # the row may not exist yet (its parent's listing comes later in this flush, or never
        # came): create it, else the listing was lost while its sub-folders' were kept (found by
        # the fault soak: a stale sub-folder listing became reachable later, a file invisible)
        db.execute(
            "INSERT INTO folders (folder_id, parent, ino, name, created, listed, dirty) "
            "VALUES (?, NULL, 0, '', 0, ?, 0) ON CONFLICT(folder_id) DO UPDATE SET listed=excluded.listed, dirty=0",
            (fid, wall))
        keep = [int(s.id) for s in listing.sub_folders]
        old = {r[0] for r in db.execute("SELECT folder_id FROM folders WHERE parent=?", (fid,))}
        gone = old - set(keep)
        for g in _descendants(db, gone):
            db.execute("DELETE FROM folders WHERE folder_id=?", (g,))
            db.execute("DELETE FROM files WHERE folder=?", (g,))
        for s in listing.sub_folders:
            db.execute(
                "INSERT INTO folders (folder_id, parent, ino, name, created, listed) VALUES (?, ?, ?, ?, ?, NULL) "
                "ON CONFLICT(folder_id) DO UPDATE SET parent=excluded.parent, ino=excluded.ino, name=excluded.name, "
                "created=excluded.created",
                (int(s.id), fid, inodes.get(int(s.id), 0), s.name, _ts(s.create_date) or 0.0))
        db.execute("DELETE FROM files WHERE folder=?", (fid,))
        db.executemany(
            "INSERT OR REPLACE INTO files (url, folder, ino, filename, size, date, checksum, ctype) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(f.url, fid, inodes.get(f.url, 0), f.filename, f.size, _ts(f.date), f.checksum, f.content_type)
             for f in listing.files])

    async def run(self, source: Callable[[], object] = lambda: None, period: float = 1.0, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Every ``period`` seconds: call ``source`` (MetaCache.persist_dirty: queues changed
        folders) and flush the queue from a worker thread, until cancelled."""
        task_status.started()
        try:
            while True:
                await trio.sleep(period)
                source()
                if self.pending():
                    await trio.to_thread.run_sync(self.flush)
        finally:
            source()

    def statistics(self) -> dict[str, object]:
        return {"path": str(self.path), "writes": self.writes, "queued": self.pending(), "rebuilt": self.rebuilt}


def _descendants(db: sqlite3.Connection, roots: set[int]) -> Iterator[int]:
    todo = list(roots)
    seen: set[int] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        yield f
        todo.extend(r[0] for r in db.execute("SELECT folder_id FROM folders WHERE parent=?", (f,)))
