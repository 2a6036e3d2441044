"""Store: the persistent SQLite journal of pending remote mutations and local attributes.

Everything the mount promised a program but 1fichier does not know yet lives here, in one
SQLite file ``<cache dir>/<account>/store.db`` (WAL, ``synchronous=FULL``: a commit is on
disk when :meth:`Store.commit` returns). A FUSE operation that changes the namespace is
answered only after its journal rows are committed, so ``kill -9`` at any point loses
nothing that was acknowledged (an un-``fsync``'d ``write()`` may be lost, as on any
file system).

Tables
======

``files`` — one row per **local file** (a file whose content exists only in the staging
directory): new files, files being rewritten, empty files (1fichier cannot hold them,
docs/1fichier-api.md §6 limits, §8.8). Key ``local:<id>``.

    =========  ===============================================================================
    column     meaning
    =========  ===============================================================================
    id         INTEGER PRIMARY KEY; the staging file is ``staging/<id>``
    folder_id  destination folder (negative: a local folder not yet created, see ``dirs``)
    name       the local (decoded) name
    size       bytes of the staged copy at the last flush (while ``posting``: the bytes sent; a flush
               during the POST only bumps ``gen``)
    gen        bumped by every flush that changed data; an upload records the gen it sent
    state      ``dirty``  waiting for its quiet delay, then uploaded;
               ``empty``  0 bytes: kept locally (and listed) until it has content;
               ``posting`` a node + upload id were obtained and recorded BEFORE the POST:
               after a crash the result is fetched from end.pl (kept 2 h, §6.4) instead of
               uploading again (§8.7); if end.pl has nothing, the folder listing is searched
               for name + size + whirlpool; only then is the file uploaded again
    host, xid  the upload node and id of a ``posting`` row (§6.1)
    sent_*     the gen, folder and name the ``posting`` row sent
    replaces   JSON list of urls of older remote copies, deleted once this copy is uploaded
               (an overwrite uploads the new copy first, §7 "Duplicates", §8.3)
    unlinked   1: removed locally while its upload was in flight; deleted once uploaded
    attempts   failed upload attempts so far; ``error`` the last error text
    =========  ===============================================================================

``dirs`` — local folders whose ``folder/mkdir`` has not succeeded yet. ``id`` is negative
and stands for the folder everywhere (files, ops, other dirs) until the real folder id is
known; :meth:`Store.resolve_folder` then rewrites every reference in one transaction.

``ops`` — namespace mutations of remote objects, executed in ``seq`` order; each row is a
typed record of :mod:`fichierfs.oprecords` (``Rm``, ``Mv``, ``Rmdir``, ``Dmv``), written and
read by ``oprecords.dump``/``load`` only:

    ``rm``     {"urls": [...]}                                 file/rm (batched, §2.5)
    ``mv``     {"url", "folder_id", "name", "from_folder", "old_name", "size", "checksum", "date"}
               file/rename.cgi when only the name changes, file/mv.cgi otherwise (``rename``
               left out when the name is unchanged, §2.6, §8.11)
    ``rmdir``  {"folder_id"}                                    folder/rm (§2.12)
    ``dmv``    {"folder_id", "parent", "name", "from_parent", "old_name"}   folder/mv, one call
               per change (rename ignores the destination, §2.13)

``attrs`` — times and modes programs set (``touch -d``, ``cp -p``, ``tar -x``,
``rsync -a``), keyed by the object's identity: ``url`` for a remote file, ``local:<id>``
for a local one, ``d:<folder_id>`` for a folder. 1fichier stores no modification time
(§2.9, §7), so these survive only here. Re-keyed when an upload gives a url or a mkdir a
folder id.

Crash states of one upload (the argument the tests in tests/core/test_crash*.py check):

1. ``dirty`` (before get_upload_server or before the POST was recorded): nothing remote
   exists → upload again.
2. ``posting`` recorded, crash before/while POSTing or before end.pl: end.pl is asked
   (repeatable for 2 h); links → adopt the url; none → search the listing (name, size,
   whirlpool); not found → the POST never landed → upload again. No duplicate.
3. end.pl answered, crash before the commit that deletes the row: same as 2 (end.pl again).
4. Committed: the row is gone and an ``rm`` op of the replaced copy is in ``ops`` (same
   transaction) → replay deletes the old copy. Exactly one copy remains.

All methods are synchronous and short (one small transaction); the caller runs them on
the trio thread. Large disk work (staging copies, fsync of staging files) is the writer's,
in worker threads.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fichierfs import oprecords
from fichierfs.attrs import LocalAttrs
from fichierfs.errors import FsError
from fichierfs.oprecords import Op
from fichierfs.private import open_private, private_dir

__all__ = ["Store", "FileRow", "DirRow", "OpRow", "LocalAttrs"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    folder_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    gen INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    host TEXT, xid TEXT, sent_gen INTEGER, sent_folder INTEGER, sent_name TEXT,
    replaces TEXT NOT NULL DEFAULT '[]',
    unlinked INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS dirs (
    id INTEGER PRIMARY KEY,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS attrs (
    key TEXT PRIMARY KEY,
    mtime_ns INTEGER, ctime_ns INTEGER, mode INTEGER, uid INTEGER, gid INTEGER
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
"""


@dataclass
class FileRow:
    id: int
    folder_id: int
    name: str
    size: int = 0
    gen: int = 0
    state: str = "dirty"
    host: str | None = None
    xid: str | None = None
    sent_gen: int | None = None
    sent_folder: int | None = None
    sent_name: str | None = None
    replaces: list[str] = field(default_factory=list)
    unlinked: bool = False
    attempts: int = 0
    error: str | None = None

    @property
    def key(self) -> str:
        return f"local:{self.id}"


@dataclass
class DirRow:
    id: int
    parent: int
    name: str
    attempts: int = 0
    error: str | None = None
    cancelled: bool = False
    """rmdir came while its folder/mkdir was in flight: create-or-adopt, then remove it."""


@dataclass
class OpRow:
    """One journalled namespace op (typed: fichierfs.oprecords) and its retry state."""

    seq: int
    op: Op
    attempts: int = 0
    error: str | None = None

    @property
    def kind(self) -> str:
        return self.op.kind


class Store:
    """The journal and attribute store (see module docstring).

    Args:
        path: the SQLite file; its directory is created.
    """

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        os.close(open_private(path))  # 0600 from the start; SQLite gives -wal/-shm the same mode
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self._bad_ops: set[int] = set()
        self.attrs: dict[str, LocalAttrs] = {}
        rows = self._db.execute("SELECT key, mtime_ns, ctime_ns, mode, uid, gid FROM attrs")
        for key, mtime, ctime, mode, uid, gid in rows:
            self.attrs[key] = LocalAttrs(mtime, ctime, mode, uid, gid)
        self._dirty_attrs: set[str] = set()
        self.commits = 0
        self.on_attrs: Callable[[str, LocalAttrs], None] | None = None
        self.on_local: Callable[[str, LocalAttrs | None], None] = lambda key, attrs: None
        """Called on every change of the attribute table (meta's overlay answers getattr from it:
        :meth:`feed`)."""
        """Called after attributes of a key are set or re-keyed (fichierfs.attrshare shares them)."""
        self.commit_seconds = 0.0
        """Time spent in COMMIT (the fsync) on the caller's thread; ``commit_max`` the longest."""
        self.commit_max = 0.0

    def close(self) -> None:
        self.flush_attrs()
        self._db.close()

    # ------------------------------------------------------------------ transactions
    def transaction(self) -> _Tx:
        """``with store.transaction():`` — one durable commit (nested uses join the outer one)."""
        return _Tx(self)

    def _x(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:  # the cache directory's disk: ENOSPC, not EIO
                raise FsError(errno.ENOSPC, f"the cache directory is full (journal {self.path}): {exc}",
                              level=logging.WARNING) from None
            raise

    def commit(self) -> None:
        """Write pending attribute changes in one durable transaction (none when nothing is
        pending: every other change was committed by its own transaction already)."""
        if not self._dirty_attrs and not self._in_tx:
            return
        with self.transaction():
            pass

    # ------------------------------------------------------------------ attrs
    def feed(self, sink: Callable[[str, LocalAttrs | None], None]) -> None:
        """Give ``sink`` every attribute set so far and each change from now on (meta's overlay)."""
        self.on_local = sink
        for key, a in self.attrs.items():
            sink(key, a)

    def get_attrs(self, key: str) -> LocalAttrs | None:
        return self.attrs.get(key)

    def set_attrs(self, key: str, *, durable: bool = True, **values: float | int | None) -> None:
        """Set some of mtime_ns/ctime_ns/mode/uid/gid of ``key``; ``durable`` commits at once."""
        a = self.attrs.setdefault(key, LocalAttrs())
        for k, v in values.items():
            setattr(a, k, v)
        self._dirty_attrs.add(key)
        self.on_local(key, a)
        if self.on_attrs is not None:
            self.on_attrs(key, a)
        if durable:
            self.commit()

    def rekey_attrs(self, old: str, new: str) -> None:
        a = self.attrs.pop(old, None)
        self._dirty_attrs.add(old)
        self.on_local(old, None)
        if a is not None:
            self.attrs[new] = a
            self._dirty_attrs.add(new)
            self.on_local(new, a)
            if self.on_attrs is not None:
                self.on_attrs(new, a)

    def drop_attrs(self, key: str) -> None:
        if self.attrs.pop(key, None) is not None:
            self._dirty_attrs.add(key)
            self.on_local(key, None)

    def flush_attrs(self) -> None:
        for key in self._dirty_attrs:
            a = self.attrs.get(key)
            if a is None:
                self._x("DELETE FROM attrs WHERE key=?", (key,))
            else:
                self._x(
                    "INSERT OR REPLACE INTO attrs (key, mtime_ns, ctime_ns, mode, uid, gid) VALUES (?,?,?,?,?,?)",
                    (key, a.mtime_ns, a.ctime_ns, a.mode, a.uid, a.gid),
                )
        self._dirty_attrs.clear()

    # ------------------------------------------------------------------ files
    _FCOLS = (
        "id, folder_id, name, size, gen, state, host, xid, sent_gen, sent_folder, sent_name, replaces, unlinked, "
        "attempts, error"
    )

    def _file(self, r: tuple[Any, ...]) -> FileRow:
        return FileRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                       json.loads(r[11]), bool(r[12]), r[13], r[14])

    def new_file(
        self, folder_id: int, name: str, *, state: str = "empty", replaces: list[str] | None = None
    ) -> FileRow:
        with self.transaction():
            cur = self._x(
                "INSERT INTO files (folder_id, name, state, replaces) VALUES (?,?,?,?)",
                (folder_id, name, state, json.dumps(replaces or [])),
            )
        row = self.file(int(cur.lastrowid or 0))
        assert row is not None
        return row

    def file(self, fid: int) -> FileRow | None:
        r = self._x(f"SELECT {self._FCOLS} FROM files WHERE id=?", (fid,)).fetchone()
        return None if r is None else self._file(r)

    def files(self) -> list[FileRow]:
        return [self._file(r) for r in self._x(f"SELECT {self._FCOLS} FROM files ORDER BY id")]

    def update_file(self, fid: int, **values: Any) -> None:
        if "replaces" in values:
            values["replaces"] = json.dumps(values["replaces"])
        if "unlinked" in values:
            values["unlinked"] = int(bool(values["unlinked"]))
        cols = ", ".join(f"{k}=?" for k in values)
        with self.transaction():
            self._x(f"UPDATE files SET {cols} WHERE id=?", (*values.values(), fid))

    def delete_file(self, fid: int) -> None:
        with self.transaction():
            self._x("DELETE FROM files WHERE id=?", (fid,))

    # ------------------------------------------------------------------ dirs
    def new_dir(self, parent: int, name: str) -> DirRow:
        """A local folder; its id is negative (below every other local folder id ever used)."""
        with self.transaction():
            low = self._x("SELECT v FROM meta WHERE k='next_dir'").fetchone()
            nid = int(low[0]) if low else -2
            self._x("INSERT OR REPLACE INTO meta (k, v) VALUES ('next_dir', ?)", (str(nid - 1),))
            self._x("INSERT INTO dirs (id, parent, name) VALUES (?,?,?)", (nid, parent, name))
        return DirRow(nid, parent, name)

    def dirs(self) -> list[DirRow]:
        rows = self._x("SELECT id, parent, name, attempts, error, cancelled FROM dirs ORDER BY id DESC")
        return [DirRow(*r) for r in rows]

    def dir(self, did: int) -> DirRow | None:
        r = self._x("SELECT id, parent, name, attempts, error, cancelled FROM dirs WHERE id=?", (did,)).fetchone()
        return None if r is None else DirRow(*r)

    def update_dir(self, did: int, **values: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in values)
        with self.transaction():
            self._x(f"UPDATE dirs SET {cols} WHERE id=?", (*values.values(), did))

    def delete_dir(self, did: int) -> None:
        with self.transaction():
            self._x("DELETE FROM dirs WHERE id=?", (did,))

    def resolve_folder(self, local_id: int, remote_id: int) -> None:
        """mkdir succeeded: replace ``local_id`` by ``remote_id`` everywhere, in one transaction."""
        with self.transaction():
            self._x("DELETE FROM dirs WHERE id=?", (local_id,))
            self._x("UPDATE dirs SET parent=? WHERE parent=?", (remote_id, local_id))
            self._x("UPDATE files SET folder_id=? WHERE folder_id=?", (remote_id, local_id))
            for row in self.ops():
                moved = oprecords.rebase(row.op, local_id, remote_id)
                if moved is not None:
                    self._x("UPDATE ops SET data=? WHERE seq=?", (oprecords.dump(moved)[1], row.seq))
            self.rekey_attrs(f"d:{local_id}", f"d:{remote_id}")

    # ------------------------------------------------------------------ ops
    def add_op(self, op: Op) -> int:
        """Journal ``op`` (after every op already journalled); returns its ``seq``."""
        kind, data = oprecords.dump(op)
        with self.transaction():
            cur = self._x("INSERT INTO ops (kind, data) VALUES (?,?)", (kind, data))
        return int(cur.lastrowid or 0)

    def ops(self) -> list[OpRow]:
        """Every journalled op in ``seq`` order. A row no version can read (a damaged journal) is
        logged and skipped, never run."""
        out: list[OpRow] = []
        for s, k, d, a, e in self._x("SELECT seq, kind, data, attempts, error FROM ops ORDER BY seq"):
            try:
                out.append(OpRow(s, oprecords.load(k, d), a, e))
            except oprecords.BadOpRecord as exc:
                if s not in self._bad_ops:
                    self._bad_ops.add(s)
                    log.error("%s; left in the journal, not run", exc)
        return out

    def update_op(self, seq: int, *, op: Op | None = None, **values: Any) -> None:
        """Set ``attempts``/``error`` of op ``seq``, or replace its record by ``op``."""
        if op is not None:
            values["data"] = oprecords.dump(op)[1]
        cols = ", ".join(f"{k}=?" for k in values)
        with self.transaction():
            self._x(f"UPDATE ops SET {cols} WHERE seq=?", (*values.values(), seq))

    def delete_ops(self, seqs: list[int]) -> None:
        with self.transaction():
            for s in seqs:
                self._x("DELETE FROM ops WHERE seq=?", (s,))

    # ------------------------------------------------------------------ figures
    def journal_size(self) -> int:
        """Pending entries: files not yet uploaded (empty files excluded), folders, ops."""
        n = self._x(
            "SELECT COUNT(*) FROM files WHERE state != 'refused' AND (state != 'empty' OR replaces != '[]')"
        ).fetchone()[0]
        n += self._x("SELECT COUNT(*) FROM dirs").fetchone()[0]
        n += self._x("SELECT COUNT(*) FROM ops").fetchone()[0]
        return int(n)

    def iter_keys(self) -> Iterator[str]:
        yield from self.attrs


class _Tx:
    """A re-entrant transaction: BEGIN IMMEDIATE … COMMIT (durable: synchronous=FULL)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outer = False

    def __enter__(self) -> _Tx:
        if not self.store._in_tx:
            self.outer = True
            self.store._in_tx = True
            self.store._x("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self.outer:
            return
        self.store._in_tx = False
        if exc_type is None:
            self.store.flush_attrs()
            t0 = time.perf_counter()
            try:
                self.store._x("COMMIT")  # fsync (synchronous=FULL): blocks the calling (trio) thread
            except FsError:
                self.store._db.rollback()  # a refused COMMIT leaves the transaction open: end it
                raise
            took = time.perf_counter() - t0
            self.store.commits += 1
            self.store.commit_seconds += took
            self.store.commit_max = max(self.store.commit_max, took)
        else:
            self.store._x("ROLLBACK")


def _now() -> float:
    return time.time()
