"""Filesystem: the FUSE-free core. Every file-system operation, testable by calling it.

It returns plain :class:`Attr`, :class:`DirEntry` and :class:`StatFs` values and raises
:class:`fichierfs.errors.FichierError` subclasses (each knows its errno); ``ops.py`` only
translates. Nothing here imports pyfuse3.

Read side (this module, issue "read mount"):

* ``lookup``/``getattr``/``readdir`` come from :class:`fichierfs.meta.MetaCache` (folder
  listings only; no per-file API call);
* ``open``/``read``/``release`` go through :class:`fichierfs.reader.ReadManager` (one global
  chunk cache, read-ahead, one download link per file);
* ``statfs`` comes from ``user/info``, cached ``statfs_ttl`` seconds (limit: 1 per 5 min, §4);
* xattrs ``user.fichier.url``, ``user.fichier.whirlpool``, ``user.fichier.content_type``.

Writes are refused with EROFS until the write-back side exists.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from fichierfs.errors import FichierError
from fichierfs.meta import ROOT_INODE, MetaCache, NoEntry, Node
from fichierfs.scheduler import Lane

__all__ = ["Attr", "DirEntry", "StatFs", "FsError", "Filesystem", "XATTRS", "STATUS_XATTR"]

log = logging.getLogger(__name__)

BLOCK = 4096
XATTRS = ("user.fichier.url", "user.fichier.whirlpool", "user.fichier.content_type")
STATUS_XATTR = "user.fichierfs.status"
"""On the mount's root: a JSON document of every component's statistics (``fichierfs status``)."""


class FsError(FichierError):
    """A POSIX error raised by the core itself (errno given per instance)."""

    def __init__(self, err: int, message: str = "", level: int = logging.DEBUG) -> None:
        super().__init__(message or os.strerror(err))
        self.errno = err
        self.level = level


@dataclass(frozen=True, slots=True)
class Attr:
    """Attributes of an inode. Sizes in bytes, times in seconds since the epoch."""

    ino: int
    mode: int
    size: int
    mtime: float
    ctime: float
    nlink: int
    uid: int
    gid: int

    @property
    def blocks(self) -> int:
        """Allocated 512-byte blocks (``du`` reads this)."""
        return (self.size + 511) // 512


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One readdir entry: ``name``, its attributes, and the offset of the entry after it."""

    name: str
    attr: Attr
    next_offset: int


@dataclass(frozen=True, slots=True)
class StatFs:
    """``statfs`` figures: block size and counts in blocks of ``bsize`` bytes."""

    bsize: int
    blocks: int
    bfree: int
    files: int
    ffree: int
    namemax: int


@dataclass
class _Handle:
    ino: int
    reader: Any = None


class Filesystem:
    """The core file system over a :class:`MetaCache` and a reader.

    Args:
        meta: inode table and listings.
        reader: a :class:`fichierfs.reader.ReadManager` (``open(url, size)`` → handle with
            ``async read(offset, size)`` and ``close()``).
        scheduler: for ``user/info`` (statfs).
        read_only: refuse every write with EROFS.
        statfs_ttl: seconds a ``user/info`` answer is reused (§4: 1 per 5 min).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        meta: MetaCache,
        reader: Any,
        scheduler: Any,
        *,
        read_only: bool = True,
        statfs_ttl: float = 310.0,
        clock: Callable[[], float] = trio.current_time,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        self.meta = meta
        self.reader = reader
        self.scheduler = scheduler
        self.read_only = read_only
        self.statfs_ttl = statfs_ttl
        self.clock = clock
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self._handles: dict[int, _Handle] = {}
        self._dir_handles: dict[int, list[Node]] = {}
        self._next_fh = 1
        self._statfs: tuple[float, StatFs] | None = None
        self.status_sources: dict[str, Callable[[], dict[str, Any]]] = {}

    # ------------------------------------------------------------------ attributes
    def attr(self, node: Node) -> Attr:
        """The :class:`Attr` of a node (plain function: no I/O)."""
        mode = node.mode
        if self.read_only:
            mode &= ~0o222
        return Attr(
            ino=node.ino,
            mode=mode,
            size=node.size,
            mtime=node.mtime,
            ctime=node.mtime,
            nlink=2 if node.is_dir else 1,
            uid=self.uid,
            gid=self.gid,
        )

    def getattr(self, ino: int) -> Attr:
        """Attributes from the cache; never an API call. Raises NoEntry (ENOENT)."""
        return self.attr(self.meta.get(ino))

    async def lookup(self, parent: int, name: str) -> Attr:
        """Look ``name`` up in folder ``parent`` and count a kernel reference to it.

        Raises:
            NoEntry (ENOENT); FsError(ENOTDIR) when ``parent`` is a file;
            FloodLocked (EAGAIN) when the folder was never listed and the API is locked.
        """
        p = self.meta.get(parent)
        if not p.is_dir:
            raise FsError(errno.ENOTDIR)
        if name == ".":
            node = p
        elif name == "..":
            node = self.meta.get(p.parent)
        else:
            node = await self.meta.lookup(parent, name)
        self.meta.remember(node.ino)
        return self.attr(node)

    def forget(self, items: list[tuple[int, int]]) -> None:
        """The kernel dropped references: ``[(inode, nlookup), ...]``."""
        for ino, n in items:
            self.meta.forget(ino, n)

    # ------------------------------------------------------------------ directories
    async def opendir(self, ino: int) -> int:
        """Open a folder: lists it if it never was, snapshots its entries for stable offsets."""
        node = self.meta.get(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        await self.meta.ensure_listed(ino)
        fh = self._new_fh()
        self._dir_handles[fh] = list(self.meta.children(ino))
        return fh

    def readdir(self, fh: int, offset: int) -> list[DirEntry]:
        """Entries of an open folder from ``offset`` on, each with full attributes (no API call)."""
        try:
            nodes = self._dir_handles[fh]
        except KeyError:
            raise FsError(errno.EBADF) from None
        return [DirEntry(n.name, self.attr(n), i + 1) for i, n in enumerate(nodes) if i >= offset]

    def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    # ------------------------------------------------------------------ files
    async def open(self, ino: int, flags: int) -> int:
        """Open a file for reading. Writes: EROFS (read-only mount / write side not built yet)."""
        node = self.meta.get(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise FsError(errno.EROFS, "read-only file system")
        assert node.file is not None
        fh = self._new_fh()
        self._handles[fh] = _Handle(ino, self.reader.open(node.file.url, node.size))
        return fh

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (bytes); b"" at or past the end of file."""
        h = self._handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        node = self.meta.get(h.ino)
        if offset >= node.size or size <= 0:
            return b""
        return bytes(await h.reader.read(offset, min(size, node.size - offset)))

    def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is not None and h.reader is not None:
            h.reader.close()

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    # ------------------------------------------------------------------ statfs, xattrs
    async def statfs(self) -> StatFs:
        """Quota from ``user/info`` (§2.1: used = cold_storage, total = available_cold_storage).

        Cached ``statfs_ttl`` seconds; on any API failure the last answer (or a large
        placeholder) is served, because programs call statfs constantly (design.md §4.A).
        """
        now = self.clock()
        if self._statfs is not None and now - self._statfs[0] < self.statfs_ttl:
            return self._statfs[1]
        try:
            info = await self.scheduler.call("user/info", lane=Lane.INTERACTIVE)
            total, free = max(info.total, 1), info.free
            value = StatFs(BLOCK, total // BLOCK, free // BLOCK, 1 << 20, 1 << 20, 255)
        except FichierError as exc:
            log.log(exc.level, "statfs: user/info failed: %s", exc)
            if self._statfs is not None:
                return self._statfs[1]
            value = StatFs(BLOCK, 1 << 40 >> 12, 1 << 40 >> 12, 1 << 20, 1 << 20, 255)
        self._statfs = (now, value)
        return value

    def listxattr(self, ino: int) -> list[str]:
        """The xattr names a file has; the root has the status document; folders have none."""
        node = self.meta.get(ino)
        if ino == ROOT_INODE:
            return [STATUS_XATTR]
        return [] if node.is_dir else list(XATTRS)

    def status(self) -> dict[str, Any]:
        """Every component's ``statistics()``: scheduler (``api``), ``meta``, ``reader``, ``extra``."""
        doc: dict[str, Any] = {
            "api": self.scheduler.statistics(),
            "meta": self.meta.statistics(),
            "reader": self.reader.statistics() if hasattr(self.reader, "statistics") else {},
        }
        for name, source in self.status_sources.items():
            doc[name] = source()
        return doc

    def status_json(self) -> bytes:
        """:meth:`status` as JSON (infinite numbers become null)."""
        import json
        import math

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, (str, int, float, bool)) or v is None:
                return v
            return str(v)

        return json.dumps(clean(self.status()), sort_keys=True).encode()

    def getxattr(self, ino: int, name: str) -> bytes:
        """``user.fichier.url`` (share link), ``.whirlpool`` (hex, §7), ``.content_type``.

        Raises FsError(ENODATA) for any other name.
        """
        node = self.meta.get(ino)
        if ino == ROOT_INODE and name == STATUS_XATTR:
            return self.status_json()
        rf = node.file
        if rf is None:
            raise FsError(errno.ENODATA)
        values = {
            "user.fichier.url": rf.url,
            "user.fichier.whirlpool": rf.checksum,
            "user.fichier.content_type": rf.content_type,
        }
        if name not in values:
            raise FsError(errno.ENODATA)
        return values[name].encode()

    def root_attr(self) -> Attr:
        return self.getattr(ROOT_INODE)


__all__ += ["NoEntry"]
