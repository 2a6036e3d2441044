"""The attributes an inode shows, and the overlays a local change puts over the listing's.

:class:`fichierfs.meta.MetaCache` answers ``attr(ino)`` alone (issue 13.4). A node's
attributes come from three sources, and meta holds all three:

* the **listing** (the node: size, upload date, §7);
* the **staged** copy of a file with local data (its size; the kernel may cache nothing of
  it): :class:`AttrOverlay.stage` is called by the writer when a staging copy becomes the
  file's content and :class:`AttrOverlay.unstage` when it stops being so; the writer keeps
  ``size`` of the object it staged up to date (one object, no second copy to drift);
* **local attributes** a program set (mtime, mode, owner; 1fichier keeps none, §2.9):
  :class:`fichierfs.store.Store` feeds every change of its attribute table through
  :meth:`AttrOverlay.set_local` (the journal keeps them durable; meta keeps them to answer).

Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Attr", "LocalAttrs", "AttrOverlay", "StagedSize"]


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
    mtime_ns: int | None = None
    """The exact mtime in nanoseconds when a program set it (else derived from ``mtime``)."""
    ttl: float | None = None
    """How long the kernel may cache this entry and its attributes (seconds): what is left of
    the freshness of the listing it comes from. None (local or pending data): the mount's
    ``--entry-timeout``/``--attr-timeout``."""

    @property
    def blocks(self) -> int:
        """Allocated 512-byte blocks (``du`` reads this)."""
        return (self.size + 511) // 512


@dataclass
class LocalAttrs:
    """Attributes set locally. Times in nanoseconds since the epoch (exact, so that ``rsync``
    sees the very times it set); None = not set."""

    mtime_ns: int | None = None
    ctime_ns: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


class StagedSize(Protocol):
    """A staging copy as the overlay sees it (:class:`fichierfs.writer.Staged`): its size now."""

    @property
    def size(self) -> int: ...


class AttrOverlay:
    """What local changes put over the listing's attributes (module docstring).

    Args:
        uid, gid: the owner shown when no program set one.
        read_only: show no write permission.
    """

    def __init__(self, *, uid: int = 0, gid: int = 0, read_only: bool = True) -> None:
        self.uid = uid
        self.gid = gid
        self.read_only = read_only
        self._staged: dict[int, StagedSize] = {}
        self._local: dict[str, LocalAttrs] = {}

    # ------------------------------------------------------------------ fed by the write side
    def stage(self, ino: int, staged: StagedSize) -> None:
        """``staged`` is the content of inode ``ino`` from now on (its size is shown)."""
        self._staged[ino] = staged

    def unstage(self, ino: int, staged: StagedSize | None = None) -> None:
        """Inode ``ino`` has no local content any more (uploaded, unlinked); with ``staged``,
        only if that is the copy staged (a newer copy of the same inode stays)."""
        if staged is None or self._staged.get(ino) is staged:
            self._staged.pop(ino, None)

    def staged_size(self, ino: int) -> int | None:
        """The size of ``ino``'s staged copy, None when it has none."""
        st = self._staged.get(ino)
        return None if st is None else st.size

    def set_local(self, key: str, attrs: LocalAttrs | None) -> None:
        """The local attributes of ``key`` (``local:<id>``, a url, ``d:<folder id>``) are now ``attrs``."""
        if attrs is None:
            self._local.pop(key, None)
        else:
            self._local[key] = attrs

    def local(self, key: str) -> LocalAttrs | None:
        return self._local.get(key)

    # ------------------------------------------------------------------ the answer
    def compose(self, ino: int, key: str, *, is_dir: bool, mode: int, size: int, mtime: float,
                ttl: float | None) -> Attr:
        """The attributes of a node whose listing says ``mode``/``size``/``mtime``.

        Size from the staged copy when the file has local data (then no kernel ttl);
        mtime/ctime/mode/uid/gid from the local attributes when a program set them.
        """
        ctime = mtime
        uid, gid = self.uid, self.gid
        mtime_ns: int | None = None
        st = self._staged.get(ino)
        if st is not None:
            size = st.size
            ttl = None
        a = self._local.get(key)
        if a is not None:
            if a.mode is not None:
                mode = (mode & ~0o7777) | (a.mode & 0o7777)
            if a.mtime_ns is not None:
                mtime_ns = a.mtime_ns
                mtime = a.mtime_ns / 1e9
            ctime = a.ctime_ns / 1e9 if a.ctime_ns is not None else mtime
            uid = a.uid if a.uid is not None else uid
            gid = a.gid if a.gid is not None else gid
        if self.read_only:
            mode &= ~0o222
        return Attr(ino=ino, mode=mode, size=size, mtime=mtime, ctime=ctime, nlink=2 if is_dir else 1,
                     uid=uid, gid=gid, mtime_ns=mtime_ns, ttl=ttl)

    def statistics(self) -> dict[str, int]:
        return {"staged": len(self._staged), "local_attrs": len(self._local)}
