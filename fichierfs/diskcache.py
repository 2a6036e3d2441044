"""DiskCache: chunks read from 1fichier kept in the cache directory, under a byte limit, across remounts.

Model: rclone's ``--vfs-cache-mode full`` (chunks of the files read are kept on disk), with two differences
users ask rclone for (rclone #4498, #6005: caches far past their limit):

* the limit (``--disk-cache-size``) is enforced **continuously**: every insertion first evicts least recently
  used chunks until the new one fits, so the directory never holds more than the limit (plus one chunk being
  written, as a temporary file);
* a chunk is keyed by the file's URL **and its whirlpool** (1fichier-api.md §7): a file replaced under the same
  URL, or changed since, has another whirlpool and therefore another key, so stale bytes are never served.
  Entries of the old version are never read again and age out of the LRU.

Layout: ``<root>/<first 2 hex of key>/<key>.<chunk_size>/<chunk index>``, one file per chunk (the last chunk of
a file may be short), directories 0700 and files 0600 (the cache holds the user's data). A chunk is written to
a temporary name and renamed, so a crash leaves whole chunks or none. The LRU order survives remounts through
the files' modification times (a hit touches the file); at start the directory is scanned once.

Units: bytes. All methods are plain (no await). Reading a chunk back (tens of microseconds) happens on the
caller's thread; storing one is split in three so that the writing can leave the event loop: :meth:`reserve`
(room made, counted against the limit) and :meth:`commit` (it joins the LRU) on the caller's thread, and
:meth:`write` (the file itself) in a worker thread. Writing downloaded chunks on the event loop cost about a
third of the mount's CPU time in a loopback sequential read (py-spy). :meth:`put` does all three at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["DiskCache"]

log = logging.getLogger(__name__)


class DiskCache:
    """Chunks on disk under ``limit`` bytes, LRU.

    Args:
        root: the cache directory (created 0700).
        limit: bytes of chunk data kept; 0 disables the cache (nothing is stored or served).
        chunk_size: bytes per chunk (part of the layout: another chunk size never reads these chunks).
    """

    def __init__(self, root: Path, limit: int, chunk_size: int) -> None:
        if limit < 0 or chunk_size <= 0:
            raise ValueError("limit must be >= 0 and chunk_size > 0 bytes")
        self.root = root
        self.limit = limit
        self.chunk_size = chunk_size
        self._lru: OrderedDict[tuple[str, int], int] = OrderedDict()  # (key, index) -> bytes, most recent last
        self._bytes = 0
        self._pending: dict[tuple[str, int], int] = {}  # reserved, being written (another thread may write them)
        self._pending_bytes = 0
        self._hits = 0
        self._misses = 0
        self._writes = 0
        self._evictions = 0
        self._errors = 0
        if limit:
            self._scan()

    # ------------------------------------------------------------------ keys and paths
    @staticmethod
    def key(file_url: str, checksum: str) -> str:
        """The cache key of one version of a file (URL + whirlpool; an unknown checksum is a key of its own)."""
        return hashlib.sha256(f"{file_url}\0{checksum.lower()}".encode()).hexdigest()[:40]

    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.{self.chunk_size}"

    def _path(self, key: str, index: int) -> Path:
        return self._dir(key) / str(index)

    def _scan(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)
        found: list[tuple[float, str, int, int]] = []
        suffix = f".{self.chunk_size}"
        for sub in self.root.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for d in sub.iterdir():
                if not d.name.endswith(suffix):
                    continue
                key = d.name[: -len(suffix)]
                for f in d.iterdir():
                    if not f.name.isdigit():
                        with contextlib.suppress(OSError):
                            f.unlink()  # a temporary file of a crashed write
                        continue
                    try:
                        st = f.stat()
                    except OSError:
                        continue
                    found.append((st.st_mtime, key, int(f.name), st.st_size))
        for _, key, index, size in sorted(found):
            self._lru[(key, index)] = size
            self._bytes += size
        self._evict_to(self.limit)
        log.debug("disk cache %s: %d chunks, %d bytes", self.root, len(self._lru), self._bytes)

    # ------------------------------------------------------------------ look-ups
    def __contains__(self, item: object) -> bool:
        return item in self._lru

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def get(self, key: str, index: int) -> bytes | None:
        """The chunk's bytes, or None (never raises: an unreadable chunk is forgotten)."""
        size = self._lru.get((key, index))
        if size is None:
            self._misses += 1
            return None
        path = self._path(key, index)
        try:
            with open(path, "rb") as f:
                data = f.read()
            os.utime(path)  # the LRU order survives a remount
        except OSError as exc:
            log.warning("disk cache: cannot read %s: %s", path, exc)
            self._errors += 1
            self._forget((key, index))
            return None
        if len(data) != size:
            self._forget((key, index))
            self._misses += 1
            return None
        self._lru.move_to_end((key, index))
        self._hits += 1
        return data

    def put(self, key: str, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Store one chunk now, evicting least recently used chunks first so the limit is never exceeded
        (:meth:`reserve` + :meth:`write` + :meth:`commit` in one go)."""
        if not self.reserve(key, index, len(data)):
            return (key, index) in self._lru
        ok = self.write(key, index, data)
        self.commit(key, index, ok)
        return ok

    def reserve(self, key: str, index: int, size: int) -> bool:
        """Make room for one chunk of ``size`` bytes about to be written (evicting LRU chunks first, counting
        the other chunks reserved and not yet written); False when it is stored already, being written, or
        cannot be stored. A True must be followed by :meth:`commit` (after :meth:`write`, in any thread)."""
        k = (key, index)
        if not self.limit or size > self.limit or size > self.chunk_size or k in self._pending:
            return False
        if k in self._lru:
            self._lru.move_to_end(k)
            return False
        self._evict_to(self.limit - self._pending_bytes - size)
        self._pending[k] = size
        self._pending_bytes += size
        return True

    def write(self, key: str, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Write one reserved chunk's file (temporary name, then renamed). Touches only the file system, so it
        may run in a worker thread while the event loop goes on; True when written."""
        d = self._dir(key)
        path = d / str(index)
        tmp = d / f".{index}.tmp"
        try:
            if not d.is_dir():
                os.makedirs(d, mode=0o700, exist_ok=True)
                with contextlib.suppress(OSError):
                    os.chmod(d.parent, 0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("disk cache: cannot write %s: %s", path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True

    def commit(self, key: str, index: int, written: bool) -> None:
        """End a reservation: a written chunk joins the LRU (most recent), a failed one is forgotten."""
        k = (key, index)
        size = self._pending.pop(k, None)
        if size is None:
            return
        self._pending_bytes -= size
        if not written:
            self._errors += 1
            return
        self._lru[k] = size
        self._bytes += size
        self._writes += 1

    def invalidate(self, key: str) -> None:
        """Forget every chunk of one file version."""
        for k in [k for k in self._lru if k[0] == key]:
            self._forget(k)

    # ------------------------------------------------------------------ internals
    def _evict_to(self, limit: int) -> None:
        while self._bytes > limit and self._lru:
            k = next(iter(self._lru))
            self._forget(k)
            self._evictions += 1

    def _forget(self, k: tuple[str, int]) -> None:
        size = self._lru.pop(k, None)
        if size is None:
            return
        self._bytes -= size
        path = self._path(*k)
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty

    def statistics(self) -> dict[str, Any]:
        """Counters for ``status``: ``limit``, ``cached_bytes``, ``chunks``, ``hits``, ``misses``, ``writes``,
        ``evictions``, ``errors``, ``pending_bytes`` (reserved, being written)."""
        return {
            "limit": self.limit,
            "cached_bytes": self._bytes,
            "chunks": len(self._lru),
            "hits": self._hits,
            "misses": self._misses,
            "writes": self._writes,
            "pending_bytes": self._pending_bytes,
            "evictions": self._evictions,
            "errors": self._errors,
        }
