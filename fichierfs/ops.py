"""Operations: the thin pyfuse3 adapter over :class:`fichierfs.vfs.Filesystem`.

The only module that builds ``pyfuse3.FUSEError``. Every handler goes through
:func:`fuse_errors`: a :class:`~fichierfs.errors.FichierError` becomes its ``errno`` (logged
at the error's own level); any other exception is a bug: logged with its traceback and
answered EIO, so it never ends the pyfuse3 main loop. No logic lives here: only type
translation (Attr → EntryAttributes, readdir_reply loop, bytes ↔ str names).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from fichierfs.errors import FichierError
from fichierfs.vfs import CONTROL_XATTRS, Attr, Filesystem, NoEntry

__all__ = ["Operations", "fuse_errors", "PyfuseNotifier"]

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
Ctx = pyfuse3.RequestContext
"""The caller of a FUSE request (pid, uid, gid)."""


def fuse_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Translate errors of one handler into ``FUSEError`` (see module docstring)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FichierError as exc:
            log.log(exc.level, "%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except trio.Cancelled:
            raise
        except Exception:
            log.exception("%s: unexpected error, answering EIO", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class PyfuseNotifier:
    """Kernel invalidations through pyfuse3, from a worker thread (never blocks a handler)."""

    def __init__(self) -> None:
        self._send, self._recv = trio.open_memory_channel[tuple[str, int, str]](10_000)

    def invalidate_entry(self, parent: int, name: str) -> None:
        try:
            self._send.send_nowait(("entry", parent, name))
        except trio.WouldBlock:
            log.warning("kernel invalidation queue full; dropping one entry invalidation")

    def invalidate_inode(self, ino: int) -> None:
        try:
            self._send.send_nowait(("inode", ino, ""))
        except trio.WouldBlock:
            log.warning("kernel invalidation queue full; dropping one inode invalidation")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for kind, ino, name in self._recv:
            try:
                if kind == "entry":
                    pyfuse3.invalidate_entry_async(ino, os.fsencode(name), ignore_enoent=True)
                else:
                    await trio.to_thread.run_sync(pyfuse3.invalidate_inode, ino, True)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOSYS):
                    log.debug("kernel invalidation of %s failed: %s", ino, exc)


class Operations(pyfuse3.Operations):
    """pyfuse3 handlers; each delegates to the same-named :class:`Filesystem` method."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem, *, entry_timeout: float = 1.0, attr_timeout: float = 1.0,
                 negative_timeout: float = 0.0) -> None:
        super().__init__()
        self.fs = fs
        self.entry_timeout = entry_timeout
        self.attr_timeout = attr_timeout
        self.negative_timeout = negative_timeout
        self.initialized = trio.Event()

    def init(self) -> None:
        """The kernel's FUSE_INIT is being answered (libfuse calls this just before its reply): set
        :attr:`initialized`, so that the mount can tune the connection once the reply is in (the kernel sets
        the mount's read-ahead from the reply, undoing an earlier change)."""
        self.initialized.set()

    def _entry(self, a: Attr) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = a.ino
        e.generation = 0
        if a.ttl is not None:  # the listing's remaining freshness (vfs.Attr.ttl)
            e.entry_timeout = max(self.entry_timeout, a.ttl)
            e.attr_timeout = max(self.attr_timeout, a.ttl)
        else:
            e.entry_timeout = self.entry_timeout
            e.attr_timeout = self.attr_timeout
        e.st_mode = a.mode
        e.st_nlink = a.nlink
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = 0
        e.st_size = a.size
        e.st_blksize = 1 << 17
        e.st_blocks = a.blocks
        ns = a.mtime_ns if a.mtime_ns is not None else int(a.mtime * 1e9)
        e.st_atime_ns = ns
        e.st_mtime_ns = ns
        e.st_ctime_ns = int(a.ctime * 1e9)
        return e

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Ctx | None = None) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.lookup(parent_inode, _name(name)))
        except NoEntry:
            if self.negative_timeout <= 0 or not self.fs.negative_ok(parent_inode):
                raise
            e = pyfuse3.EntryAttributes()  # inode 0: the kernel caches "no such name" (negative entry)
            e.st_ino = 0
            e.entry_timeout = self.negative_timeout
            return e

    @fuse_errors
    async def getattr(self, inode: int, ctx: Ctx | None = None) -> pyfuse3.EntryAttributes:
        return self._entry(self.fs.getattr(inode))

    @fuse_errors
    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        self.fs.forget(list(inode_list))

    @fuse_errors
    async def opendir(self, inode: int, ctx: Ctx) -> int:
        return await self.fs.opendir(inode)

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for entry in self.fs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(entry.name), self._entry(entry.attr), entry.next_offset):
                break
            self.fs.meta.remember(entry.attr.ino)

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self.fs.releasedir(fh)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: Ctx) -> pyfuse3.FileInfo:
        fh = await self.fs.open(inode, flags, getattr(ctx, "pid", 0))
        fi = pyfuse3.FileInfo(fh=fh)
        # content of a url never changes (§7: a re-upload gets a new url); local data may
        fi.keep_cache = self.fs.keep_cache(fh)
        return fi

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @fuse_errors
    async def release(self, fh: int) -> None:
        self.fs.release(fh)

    # ------------------------------------------------------------------ write side
    @fuse_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: Ctx
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        fh, attr = await self.fs.create(
            parent_inode, _name(name), mode, flags, getattr(ctx, "uid", None), getattr(ctx, "gid", None)
        )
        fi = pyfuse3.FileInfo(fh=fh)
        fi.keep_cache = False
        return fi, self._entry(attr)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return self.fs.write(fh, off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        await self.fs.flush(fh)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh, datasync)

    @fuse_errors
    async def setattr(
        self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields, fh: int | None, ctx: Ctx
    ) -> pyfuse3.EntryAttributes:
        a = await self.fs.setattr(
            inode,
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            fh=fh,
        )
        return self._entry(a)

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int, ctx: Ctx) -> pyfuse3.EntryAttributes:
        return self._entry(
            await self.fs.mkdir(parent_inode, _name(name), mode, getattr(ctx, "uid", None), getattr(ctx, "gid", None))
        )

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Ctx) -> None:
        await self.fs.rmdir(parent_inode, _name(name))

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Ctx) -> None:
        await self.fs.unlink(parent_inode, _name(name))

    @fuse_errors
    async def rename(
        self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes, flags: int, ctx: Ctx
    ) -> None:
        await self.fs.rename(parent_inode_old, _name(name_old), parent_inode_new, _name(name_new), flags)

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes, ctx: Ctx) -> pyfuse3.EntryAttributes:
        log.info("link %r: hard links are not supported (1fichier stores one name per file): EPERM",
                 _name(new_name))
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes, ctx: Ctx) -> pyfuse3.EntryAttributes:
        log.info("symlink %r: symbolic links are not supported (1fichier stores only files and folders): EPERM",
                 _name(name))
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: Ctx) -> pyfuse3.EntryAttributes:
        log.info("mknod %r: device nodes, fifos and sockets are not supported: EPERM", _name(name))
        raise pyfuse3.FUSEError(errno.EPERM)

    @fuse_errors
    async def statfs(self, ctx: Ctx) -> pyfuse3.StatvfsData:
        s = await self.fs.statfs()
        d = pyfuse3.StatvfsData()
        d.f_bsize = s.bsize
        d.f_frsize = s.bsize
        d.f_blocks = s.blocks
        d.f_bfree = s.bfree
        d.f_bavail = s.bfree
        d.f_files = s.files
        d.f_ffree = s.ffree
        d.f_favail = s.ffree
        d.f_namemax = s.namemax
        return d

    @fuse_errors
    async def listxattr(self, inode: int, ctx: Ctx) -> list[bytes]:
        return [n.encode() for n in self.fs.listxattr(inode)]

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Ctx) -> bytes:
        if not name.startswith(b"user."):
            # ls -l asks security.selinux / system.posix_acl_* for every entry: answer at once
            # (no exception through the core, no log line). EOPNOTSUPP, not ENODATA: coreutils
            # ls then remembers the device has none and stops asking (warm ls -lR of the bench
            # tree 0.38 s → 0.07 s: 10,000 FUSE round trips fewer)
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        if name.startswith(b"user.fichierfs.") and _name(name) in CONTROL_XATTRS:
            return await self.fs.control(inode, _name(name))
        return self.fs.getxattr(inode, _name(name))

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Ctx) -> None:
        self.fs.setxattr(inode, _name(name), value)

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: Ctx) -> bool:
        self.fs.getattr(inode)
        return True
