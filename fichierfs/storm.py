"""File-manager storm defence: recognise thumbnailers and indexers by the process that asks.

Opening a folder of pictures in a file manager makes it read every image to draw thumbnails
(design.md §4.A): with PCManFM, 200 files cost 160 download links and every byte of every
picture, before the person has clicked anything. GLib's "remote file system" test cannot
help on FUSE (GLib 2.74 classifies by statfs magic: every FUSE mount is ``fuse``, local), and
libfm thumbnails every native path. What a FUSE file system does know is who asks: the
kernel passes the calling thread's id with each request (``ctx.pid`` in pyfuse3).

:class:`ProcessPolicy` classifies that thread (``/proc/TID/comm``, its process's
``/proc/TGID/comm``) as a thumbnailer, an indexer or an ordinary program, and decides whether
an ``open`` for reading may start downloads:

* ``allow`` — no policy (every program is served as usual);
* ``cached`` (default) — thumbnailers and indexers are served only what is already local
  (``cached=True`` from the caller: data in the chunk cache or a head cache); otherwise
  ``EACCES`` at once, which file managers treat as "no thumbnail" (a generic icon) without
  retrying in the session;
* ``deny`` — thumbnailers and indexers never read file contents.

Known thumbnailers: whole processes (``tumblerd``, ``gdk-pixbuf-thumbnailer``,
``ffmpegthumbnailer``, …) and libfm's in-process loader thread (thread ``loader`` in
``pcmanfm``/``pcmanfm-qt``/``lxqt``-based file managers). Copying with the file manager
itself runs on other threads (``pool-*``) and is unaffected.

FUSE-free and trio-free; the ``/proc`` root is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ProcessPolicy", "THUMBNAILERS", "INDEXERS", "LOADER_THREADS", "MODES"]

MODES = ("allow", "cached", "deny")

# /proc/*/comm holds at most 15 characters: names are compared on their first 15.
THUMBNAILERS = frozenset({
    "tumblerd", "gdk-pixbuf-thumbnailer", "gnome-thumbnail-font", "gnome-desktop-thumbnailer",
    "ffmpegthumbnailer", "totem-video-thumbnailer", "evince-thumbnailer", "atril-thumbnailer",
    "xreader-thumbnailer", "gsf-office-thumbnailer", "folks-thumbnailer", "xapp-thumbnailer",
    "gnome-epub-thumbnailer", "gnome-mobi-thumbnailer", "thumbnail.so", "kioworker-thumbnail",
    "raw-thumbnailer", "webp-thumbnailer", "heif-thumbnailer", "libreoffice-thumbnailer",
})
INDEXERS = frozenset({
    "tracker-extract", "tracker-extract-3", "tracker-miner-fs", "tracker-miner-fs-3", "localsearch-3",
    "localsearch-extractor-3", "baloo_file", "baloo_file_extractor", "baloorunner", "recollindex",
    "zeitgeist-fts", "mlocate", "plocate-build",
})
# (process name, thread name): thumbnailing threads inside a file manager's own process.
LOADER_THREADS = frozenset({("pcmanfm", "loader"), ("pcmanfm-qt", "loader"), ("lxqt-panel", "loader")})


def _c15(name: str) -> str:
    return name[:15]


@dataclass
class ProcessPolicy:
    """Which callers may start downloads (see the module doc).

    Args:
        mode: ``allow``, ``cached`` or ``deny``.
        proc: the procfs root (tests pass a fake tree).
        extra_thumbnailers: more process names to treat as thumbnailers (option).
        ttl: seconds a thread's classification is remembered (thread ids are reused).
    """

    mode: str = "cached"
    proc: Path = Path("/proc")
    extra_thumbnailers: Iterable[str] = ()
    ttl: float = 30.0
    clock: Callable[[], float] = time.monotonic
    denied: int = 0
    served: int = 0
    denied_by: dict[str, int] = field(default_factory=dict)
    _seen: dict[int, tuple[float, str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"thumbnail policy {self.mode!r}: use one of {', '.join(MODES)}")
        self._thumb = {_c15(n) for n in THUMBNAILERS} | {_c15(n) for n in self.extra_thumbnailers}
        self._index = {_c15(n) for n in INDEXERS}
        self._loaders = {(_c15(p), _c15(t)) for p, t in LOADER_THREADS}

    def _read(self, *parts: str) -> str:
        try:
            return (self.proc.joinpath(*parts)).read_text(errors="replace").strip()
        except OSError:
            return ""

    def kind(self, tid: int) -> str | None:
        """``"thumbnailer"``, ``"indexer"`` or None for the thread ``tid`` (FUSE's ``ctx.pid``)."""
        if tid <= 0:
            return None
        now = self.clock()
        hit = self._seen.get(tid)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        thread = self._read(str(tid), "comm")
        tgid = tid
        for line in self._read(str(tid), "status").splitlines():
            if line.startswith("Tgid:"):
                try:
                    tgid = int(line.split()[1])
                except (IndexError, ValueError):
                    pass
                break
        process = self._read(str(tgid), "comm") if tgid != tid else thread
        result: str | None = None
        if process in self._thumb or thread in self._thumb or (process, thread) in self._loaders:
            result = "thumbnailer"
        elif process in self._index or thread in self._index:
            result = "indexer"
        if len(self._seen) > 4096:
            self._seen.clear()
        self._seen[tid] = (now, result)
        return result

    def may_download(self, tid: int, *, cached: bool) -> bool:
        """Whether an open for reading by thread ``tid`` may go on; counts the answer.

        Args:
            cached: the file's data needed by such a caller is already local (no API call).
        """
        if self.mode == "allow":
            return True
        who = self.kind(tid)
        if who is None or (cached and self.mode == "cached"):
            self.served += who is not None
            return True
        self.denied += 1
        self.denied_by[who] = self.denied_by.get(who, 0) + 1
        return False

    def statistics(self) -> dict[str, object]:
        """For the status document: ``mode``, ``denied``, ``served`` (from cache), ``denied_by``."""
        return {
            "mode": self.mode,
            "denied": self.denied,
            "served_cached": self.served,
            "denied_by": dict(self.denied_by),
        }
