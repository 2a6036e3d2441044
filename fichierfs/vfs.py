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

Write side (issue 5; the data path is design.md Part B §11, the journal is
:mod:`fichierfs.store`, uploads are :mod:`fichierfs.writer`):

* ``create``/``write``/``setattr(size)``/``flush``/``fsync``/``release`` work on a local
  staging copy; the file is uploaded whole after the last close and a quiet delay. Opening an
  existing file for writing without ``O_TRUNC`` copies its content in first (read path).
  Reads of a file with local data come from the staging copy; ``stat`` shows its size and
  mtime at once. No API call happens in any FUSE request of the write side except the one
  listing ``rmdir``/``rename`` of a never-listed folder needs to know it is empty.
* ``mkdir``/``rmdir``/``unlink``/``rename`` change the cache at once and journal the remote
  mutation (local first: a flood-locked account does not make ``mkdir -p`` or ``cp -r`` fail).
* Times, modes and owners set by programs are kept in the store (1fichier has no mtime,
  §2.9, §7) and shown by ``getattr``; else the upload date is shown.

Errors that reach FUSE from the write side: EROFS (read-only mount), ENAMETOOLONG (name over
250 characters once encoded, §7), EINVAL (name not valid UTF-8; ``RENAME_EXCHANGE``; moving a
folder into itself), EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, ENOENT, EFBIG (file over 300 GB,
§6), EPERM (hard links, symlinks, device nodes: 1fichier stores only regular files and
folders), EBADF, and EIO/EAGAIN when content must be downloaded first and cannot be.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from fichierfs.attrs import Attr
from fichierfs.chunks import ChunkCache
from fichierfs.errors import FichierError, FsError, NoEntry
from fichierfs.meta import ROOT_INODE, MetaCache, Node
from fichierfs.names import encode
from fichierfs.scheduler import ApiCaller, Lane
from fichierfs.storm import ProcessPolicy
from fichierfs.writer import Staged, WriteBack

__all__ = ["Attr", "DirEntry", "StatFs", "FsError", "Filesystem", "FileReader", "ReadPath", "XATTRS", "STATUS_XATTR",
           "CONTROL_XATTRS"]

log = logging.getLogger(__name__)

BLOCK = 4096
XATTRS = ("user.fichier.url", "user.fichier.whirlpool", "user.fichier.content_type")
STATUS_XATTR = "user.fichierfs.status"
CONTROL_XATTR = "user.fichierfs.control"
"""Write-only xattr on the root: ``retry-now`` forgets every upload back-off and the
over-quota stop (``fichierfs sync --retry-now``)."""
"""On the mount's root: a JSON document of every component's statistics (``fichierfs status``)."""
CONTROL_XATTRS = ("user.fichierfs.refresh", "user.fichierfs.refresh-recursive", "user.fichierfs.forget")
"""Reading one of these on a path is a command (``fichierfs refresh [-r]`` / ``forget``): getxattr
works on read-only mounts too, and the answer (JSON) is the command's result. Not listed by listxattr."""


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


RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class FileReader(Protocol):
    """One open file's reads (:class:`fichierfs.reader.Reader`)."""

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
        ...

    def close(self) -> None:
        """Forget the handle (its cached data stays in the shared cache)."""
        ...


class ReadPath(Protocol):
    """The seam vfs → read side (:class:`fichierfs.reader.ReadManager` in the product)."""

    @property
    def cache(self) -> ChunkCache:
        """The shared chunk cache (the vfs asks it what is local, for the thumbnail policy)."""
        ...

    def open(self, file_url: str, size: int, checksum: str = "") -> FileReader:
        """A read handle on the remote file ``file_url`` of ``size`` bytes whose whirlpool is ``checksum`` (the
        on-disk read cache is keyed by URL + whirlpool)."""
        ...

    def has_local(self, file_url: str, size: int, checksum: str = "") -> bool:
        """True when every byte of this file version is in the memory or the on-disk read cache."""
        ...

    def statistics(self) -> dict[str, Any]:
        """The ``reader`` section of the status document."""
        ...


@dataclass
class _Handle:
    ino: int
    reader: FileReader | None = None
    staged: Staged | None = None
    writing: bool = False
    append: bool = False
    clean_fd: int = -1
    clean_size: int = 0


class Filesystem:
    """The core file system over a :class:`MetaCache` and a reader.

    Args:
        meta: inode table and listings.
        reader: the read side (:class:`ReadPath`; a :class:`fichierfs.reader.ReadManager`).
        scheduler: the API (:class:`~fichierfs.scheduler.ApiCaller`), for ``user/info`` (statfs).
        read_only: refuse every write with EROFS.
        statfs_ttl: seconds a ``user/info`` answer is reused (§4: 1 per 5 min).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        meta: MetaCache,
        reader: ReadPath,
        scheduler: ApiCaller,
        *,
        read_only: bool = True,
        statfs_ttl: float = 310.0,
        clock: Callable[[], float] = trio.current_time,
        uid: int | None = None,
        gid: int | None = None,
        writer: WriteBack | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.meta = meta
        self.writer = writer
        self.store = writer.store if writer is not None else None
        self.wall = wall or time.time
        self.reader = reader
        self.scheduler = scheduler
        self.statfs_ttl = statfs_ttl
        self.clock = clock
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.read_only = read_only  # also what meta shows (no write permission on a read-only mount)
        self._handles: dict[int, _Handle] = {}
        self._dir_handles: dict[int, list[Node]] = {}
        self._next_fh = 1
        self._statfs: tuple[float, StatFs] | None = None
        self.status_sources: dict[str, Callable[[], dict[str, Any]]] = {}
        self.policy: ProcessPolicy | None = None
        if writer is not None:
            self.status_sources["writeback"] = writer.statistics

    # ------------------------------------------------------------------ attributes
    @property
    def read_only(self) -> bool:
        return self._read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self._read_only = value
        self.meta.show_owner(self.uid, self.gid, read_only=value)

    def getattr(self, ino: int) -> Attr:
        """Attributes from the cache (meta answers them alone: listing, staged size and local
        attributes, attrs.py); never an API call. Raises NoEntry (ENOENT)."""
        return self.meta.attr(ino)

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
        return self.meta.attr_of(node)

    def negative_ok(self, parent: int) -> bool:
        """Whether the kernel may cache "``name`` does not exist" in folder ``parent`` (its
        listing is fresh and complete; names that appear later are invalidated by meta)."""
        return self.meta.negative_ok(parent)

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

    def readdir(self, fh: int, offset: int) -> Iterator[DirEntry]:
        """Entries of an open folder from ``offset`` on, each with full attributes (no API call).

        A generator: the caller (ops) stops when the kernel's buffer is full, so each call costs
        only the entries it returns (a big folder is read in O(n), not O(n²)).

        Raises FsError(EBADF) at once for an unknown handle.
        """
        try:
            nodes = self._dir_handles[fh]
        except KeyError:
            raise FsError(errno.EBADF) from None
        return self._entries(nodes, offset)

    def _entries(self, nodes: list[Node], offset: int) -> Iterator[DirEntry]:
        for i in range(max(0, offset), len(nodes)):
            n = nodes[i]
            yield DirEntry(n.name, self.meta.attr_of(n), i + 1)

    def releasedir(self, fh: int) -> None:
        self._dir_handles.pop(fh, None)

    # ------------------------------------------------------------------ files
    def is_local(self, ino: int) -> bool:
        """True when reading ``ino`` needs no download: staged, a clean copy, or every chunk cached (in memory
        or in the on-disk read cache)."""
        node = self.meta.get(ino)
        if node.is_dir:
            return True
        if self.writer is not None:
            if self.writer.staged(ino) is not None:
                return True
            if node.file is not None:
                clean = self.writer.clean_copy(node.file.url)
                if clean is not None and clean[1] == node.size:
                    return True
        if node.file is None:
            return node.size == 0
        return self.reader.has_local(node.file.url, node.size, node.file.checksum)

    async def open(self, ino: int, flags: int, pid: int = 0) -> int:
        """Open a file. Writing (O_WRONLY/O_RDWR/O_TRUNC) stages it locally (module doc).

        ``pid`` is the calling thread (FUSE request context): with a storm ``policy``
        (``--thumbnails``, :mod:`fichierfs.storm`), thumbnailers and indexers may only read
        data that is already local.

        Raises:
            FsError(EISDIR); FsError(EROFS) on a read-only mount; NoEntry; FsError(EACCES)
            for a thumbnailer/indexer refused by the policy; the read path's errors (EIO,
            EAGAIN) when an existing file must be copied in first.
        """
        node = self.meta.get(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        acc = flags & os.O_ACCMODE
        if (self.policy is not None and pid and acc == os.O_RDONLY and not flags & os.O_TRUNC
                and not self.policy.may_download(pid, cached=self.is_local(ino))):
            raise FsError(errno.EACCES, "thumbnailer/indexer kept to local data (--thumbnails)")
        writing = acc in (os.O_WRONLY, os.O_RDWR) or bool(flags & os.O_TRUNC)
        if writing and (self.read_only or self.writer is None):
            raise FsError(errno.EROFS, "read-only file system")
        fh = self._new_fh()
        if self.writer is not None:
            st = self.writer.staged(ino)
            if writing:
                trunc = bool(flags & os.O_TRUNC)
                if st is None:
                    st = await self._take_over(node, keep=not trunc)
                elif trunc and st.size:
                    self.writer.truncate(st, 0)
                if trunc:
                    self._touch(node)
                self.writer.opened(st, writing=True)
                self._handles[fh] = _Handle(ino, staged=st, writing=True, append=bool(flags & os.O_APPEND))
                return fh
            if st is not None:
                self.writer.opened(st, writing=False)
                self._handles[fh] = _Handle(ino, staged=st)
                return fh
            if node.file is not None:
                clean = self.writer.clean_copy(node.file.url)
                if clean is not None and clean[1] == node.size:
                    try:
                        self._handles[fh] = _Handle(ino, clean_fd=os.open(clean[0], os.O_RDONLY), clean_size=clean[1])
                        return fh
                    except OSError:
                        pass
        if node.file is None:
            raise FsError(errno.EIO, f"{node.name}: no content (local entry without staging copy)")
        self._handles[fh] = _Handle(ino, self.reader.open(node.file.url, node.size, node.file.checksum))
        return fh

    async def _take_over(self, node: Node, *, keep: bool) -> Staged:
        assert self.writer is not None
        if node.file is None:
            raise FsError(errno.EIO, f"{node.name}: no content")
        parent = self.meta.get(node.parent)
        reader = self.reader.open(node.file.url, node.size, node.file.checksum) if keep and node.size else None
        try:
            fetch = None
            if reader is not None:

                async def fetch(offset: int, size: int) -> bytes:
                    return bytes(await reader.read(offset, size))

            return await self.writer.take_over(node, int(parent.folder_id or 0), fetch, keep=keep)
        finally:
            if reader is not None:
                reader.close()

    def keep_cache(self, fh: int) -> bool:
        """Whether the kernel may keep its page cache of this file across opens."""
        h = self._handles.get(fh)
        return h is not None and h.staged is None and h.clean_fd < 0

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (bytes); b"" at or past the end of file."""
        h = self._handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        if h.staged is not None:
            assert self.writer is not None
            return self.writer.read(h.staged, offset, size)
        if h.clean_fd >= 0:
            if offset >= h.clean_size:
                return b""
            return os.pread(h.clean_fd, min(size, h.clean_size - offset), offset)
        node = self.meta.get(h.ino)
        if offset >= node.size or size <= 0:
            return b""
        assert h.reader is not None  # opened on a remote file
        return bytes(await h.reader.read(offset, min(size, node.size - offset)))

    def write(self, fh: int, offset: int, data: bytes) -> int:
        """Write ``data`` at ``offset`` into the staging copy (O_APPEND: at its end). Returns bytes.

        Raises FsError(EBADF) (not open for writing), FsError(EFBIG) (over 300 GB, §6).
        """
        h = self._handles.get(fh)
        if h is None or not h.writing or h.staged is None:
            raise FsError(errno.EBADF)
        assert self.writer is not None
        st = h.staged
        if h.append:
            offset = st.size
        try:
            n = self.writer.write(st, offset, data)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None
        node = self.meta.node(h.ino)
        if node is not None:
            self.meta.set_size(node, st.size)
            self._touch(node, durable=False)
        return n

    async def flush(self, fh: int) -> None:
        """close() of a descriptor: stage durably and journal (no API call; upload later)."""
        h = self._handles.get(fh)
        if h is None:
            raise FsError(errno.EBADF)
        if h.writing and h.staged is not None and self.writer is not None:
            await self.writer.flush(h.staged)
        if self.store is not None:
            self.store.commit()

    async def fsync(self, fh: int, datasync: bool = False) -> None:
        """fsync: the staging copy and the journal are on local disk (the upload stays asynchronous)."""
        await self.flush(fh)

    def release(self, fh: int) -> None:
        """Last close of an open file (sync; its data was made durable by ``flush``)."""
        h = self._handles.pop(fh, None)
        if h is None:
            return
        if h.reader is not None:
            h.reader.close()
        if h.clean_fd >= 0:
            os.close(h.clean_fd)
        if h.staged is not None and self.writer is not None:
            self.writer.released(h.staged, writing=h.writing)

    # ------------------------------------------------------------------ namespace changes
    def _writable(self) -> WriteBack:
        if self.read_only or self.writer is None:
            raise FsError(errno.EROFS, "read-only file system")
        return self.writer

    def _now_ns(self) -> int:
        return int(self.wall() * 1e9)

    def _touch(self, node: Node, *, durable: bool = False, **more: Any) -> None:
        if self.store is not None:
            now = self._now_ns()
            self.store.set_attrs(node.key, mtime_ns=now, ctime_ns=now, durable=durable, **more)

    async def _dir(self, ino: int) -> Node:
        p = self.meta.get(ino)
        if not p.is_dir:
            raise FsError(errno.ENOTDIR)
        await self.meta.ensure_listed(ino)
        return p

    async def _child(self, parent: int, name: str) -> Node | None:
        try:
            return await self.meta.lookup(parent, name)
        except NoEntry:
            return None

    async def create(self, parent: int, name: str, mode: int, flags: int, uid: int | None = None,
                     gid: int | None = None) -> tuple[int, Attr]:
        """Create and open a new file (no API call; uploaded after close, empty files stay local).

        Raises: EROFS, ENOTDIR, ENAMETOOLONG/EINVAL (name, §7), EEXIST (O_EXCL).
        """
        writer = self._writable()
        p = await self._dir(parent)
        encode(name)
        existing = await self._child(parent, name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            fh = await self.open(existing.ino, flags)
            self.meta.remember(existing.ino)
            return fh, self.meta.attr_of(existing)
        assert self.store is not None
        with self.store.transaction():  # the journal row and its attributes: one commit
            st = writer.new_file(int(p.folder_id or 0), name)
            now = self._now_ns()
            self.store.set_attrs(f"local:{st.row}", mtime_ns=now, ctime_ns=now, mode=mode & 0o7777, uid=uid,
                                 gid=gid)
        node = self.meta.add_node(parent, name, is_dir=False, local_key=f"local:{st.row}", mtime=now / 1e9)
        writer.bind(st, node.ino)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        writer.opened(st, writing=writing)
        fh = self._new_fh()
        self._handles[fh] = _Handle(node.ino, staged=st, writing=writing, append=bool(flags & os.O_APPEND))
        self.meta.remember(node.ino)
        return fh, self.meta.attr_of(node)

    async def mkdir(self, parent: int, name: str, mode: int, uid: int | None = None, gid: int | None = None) -> Attr:
        """Create a folder locally at once; ``folder/mkdir`` runs in the background (journal).

        Raises: EROFS, ENOTDIR, EEXIST, ENAMETOOLONG/EINVAL.
        """
        writer = self._writable()
        p = await self._dir(parent)
        encode(name)
        if await self._child(parent, name) is not None:
            raise FsError(errno.EEXIST)
        local_id = writer.mkdir(int(p.folder_id or 0), name)
        now = self._now_ns()
        node = self.meta.add_node(parent, name, is_dir=True, folder_id=local_id, mtime=now / 1e9)
        assert self.store is not None
        self.store.set_attrs(node.key, mtime_ns=now, ctime_ns=now, mode=mode & 0o7777, uid=uid, gid=gid)
        self.meta.remember(node.ino)
        return self.meta.attr_of(node)

    async def unlink(self, parent: int, name: str) -> None:
        """Remove a file: gone from the listing at once; ``file/rm`` batched in the background.

        Raises: EROFS, ENOENT, EISDIR.
        """
        writer = self._writable()
        await self._dir(parent)
        node = await self.meta.lookup(parent, name)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        self._drop_file(writer, node)
        self.meta.remove(node)

    def _drop_file(self, writer: WriteBack, node: Node) -> None:
        writer.delete_file(node)
        assert self.store is not None
        self.store.drop_attrs(node.key)
        self.store.commit()

    async def rmdir(self, parent: int, name: str) -> None:
        """Remove an empty folder. Raises: EROFS, ENOENT, ENOTDIR, ENOTEMPTY."""
        writer = self._writable()
        await self._dir(parent)
        node = await self.meta.lookup(parent, name)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        await self._remove_dir(writer, node)

    async def _remove_dir(self, writer: WriteBack, node: Node) -> None:
        await self.meta.ensure_listed(node.ino)
        if any(True for _ in self.meta.children(node.ino)):
            raise FsError(errno.ENOTEMPTY)
        writer.remove_folder(int(node.folder_id or 0))
        assert self.store is not None
        self.store.drop_attrs(node.key)
        self.store.commit()
        self.meta.remove(node)

    async def rename(self, parent_old: int, name_old: str, parent_new: int, name_new: str, flags: int = 0) -> None:
        """rename(2), also over an existing file or empty folder (local first, journaled).

        Files: a local file just changes its journal row (the upload carries the name); a
        remote one gets ``file/rename`` (same folder) or ``file/mv`` (``rename`` only when the
        name changes, §2.6, §8.11). Replaced remote files are deleted after the new copy is
        uploaded. Folders: ``folder/mv``, one call per change (§2.13).

        Raises: EROFS, ENOENT, EEXIST (RENAME_NOREPLACE), EINVAL (RENAME_EXCHANGE, a folder
        into itself), ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG.
        """
        writer = self._writable()
        if flags & RENAME_EXCHANGE or flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise FsError(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        await self._dir(parent_old)
        pn = await self._dir(parent_new)
        node = await self.meta.lookup(parent_old, name_old)
        encode(name_new)
        target = await self._child(parent_new, name_new)
        if target is node:
            return
        if target is not None and flags & RENAME_NOREPLACE:
            raise FsError(errno.EEXIST)
        if node.is_dir:
            a = pn
            while True:
                if a.ino == node.ino:
                    raise FsError(errno.EINVAL, "cannot move a folder into itself")
                if a.ino == ROOT_INODE:
                    break
                a = self.meta.get(a.parent)
        replaces: list[str] = []
        if target is not None:
            if node.is_dir and not target.is_dir:
                raise FsError(errno.ENOTDIR)
            if not node.is_dir and target.is_dir:
                raise FsError(errno.EISDIR)
            if target.is_dir:
                await self._remove_dir(writer, target)
            else:
                replaces = writer.replaced_by_rename(target)
                assert self.store is not None
                self.store.drop_attrs(target.key)
                self.meta.remove(target)
        new_folder = int(pn.folder_id or 0)
        old_folder = int(self.meta.get(parent_old).folder_id or 0)
        if node.is_dir:
            writer.move_folder(int(node.folder_id or 0), new_folder, name_new, from_parent=old_folder,
                               old_name=name_old)
        else:
            writer.move_file(node, new_folder, name_new, from_folder=old_folder, replaces=replaces)
        self.meta.move(node, parent_new, name_new)
        if self.store is not None:
            la = self.store.get_attrs(node.key)
            mt = la.mtime_ns if la is not None and la.mtime_ns is not None else int(node.mtime * 1e9)
            self.store.set_attrs(node.key, ctime_ns=self._now_ns(), mtime_ns=mt)

    async def setattr(
        self,
        ino: int,
        *,
        size: int | None = None,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float | None = None,
        mtime_ns: int | None = None,
        fh: int | None = None,
    ) -> Attr:
        """truncate, chmod, chown, utimens (``mtime`` seconds or exact ``mtime_ns`` since the epoch).

        Sizes change the staging copy (an existing file is copied in first unless truncated
        to 0); times, mode and owner go to the local store (durable before the reply).

        Raises: EROFS, ENOENT, EISDIR (size of a folder), EFBIG (over 300 GB).
        """
        writer = self._writable()
        node = self.meta.get(ino)
        if size is not None:
            if node.is_dir:
                raise FsError(errno.EISDIR)
            st = writer.staged(ino)
            changed = False
            if st is None and size != node.size:
                # taken over empty when truncated to 0: nothing left to truncate, but the change must still be
                # flushed (`truncate -s 0` of a remote file with no handle open stayed pending for ever)
                st = await self._take_over(node, keep=size > 0)
                changed = True
            if st is not None and size != st.size:
                try:
                    writer.truncate(st, size)
                except OSError as exc:
                    raise FsError(exc.errno or errno.EIO, str(exc)) from None
                changed = True
            if st is not None and changed:
                self.meta.set_size(node, size)
                if mtime is None and mtime_ns is None:
                    self._touch(node)
                if st.writers == 0:
                    await writer.flush(st)
        if mtime_ns is None and mtime is not None:
            mtime_ns = int(round(mtime * 1e9))
        values: dict[str, Any] = {"ctime_ns": self._now_ns()}
        if mode is not None:
            values["mode"] = mode & 0o7777
        if uid is not None:
            values["uid"] = uid
        if gid is not None:
            values["gid"] = gid
        old = self.store.get_attrs(node.key) if self.store is not None else None
        if mtime_ns is not None:
            values["mtime_ns"] = mtime_ns
        elif old is None or old.mtime_ns is None:
            values["mtime_ns"] = int(node.mtime * 1e9)  # keep showing the time shown so far
        assert self.store is not None
        self.store.set_attrs(node.key, **values)
        return self.meta.attr_of(node)

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
            return self._with_writes(self._statfs[1])
        shared = getattr(self.scheduler, "shared", None)  # the other mounts of the account (fichierfs.budget)
        try:
            quota = await self._quota(shared)
            total, free = int(quota["total"]), int(quota["free"])
            value = StatFs(BLOCK, total // BLOCK, free // BLOCK, 1 << 20, 1 << 20, 255)
            if self.writer is not None:
                self.writer.account_space(total, max(0, total - free))
        except FichierError as exc:
            log.log(exc.level, "statfs: user/info failed: %s", exc)
            if self._statfs is not None:
                return self._with_writes(self._statfs[1])
            value = StatFs(BLOCK, 1 << 40 >> 12, 1 << 40 >> 12, 1 << 20, 1 << 20, 255)
        self._statfs = (now, value)
        return self._with_writes(value)

    def _with_writes(self, value: StatFs) -> StatFs:
        """df reflects this mount's writes at once: used = last user/info + uploaded since −
        deleted since + staged not uploaded yet (user/info may be asked once per 5 min, §4)."""
        sp = self.writer.space() if self.writer is not None else None
        if sp is None:
            return value
        total, used = sp
        return dataclasses.replace(value, blocks=total // BLOCK, bfree=max(0, total - used) // BLOCK)

    async def _quota(self, shared: Any) -> dict[str, int]:
        """``{"total", "free"}`` from user/info, or from another mount's answer (fichierfs.budget).

        user/info is allowed once per 5 min per user (§4): a second mount of the account that
        calls it right after the first would wait minutes, so it takes the first one's answer as
        soon as it is shared instead of waiting for its own call.
        """

        async def call() -> dict[str, int]:
            info = await self.scheduler.call(self.scheduler.client.user_info, lane=Lane.INTERACTIVE)
            q = {"total": max(info.total, 1), "free": info.free}
            if shared is not None:
                await shared.remember("quota", q, self.statfs_ttl)
            return q

        if shared is None:
            return await call()
        quota = await shared.recall("quota")
        if quota is not None:
            return dict(quota)
        got: dict[str, Any] = {}

        async def mine(scope: trio.CancelScope) -> None:
            try:
                got["quota"] = await call()
            except FichierError as exc:
                got["error"] = exc
            scope.cancel()

        async def theirs(scope: trio.CancelScope) -> None:
            while True:
                await trio.sleep(0.1)
                q = await shared.recall("quota")
                if q is not None:
                    got["quota"] = dict(q)
                    scope.cancel()

        async with trio.open_nursery() as n:
            n.start_soon(mine, n.cancel_scope)
            n.start_soon(theirs, n.cancel_scope)
        if "quota" in got:
            return dict(got["quota"])
        raise got["error"]

    def remember_quota(self, info: Any) -> None:
        """Serve the next ``statfs_ttl`` seconds of ``statfs`` from a ``user/info`` answer made
        elsewhere (the mount identifies the account with one: §4 allows one per 5 min)."""
        total, free = max(info.total, 1), info.free
        self._statfs = (self.clock(), StatFs(BLOCK, total // BLOCK, free // BLOCK, 1 << 20, 1 << 20, 255))
        if self.writer is not None:  # the base of df and of ENOSPC from the mount's first second
            self.writer.account_space(total, max(0, total - free))

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
            "reader": self.reader.statistics(),
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

    def setxattr(self, ino: int, name: str, value: bytes) -> None:
        """Control commands: ``user.fichierfs.control`` = ``retry-now`` on the root.

        Raises FsError(ENOTSUP) for any other xattr, EINVAL for an unknown command.
        """
        if ino != ROOT_INODE or name != CONTROL_XATTR:
            raise FsError(errno.ENOTSUP)
        if value.strip() != b"retry-now":
            raise FsError(errno.EINVAL, f"unknown control command {value[:40]!r}")
        if self.writer is not None:
            self.writer.retry_now()

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

    async def control(self, ino: int, name: str) -> bytes:
        """A control xattr read on ``ino`` (:data:`CONTROL_XATTRS`); returns the JSON result.

        * ``refresh``: re-list the folder (a file: its folder) now and merge the result; waits
          for the folder's budget (§4: one listing per 30 s) rather than failing;
        * ``refresh-recursive``: the same for every known sub-folder, one after another;
        * ``forget``: the folder's listing (and its persisted copy) is no longer trusted: still
          served, re-listed in the background at its next use.

        Raises: NoEntry; FichierError from the listing (EAGAIN when flood-locked, …).
        """
        import json

        node = self.meta.get(ino)
        folder = node if node.is_dir else self.meta.get(node.parent)
        path = self.meta.path_of(folder.ino)
        if name == "user.fichierfs.forget":
            self.meta.forget_listing(folder.ino)
            log.info("forget %s: its listing will be re-made at its next use", path)
            return json.dumps({"forgotten": path}).encode()
        recursive = name == "user.fichierfs.refresh-recursive"
        n = await self.meta.refresh_tree(folder.ino, recursive=recursive, lane=Lane.PREFETCH)
        log.info("refresh %s%s: %d listing(s)", path, " (recursive)" if recursive else "", n)
        return json.dumps({"refreshed": path, "listings": n}).encode()

    def root_attr(self) -> Attr:
        return self.getattr(ROOT_INODE)


__all__ += ["NoEntry"]
