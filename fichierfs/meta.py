"""MetaCache: the inode table and folder listings, the only source of metadata.

Design (design.md Part A §5.2, §6; Part B §9):

* **Listings are the only metadata source.** A folder's content comes from ONE
  ``folder/ls`` call with ``files:1`` (docs/1fichier-api.md §2.2), which gives every
  sub-folder and every file with size, date, checksum and MIME type. ``lookup`` and
  ``getattr`` are answered from the cached listing and never cost a per-file call; ``readdir``
  hands out full attributes so ``ls -l`` fans out to nothing (mountpoint-s3 #1801, s3fs #303).
* **Inodes are stable**: a folder keeps its inode for its ``folder_id``, a file for its
  ``url`` (§7: the url is a file's identity), across re-listings. The root is inode 1.
* **Kernel lookup counts** are kept per inode (``remember``/``forget``); an inode that
  vanished remotely stays in the table until the kernel forgets it.
* **Freshness**: a listing is fresh for ``dir_ttl`` seconds. A stale listing is still served
  at once and refreshed in the background (stale-while-revalidate), because 1fichier allows
  the same folder to be listed only once per 30 s (§4): blocking on a re-list would stall
  every ``stat``. Only a folder never listed makes the caller wait. A name absent from a
  fresh listing is a cached negative entry (no call).
* **Change detection**: a re-list is diffed against the previous one; names that went away
  or now point elsewhere are invalidated in the kernel (``invalidate_entry``) and inodes whose
  size or date changed get ``invalidate_inode``.
* **Names** are decoded from 1fichier's encoding (:mod:`fichierfs.names`, §7). Duplicate
  names in one folder (§7, §8.3: allowed remotely) are shown deterministically: the newest
  file (latest upload date, then url) keeps the name, the others get `` (dup <id>)`` before
  their extension; a folder always wins over a file of the same name.

Concurrency: everything here is plain synchronous code except :meth:`MetaCache.ensure_listed`,
which awaits the scheduler (and coalesces concurrent listings of one folder through it).
"""

from __future__ import annotations

import logging
import math
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import trio

from fichierfs.attrs import Attr, AttrOverlay, LocalAttrs, StagedSize
from fichierfs.bigfolder import CAP, complete_listing, is_capped
from fichierfs.errors import FichierError, Incomplete, NoEntry, NotFound
from fichierfs.metastore import MetaStore, Snapshot
from fichierfs.models import FileUrl, FolderId, FolderListing, RemoteFile, RemoteFolder
from fichierfs.names import decode
from fichierfs.scheduler import ApiCaller, Lane

__all__ = ["ROOT_INODE", "Node", "KernelNotifier", "NullNotifier", "RecordingNotifier", "MetaCache", "NoEntry"]

log = logging.getLogger(__name__)

_ORPHAN_BASE = 1_000_000_000
"""An orphan's parent is ``-abs(folder id) - _ORPHAN_BASE`` until its folder is listed."""

ROOT_INODE = 1


class KernelNotifier(Protocol):
    """Tells the kernel to drop cached entries/attributes (pyfuse3 invalidate_* in production)."""

    def invalidate_entry(self, parent: int, name: str) -> None: ...

    def invalidate_inode(self, ino: int) -> None: ...


class NullNotifier:
    """A notifier that does nothing (no kernel attached)."""

    def invalidate_entry(self, parent: int, name: str) -> None:
        pass

    def invalidate_inode(self, ino: int) -> None:
        pass


class RecordingNotifier:
    """A notifier for tests: records ``("entry", parent, name)`` and ``("inode", ino)``."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def invalidate_entry(self, parent: int, name: str) -> None:
        self.events.append(("entry", parent, name))

    def invalidate_inode(self, ino: int) -> None:
        self.events.append(("inode", ino))


def _epoch(dt: datetime | None) -> float:
    return dt.timestamp() if dt is not None else 0.0


@dataclass(eq=False, slots=True)
class Node:
    """One inode.

    Attributes:
        ino: inode number (root = 1).
        is_dir: folder or file.
        parent: the parent's inode (root: itself).
        name: the local (decoded) name under its parent.
        folder_id: the 1fichier folder id (folders only).
        file: the remote file (files only).
        size: bytes (folders: 0).
        mtime: seconds since the epoch (the upload date for files, §7; creation date for folders).
        lookups: the kernel's lookup count.
        children: name → inode (folders only; valid once ``listed_at`` is set).
        listed_at: clock time of the last listing merged, or None.
        gone: the entry vanished remotely; kept until the kernel forgets it.
        local_key: ``local:<id>`` while the file's content is a local staging copy (store.py).
        pinned_until: clock time until which re-lists do not move, rename or drop this node
            (a local change the remote listing may not show yet; ``inf`` while pending).
    """

    ino: int
    is_dir: bool
    parent: int
    name: str
    folder_id: FolderId | None = None
    file: RemoteFile | None = None
    size: int = 0
    mtime: float = 0.0
    lookups: int = 0
    children: dict[str, int] = field(default_factory=dict)
    listed_at: float | None = None
    gone: bool = False
    local_key: str | None = None
    pinned_until: float = -math.inf

    @property
    def key(self) -> str:
        """Identity for the local attribute store: ``local:<id>``, the url, or ``d:<folder_id>``."""
        if self.local_key is not None:
            return self.local_key
        if self.is_dir:
            return f"d:{self.folder_id}"
        return self.file.url if self.file is not None else f"ino:{self.ino}"

    @property
    def mode(self) -> int:
        return (stat_mod.S_IFDIR | 0o755) if self.is_dir else (stat_mod.S_IFREG | 0o644)


class _NoChildren(dict[str, int]):
    """The one shared, immutable ``children`` of every file node (64 bytes saved per file)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a file node has no children")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse  # type: ignore[assignment]


NO_CHILDREN: dict[str, int] = _NoChildren()


def _from_epoch(t: float) -> datetime | None:
    from datetime import timezone

    return datetime.fromtimestamp(t, tz=timezone.utc) if t else None


def _remote_name(name: str, fallback: str | None) -> str:
    """The remote (encoded) form of a shown name, for the persisted view."""
    from fichierfs.names import NameError_, encode

    try:
        return encode(name)
    except NameError_:
        return fallback if fallback is not None else name


def _dup_name(name: str, url: str) -> str:
    """``report.pdf`` + ``https://1fichier.com/?abc`` → ``report (dup abc).pdf``."""
    ident = url.rsplit("?", 1)[-1].rsplit("/", 1)[-1] or "x"
    dot = name.rfind(".")
    if dot > 0:
        return f"{name[:dot]} (dup {ident}){name[dot:]}"
    return f"{name} (dup {ident})"


@dataclass(slots=True)
class _Progress:
    known: int
    windows: int
    started: float
    lane: Lane
    """The lane of the folder's windows; lookups by name queue in it too (never ahead of them)."""


class MetaCache:
    """The inode table plus folder listings (see module docstring).

    Args:
        scheduler: the API scheduler; only ``call(client.folder_ls, folder_id, files=True, lane=…)`` is used.
        root_folder_id: the remote folder shown as the mount root (0 = the account root, §7).
        dir_ttl: seconds a listing is fresh.
        clock: monotonic seconds (``trio.current_time`` in tests under MockClock).
        notifier: where kernel invalidations go.
    """

    def __init__(
        self,
        scheduler: ApiCaller,
        root_folder_id: int = 0,
        *,
        dir_ttl: float = 600.0,
        clock: Callable[[], float] = trio.current_time,
        notifier: KernelNotifier | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.dir_ttl = dir_ttl
        self.clock = clock
        self.notifier: KernelNotifier = notifier or NullNotifier()
        self._nodes: dict[int, Node] = {}
        self._by_folder: dict[int, int] = {}
        self._by_url: dict[str, int] = {}
        self._next_ino = ROOT_INODE + 1
        self._refreshing: set[int] = set()
        self._background: trio.Nursery | None = None
        self._hidden_urls: dict[str, float] = {}
        self._hidden_folders: dict[int, float] = {}
        self._orphans: dict[int, list[int]] = {}
        self._shadows: set[tuple[int, str, int]] = set()
        self._preset: dict[int | str, int] = {}
        self.store: MetaStore | None = None
        self._dirty: set[int] = set()
        self._marked: set[int] = set()
        """Folders marked dirty in the DB (``MetaStore.mark_dirty``) since their view was last queued."""
        self._loading = False
        self._incomplete: dict[int, trio.Event] = {}
        """Folders first listed from a capped reply, still being completed (bigfolder.py)."""
        self._complete_failed: set[int] = set()
        self._completing: set[int] = set()
        self._progress: dict[int, _Progress] = {}
        """Completion progress of each incomplete folder (status document, log)."""
        self._subs_cut: set[int] = set()
        self._absent: dict[int, set[str]] = {}
        """Names ``file/info`` said are not in an incomplete folder (until it is complete)."""
        self.probes = 0
        """``file/info`` calls made by name for lookups in incomplete folders."""
        self._inline: list[Callable[[], Any]] = []
        self.window_calls = 0
        self.listing_cap = CAP
        """Results per listing (§2.2); tests lower it together with the emulator's ``max_listing``."""
        root = Node(ROOT_INODE, True, ROOT_INODE, "", folder_id=FolderId(root_folder_id), lookups=1)
        self._nodes[ROOT_INODE] = root
        self._by_folder[root_folder_id] = ROOT_INODE
        self.listings = 0
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        """Told of each remote change of ours as it is made (fichierfs.listshare tells the other mounts)."""
        self.shared_applied = 0
        self.on_merged: Callable[[int], None] | None = None
        """Told the folder id after a listing was merged (fichierfs.listshare re-applies recent changes)."""
        self.overlay = AttrOverlay()
        """Staged sizes and local attributes over the listings' (attrs.py): fed by the write side."""

    # ------------------------------------------------------------------ lifecycle
    def attach_nursery(self, nursery: trio.Nursery | None) -> None:
        """Give the cache a nursery for background refreshes of stale listings (None: refresh inline)."""
        self._background = nursery

    def attach_store(self, store: MetaStore | None) -> None:
        """Persist every listing merged from now on in ``store`` (:mod:`fichierfs.metastore`)."""
        self.store = store
        if store is not None:
            store.set_root(int(self.get(ROOT_INODE).folder_id or 0), ROOT_INODE)

    def reserve_inodes(self, max_ino: int) -> None:
        """New inodes start above ``max_ino`` (the persisted ones keep their numbers)."""
        self._next_ino = max(self._next_ino, max_ino + 1)

    def load(self, snapshot: Snapshot, *, wall: float | None = None) -> int:
        """Merge persisted listings (parents first), with their inode numbers and their real age.

        Call after the journal replay (pending changes are merged over these listings as over
        fresh ones) and :meth:`reserve_inodes`. Returns how many folder listings were loaded.
        A listing older than ``dir_ttl`` is stale: served, and re-listed in the background
        when the folder is used. A folder marked dirty (we changed it and crashed before its
        view was written) gets its inodes back but counts as never listed: it is re-listed
        before it is served.
        """
        import time

        now_wall = time.time() if wall is None else wall
        now = self.clock()
        self.reserve_inodes(snapshot.max_ino)
        n = 0
        for p in snapshot.folders:
            ino = self._by_folder.get(p.folder_id)
            node = self._nodes.get(ino) if ino is not None else None
            if node is None or not node.is_dir:
                continue
            self._preset = p.inodes
            self._loading = True
            try:
                self.merge(node.ino, p.listing)
            finally:
                self._preset = {}
                self._loading = False
            node.listed_at = None if p.dirty else now - max(0.0, now_wall - p.listed_wall)
            if p.dirty:
                log.debug("persisted listing of folder %d is dirty: re-listed before it is served", p.folder_id)
            n += 1
        return n

    # ------------------------------------------------------------------ plain look-ups
    def get(self, ino: int) -> Node:
        """The node of ``ino``. Raises NoEntry (ENOENT) for an unknown inode."""
        try:
            return self._nodes[ino]
        except KeyError:
            raise NoEntry(f"inode {ino} unknown") from None

    def node(self, ino: int) -> Node | None:
        """The node of ``ino`` or None."""
        return self._nodes.get(ino)

    def path_of(self, ino: int) -> str:
        """``/a/b`` of an inode, from the mount root (for status and logs)."""
        parts: list[str] = []
        node = self.get(ino)
        seen = 0
        while node.ino != ROOT_INODE and seen < 256:
            parts.append(node.name)
            parent = self._nodes.get(node.parent)
            if parent is None:
                break
            node = parent
            seen += 1
        return "/" + "/".join(reversed(parts))

    def get_nowait(self, parent: int, name: str) -> Node | None:
        """The child ``name`` of ``parent`` from the cached listing only (never the network)."""
        p = self._nodes.get(parent)
        if p is None or not p.is_dir:
            return None
        ino = p.children.get(name)
        return None if ino is None else self._nodes.get(ino)

    def children(self, parent: int) -> Iterator[Node]:
        """The cached children of a folder, in name order."""
        p = self.get(parent)
        for name in sorted(p.children):
            node = self._nodes.get(p.children[name])
            if node is not None:
                yield node

    def is_fresh(self, node: Node) -> bool:
        return node.listed_at is not None and self.clock() - node.listed_at < self.dir_ttl

    def kernel_ttl(self, node: Node) -> float | None:
        """How long the kernel may cache ``node``'s entry and attributes: what is left of the
        freshness of the listing that holds it. None for local or pinned nodes (the mount's
        short defaults apply). Safe because every change a re-list finds is pushed to the
        kernel (``invalidate_entry``/``invalidate_inode`` in :meth:`merge`)."""
        if node.local_key is not None or node.pinned_until > self.clock() or node.gone:
            return None
        parent = self._nodes.get(node.parent)
        if parent is None or parent.listed_at is None:
            return None
        left = self.dir_ttl - (self.clock() - parent.listed_at)
        return left if left > 0 else None

    def negative_ok(self, parent: int) -> bool:
        """True when "no such name" in folder ``parent`` may be cached by the kernel."""
        p = self._nodes.get(parent)
        return p is not None and p.is_dir and self.is_fresh(p) and parent not in self._incomplete

    def __len__(self) -> int:
        return len(self._nodes)

    # ------------------------------------------------------------------ attributes (the one answer)
    def attr(self, ino: int) -> Attr:
        """The attributes inode ``ino`` shows: its listing's, under the staged size and the
        local attributes (attrs.py). No I/O. Raises NoEntry (ENOENT) for an unknown inode."""
        return self.attr_of(self.get(ino))

    def attr_of(self, node: Node) -> Attr:
        """:meth:`attr` of a node already in hand (readdir of a snapshot of nodes)."""
        return self.overlay.compose(node.ino, node.key, is_dir=node.is_dir, mode=node.mode, size=node.size,
                                    mtime=node.mtime, ttl=self.kernel_ttl(node))

    def show_owner(self, uid: int, gid: int, *, read_only: bool) -> None:
        """The owner shown where no program set one, and whether write permission is shown."""
        self.overlay.uid, self.overlay.gid, self.overlay.read_only = uid, gid, read_only

    def stage(self, node: Node | int, staged: StagedSize) -> None:
        """The writer: ``staged`` (a staging copy, its size kept current) is this file's content now."""
        self.overlay.stage(node if isinstance(node, int) else node.ino, staged)

    def unstage(self, ino: int, staged: StagedSize | None = None) -> None:
        """The writer: inode ``ino``'s staging copy ``staged`` is no longer its content."""
        self.overlay.unstage(ino, staged)

    def set_local_attrs(self, key: str, attrs: LocalAttrs | None) -> None:
        """The local attribute store: ``key``'s attributes set by programs are now ``attrs``."""
        self.overlay.set_local(key, attrs)

    # ------------------------------------------------------------------ kernel lookup counts
    def remember(self, ino: int) -> None:
        """The kernel got a reference to ``ino`` (lookup, create, readdirplus entry)."""
        self.get(ino).lookups += 1

    def forget(self, ino: int, nlookup: int) -> None:
        """The kernel dropped ``nlookup`` references; a gone node with none left is deleted."""
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups = max(0, node.lookups - nlookup)
        if node.lookups == 0 and node.gone:
            self._drop(node)

    def _drop(self, node: Node) -> None:
        self._nodes.pop(node.ino, None)
        if node.is_dir and node.folder_id is not None and self._by_folder.get(node.folder_id) == node.ino:
            del self._by_folder[node.folder_id]
        if node.file is not None and self._by_url.get(node.file.url) == node.ino:
            del self._by_url[node.file.url]

    # ------------------------------------------------------------------ listings
    async def ensure_listed(self, ino: int, *, lane: Lane = Lane.INTERACTIVE) -> Node:
        """Make sure folder ``ino`` has a listing: wait only if it never had one.

        A stale listing is returned at once and refreshed in the background (module doc).

        Raises:
            NoEntry (ENOENT): not a known inode; NotADirectory-like EINVAL is the vfs's job.
            FloodLocked (EAGAIN) and other scheduler errors when a first listing fails.
        """
        node = self.get(ino)
        if not node.is_dir:
            return node
        if node.listed_at is None:
            await self.refresh(ino, lane=lane)
        elif not self.is_fresh(node):
            self._refresh_in_background(ino)
        return node

    def _refresh_in_background(self, ino: int) -> None:
        if ino in self._refreshing:
            return
        if self._background is None:
            return
        self._refreshing.add(ino)

        async def run() -> None:
            try:
                await self.refresh(ino, lane=Lane.BACKGROUND)
            except FichierError as exc:
                log.log(exc.level, "background re-list of inode %d failed: %s", ino, exc)
            finally:
                self._refreshing.discard(ino)

        self._background.start_soon(run)

    async def refresh(self, ino: int, *, lane: Lane = Lane.INTERACTIVE, fresh: bool = False) -> None:
        """List folder ``ino`` now (one ``folder/ls`` with ``files:1``, §2.2) and merge the result."""
        node = self.get(ino)
        assert node.is_dir and node.folder_id is not None
        if int(node.folder_id) < 0:  # a local folder not created remotely yet: nothing to list
            node.listed_at = self.clock()
            return
        try:
            listing: FolderListing = await self.scheduler.call(
                self.scheduler.client.folder_ls, int(node.folder_id), files=True, lane=lane,
                coalesce=False if fresh else None,  # fresh: never another mount's shared copy
            )
        except NotFound:
            self._mark_gone_tree(node)
            raise NoEntry(f"folder {node.folder_id} is gone") from None
        self.listings += 1
        if is_capped(listing, self.listing_cap):
            self._start_completion(ino, listing, lane)
            while self._inline:
                await self._inline.pop(0)()
            return
        if ino not in self._completing:  # a whole listing: no earlier failed completion holds lookups back
            self._complete_failed.discard(ino)
            self._absent.pop(ino, None)
        self.merge(ino, listing)

    # ------------------------------------------------------------------ folders over 5,000 files
    def _start_completion(self, ino: int, first: FolderListing, lane: Lane) -> None:
        """A capped reply: complete it with file/ls windows (bigfolder.py).

        A first listing shows the part known at once (readdir serves it; a lookup of a name
        not seen yet waits for the rest); a re-list keeps serving the previous complete
        listing until the new one is complete.
        """
        node = self.get(ino)
        if ino in self._completing:
            return
        first_time = node.listed_at is None or ino in self._incomplete
        if first_time:
            self._incomplete.setdefault(ino, trio.Event())
            self.merge(ino, first)
        if len(first.sub_folders) >= self.listing_cap:
            self._subs_cut.add(ino)  # sub-folders cut too: a name's absence cannot be asked by file/info
        self._complete_failed.discard(ino)
        self._completing.add(ino)
        window_lane = Lane.PREFETCH if lane in (Lane.INTERACTIVE, Lane.PREFETCH) else lane
        progress = self._progress[ino] = _Progress(len(first.files), 0, self.clock(), window_lane)
        if first_time:
            log.warning("%s holds %d entries or more (1fichier lists %d at most, §2.2): showing the first %d "
                        "until the rest is listed in upload-date windows, one per %.0f s (§4); a name not shown "
                        "yet is asked by name; `fichierfs status` shows the progress",
                        self.path_of(ino), self.listing_cap, self.listing_cap,
                        len(first.sub_folders) + len(first.files), self._folder_gap())

        def on_progress(known: int, windows: int) -> None:
            progress.known, progress.windows = known, windows

        async def file_ls(folder_id: int, after: str | None, before: str | None) -> tuple[RemoteFile, ...]:
            got: tuple[RemoteFile, ...] = await self.scheduler.call(
                self.scheduler.client.file_ls, folder_id, sent_after=after, sent_before=before, lane=window_lane)
            self.window_calls += 1
            return got

        async def run() -> None:
            try:
                full, _calls = await complete_listing(int(node.folder_id or 0), first, file_ls, self.listing_cap,
                                                      on_progress)
                self.merge(ino, full)
                if first_time:
                    log.info("%s is complete: %d files listed with %d date window(s) in %.0f s",
                             self.path_of(ino), len(full.files), progress.windows, self.clock() - progress.started)
            except FichierError as exc:
                self._complete_failed.add(ino)
                if node.listed_at is not None:
                    node.listed_at = -math.inf  # re-list at the next use
                log.log(exc.level, "listing %s (over %d results) could not be completed: %s",
                        self.path_of(ino), CAP, exc)
            finally:
                self._completing.discard(ino)
                self._progress.pop(ino, None)
                self._absent.pop(ino, None)
                self._subs_cut.discard(ino)
                ev = self._incomplete.pop(ino, None)
                if ev is not None:
                    ev.set()

        if self._background is not None:
            self._background.start_soon(run)
        else:  # no nursery (tests): complete inline
            self._inline.append(run)

    def _stall_limit(self) -> float:
        return float(getattr(getattr(self.scheduler, "budgets", None), "stall_limit", 30.0))

    def _folder_gap(self) -> float:
        budgets = getattr(self.scheduler, "budgets", None)
        return float(getattr(budgets, "same_folder_interval", 31.0))

    def incomplete(self) -> list[dict[str, Any]]:
        """The folders whose capped listing is being completed: path, files known so far, date
        windows done, seconds since the capped reply, and when the next window may start (each
        window is a listing of the folder: one per 31 s, §4). 1fichier gives no total count
        (§2.2), so how many are missing is not known until the last window. A folder whose
        completion failed is listed with ``failed`` (it is re-listed at its next use)."""
        out = []
        now = self.clock()
        for ino, pr in self._progress.items():
            node = self._nodes.get(ino)
            if node is None or ino not in self._incomplete:
                continue
            try:
                nxt = float(self.scheduler.next_allowed("file/ls", int(node.folder_id or 0)))
            except Exception:  # noqa: BLE001 - a status figure only
                nxt = 0.0
            out.append({"path": self.path_of(ino), "known": pr.known, "windows": pr.windows,
                        "listing_for": round(now - pr.started, 1), "next_window_in": round(nxt, 1),
                        "at_least": self.listing_cap})
        for ino in self._complete_failed:  # partial, and no window running: re-listed at the next use
            node = self._nodes.get(ino)
            if node is not None and ino not in self._completing:
                out.append({"path": self.path_of(ino), "known": len(node.children), "failed": True,
                            "at_least": self.listing_cap})
        return out

    async def wait_complete(self, ino: int) -> None:
        """Wait until folder ``ino``'s capped listing is complete (at most the stall limit).

        Raises:
            Incomplete (EAGAIN): still incomplete after the stall limit, or completing failed.
        """
        ev = self._incomplete.get(ino)
        if ev is not None:
            with trio.move_on_after(self._stall_limit()):
                await ev.wait()
            if not ev.is_set():
                raise Incomplete(f"{self.path_of(ino)} is still being listed (over {CAP} files)")
        if ino in self._complete_failed:
            raise Incomplete(f"{self.path_of(ino)}: its listing (over {CAP} files) could not be completed")

    # ------------------------------------------------------------------ persistence (metastore.py)
    def _touch_dir(self, ino: int, *, listed: bool = False) -> None:
        """Folder ``ino``'s shown content changed: persist it at the next :meth:`persist_dirty`.

        A change of ours (not a listing) is also marked in the DB at once, the first time
        since the view was last queued: after a crash in between, that folder is re-listed
        before it is served, so the persisted view never hides what the journal says is done.
        (Keyed on its own set, not on "queued for persisting": a re-listing queues the folder
        too, and a change of ours right after it went unmarked — found by the fault soak: an
        upload finished just after a re-list, a kill, and the file was invisible.)"""
        if self.store is not None and not self._loading:
            if not listed and ino not in self._marked:
                node = self._nodes.get(ino)
                if node is not None and node.folder_id is not None and int(node.folder_id) >= 0:
                    self.store.mark_dirty(int(node.folder_id))
                    self._marked.add(ino)
            self._dirty.add(ino)

    def persist_dirty(self) -> int:
        """Queue the current view of every changed folder in the store (cheap; the store
        writes it from a worker thread). What is kept is what the remote holds as far as we
        know: listed entries plus our own finished changes (a finished mkdir, upload, rename),
        never local-only entries (the journal has those). Returns the number of folders."""
        import time

        if self.store is None or not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, set()
        now, wall = self.clock(), time.time()
        n = 0
        for ino in dirty:
            if ino in self._incomplete:
                self._dirty.add(ino)  # a partial listing is never persisted as if complete
                continue
            node = self._nodes.get(ino)
            if node is None or not node.is_dir or node.gone or node.listed_at is None:
                continue
            fid = int(node.folder_id or 0)
            if fid < 0:
                continue
            subs: list[RemoteFolder] = []
            files: list[RemoteFile] = []
            inodes: dict[int | str, int] = {}
            for name, cino in node.children.items():
                c = self._nodes.get(cino)
                if c is None or c.gone:
                    continue
                if c.is_dir:
                    cid = int(c.folder_id or 0)
                    if cid >= 0:
                        subs.append(RemoteFolder(FolderId(cid), _remote_name(name, None),
                                                 _from_epoch(c.mtime)))
                        inodes[cid] = cino
                elif c.file is not None and c.local_key is None:
                    rf = c.file
                    files.append(RemoteFile(rf.url, _remote_name(name, rf.filename), rf.size, rf.date,
                                            rf.checksum, rf.content_type, folder_id=FolderId(fid)))
                    inodes[rf.url] = cino
            listing = FolderListing(FolderId(fid), "", None, tuple(subs), tuple(files))
            listed_at = node.listed_at if math.isfinite(node.listed_at) else now - 1e9
            self.store.put_listing(fid, listing, inodes, wall - (now - listed_at))
            self._marked.discard(ino)  # the next change marks it again (and drops this snapshot)
            n += 1
        return n

    def merge(self, ino: int, listing: FolderListing) -> None:
        """Replace folder ``ino``'s children by ``listing``, keeping inodes, invalidating changes.

        Local changes win over the listing (it may lag behind them, §8.6): a *pinned* node
        (pending or recent local create/rename/move) keeps its place and name, and hidden
        urls/folders (pending or recent deletes, replaced copies) are left out.
        """
        parent = self.get(ino)
        now = self.clock()
        old = dict(parent.children)
        new: dict[str, int] = {}
        for sub in listing.sub_folders:
            if self._is_hidden(self._hidden_folders, int(sub.id), now):
                continue
            known = self._nodes.get(self._by_folder.get(int(sub.id), 0))
            if known is not None and known.pinned_until > now:
                continue
            name = decode(sub.name)
            child = self._folder_node(sub.id, ino, name, _epoch(sub.create_date))
            if name in new:
                name = f"{name} (dup {sub.id})"
                child.name = name
            new[name] = child.ino
        files = sorted(listing.files, key=lambda f: (_epoch(f.date), f.url), reverse=True)
        for rf in files:
            if self._is_hidden(self._hidden_urls, rf.url, now):
                continue
            if (int(parent.folder_id or 0), rf.filename, rf.size) in self._shadows and rf.url not in self._by_url:
                continue  # our own upload whose POST landed, not resolved yet (writer.py)
            known = self._nodes.get(self._by_url.get(rf.url, 0))
            if known is not None and (known.pinned_until > now or known.local_key is not None):
                continue
            name = decode(rf.filename)
            if name in new:
                name = _dup_name(name, rf.url)
            new[name] = self._file_node(rf, ino, name).ino
        local = [(n, c) for n, c in old.items() if self._pinned_here(c, ino, now)]
        for c in self._orphans.pop(int(parent.folder_id or 0), ()):
            if c in self._nodes:  # journal entries waiting for this folder's first listing
                self._nodes[c].parent = ino
                local.append((self._nodes[c].name, c))
        for name, child_ino in local:
            other = new.get(name)
            if other is not None and other != child_ino:
                o = self._nodes[other]
                mine = self._nodes[child_ino]
                if o.is_dir and mine.is_dir and int(mine.folder_id or 0) < 0:
                    # our folder/mkdir landed, its answer lost (a kill): ONE folder, which the
                    # writer adopts ("already exists"). Found by the fault soak: shown twice, the
                    # "(dup N)" name was persisted for it, and after a kill the folder was ENOENT
                    self._mark_gone(o)
                else:
                    alt = _dup_name(name, o.file.url) if o.file is not None else f"{name} (dup {o.folder_id})"
                    o.name = alt
                    new[alt] = other
            new[name] = child_ino
        had_listing = parent.listed_at is not None
        parent.children = new
        parent.listed_at = now
        self._touch_dir(ino, listed=True)
        if had_listing:  # names that appeared: drop any negative entry the kernel cached
            for name in new.keys() - old.keys():
                self.notifier.invalidate_entry(ino, name)
        if log.isEnabledFor(logging.DEBUG):
            gone_names = sorted(n for n, c in old.items() if new.get(n) != c)
            log.debug("merged %s listing of folder %s (inode %d): %d entries%s", "persisted" if self._loading else "a",
                      parent.folder_id, ino, len(new), f", gone or changed: {gone_names[:20]}" if gone_names else "")
        kept: set[int] | None = None
        for name, child_ino in old.items():
            if new.get(name) != child_ino:
                self.notifier.invalidate_entry(ino, name)
                if kept is None:
                    kept = set(new.values())  # once, not per changed name (big folders)
                if child_ino not in kept:
                    gone = self._nodes.get(child_ino)
                    if gone is not None and gone.parent == ino:
                        self._mark_gone(gone)
        if self.on_merged is not None and parent.folder_id is not None:
            self.on_merged(int(parent.folder_id))

    def _pinned_here(self, child_ino: int, parent: int, now: float) -> bool:
        c = self._nodes.get(child_ino)
        return c is not None and not c.gone and c.parent == parent and (c.pinned_until > now or c.local_key is not None)

    @staticmethod
    def _is_hidden(table: dict[Any, float], key: Any, now: float) -> bool:
        until = table.get(key)
        if until is None:
            return False
        if until <= now:
            del table[key]
            return False
        return True

    def _folder_node(self, folder_id: int, parent: int, name: str, mtime: float) -> Node:
        ino = self._by_folder.get(folder_id)
        if ino is not None and ino in self._nodes:
            node = self._nodes[ino]
            node.parent, node.name, node.gone = parent, name, False
            node.mtime = mtime or node.mtime
            return node
        node = Node(self._new_ino(folder_id), True, parent, name, folder_id=FolderId(folder_id), mtime=mtime)
        self._nodes[node.ino] = node
        self._by_folder[folder_id] = node.ino
        return node

    def _file_node(self, rf: RemoteFile, parent: int, name: str) -> Node:
        ino = self._by_url.get(rf.url)
        if ino is not None and ino in self._nodes:
            node = self._nodes[ino]
            changed = node.size != rf.size or (node.file is not None and node.file.checksum != rf.checksum)
            node.parent, node.name, node.file, node.gone = parent, name, rf, False
            node.size, node.mtime = rf.size, _epoch(rf.date)
            if changed:
                self.notifier.invalidate_inode(ino)
            return node
        node = Node(self._new_ino(rf.url), False, parent, name, file=rf, size=rf.size, mtime=_epoch(rf.date),
                    children=NO_CHILDREN)
        self._nodes[node.ino] = node
        self._by_url[rf.url] = node.ino
        return node

    def _new_ino(self, key: int | str | None = None) -> int:
        if key is not None and self._preset:
            preset = self._preset.get(key)
            if preset is not None and preset > ROOT_INODE and preset not in self._nodes:
                return preset  # the inode it had at the previous mount (metastore.py)
        ino = self._next_ino
        self._next_ino += 1
        return ino

    def _mark_gone(self, node: Node) -> None:
        node.gone = True
        if node.lookups == 0:
            self._drop(node)
        if node.is_dir:
            for child_ino in list(node.children.values()):
                child = self._nodes.get(child_ino)
                if child is not None and child.parent == node.ino:
                    self._mark_gone(child)

    def _mark_gone_tree(self, node: Node) -> None:
        if node.ino == ROOT_INODE:
            return
        parent = self._nodes.get(node.parent)
        if parent is not None and parent.children.get(node.name) == node.ino:
            del parent.children[node.name]
            self.notifier.invalidate_entry(parent.ino, node.name)
            self._touch_dir(parent.ino)
        self._mark_gone(node)
        if self.store is not None and node.folder_id is not None:
            self.store.forget(int(node.folder_id))

    # ------------------------------------------------------------------ local mutations (writer side)
    # Updates from our own mutations and their replies (§8.6): the cache changes at once,
    # without re-listing. Pinned nodes are protected from lagging listings (see merge).

    def add_node(
        self,
        parent: int,
        name: str,
        *,
        is_dir: bool,
        folder_id: int | None = None,
        file: RemoteFile | None = None,
        local_key: str | None = None,
        size: int = 0,
        mtime: float = 0.0,
        pinned_until: float = math.inf,
    ) -> Node:
        """A new node ``name`` in folder inode ``parent`` (create, mkdir, journal replay)."""
        p = self.get(parent)
        node = Node(
            self._new_ino(), is_dir, parent, name,
            folder_id=None if folder_id is None else FolderId(folder_id),
            file=file, size=size, mtime=mtime, local_key=local_key, pinned_until=pinned_until,
        )
        self._register(node)
        if is_dir and folder_id is not None and folder_id < 0:
            node.listed_at = self.clock()
        p.children[name] = node.ino
        self._touch_dir(parent)
        return node

    def add_orphan(self, parent_folder: int, name: str, **kw: Any) -> Node | None:
        """Like :meth:`add_node` under a folder given by id; if that folder has no node yet,
        the node waits and joins the folder's first listing. None when ``name`` is taken."""
        pino = self._by_folder.get(parent_folder)
        if pino is not None and pino in self._nodes:
            if name in self._nodes[pino].children:
                other = self._nodes[self._nodes[pino].children[name]]
                if other.local_key is not None or other.pinned_until > self.clock():
                    return None
            return self.add_node(pino, name, **kw)
        node = Node(self._new_ino(), kw.pop("is_dir"), 0, name, **{k: v for k, v in kw.items()})
        if node.folder_id is not None:
            node.folder_id = FolderId(node.folder_id)
        self._register(node)
        if node.is_dir and node.folder_id is not None and node.folder_id < 0:
            node.listed_at = self.clock()
        node.parent = -abs(parent_folder) - _ORPHAN_BASE  # placeholder: not a real inode until attached
        self._orphans.setdefault(parent_folder, []).append(node.ino)
        return node

    def attach_orphans(self, folder_ino: int) -> None:
        """Put the orphans waiting for this folder's id into it (its node exists now)."""
        f = self.get(folder_ino)
        for cino in self._orphans.pop(int(f.folder_id or 0), ()):
            c = self._nodes.get(cino)
            if c is not None:
                c.parent = folder_ino
                f.children[c.name] = cino
                self.notifier.invalidate_entry(folder_ino, c.name)
                self._touch_dir(folder_ino)

    def _register(self, node: Node) -> None:
        self._nodes[node.ino] = node
        if node.is_dir and node.folder_id is not None:
            self._by_folder[int(node.folder_id)] = node.ino
        if node.file is not None and node.local_key is None:
            self._by_url[node.file.url] = node.ino

    def detach(self, node: Node, *, tell: bool = True) -> None:
        """Take ``node`` out of its parent's children (no kernel notice: the caller is FUSE)."""
        p = self._nodes.get(node.parent)
        if p is not None and p.children.get(node.name) == node.ino:
            del p.children[node.name]
            self._touch_dir(p.ino)
            if tell:
                self._tell("del", node)

    def remove(self, node: Node) -> None:
        """unlink/rmdir: detach and forget once the kernel has no reference left."""
        self.detach(node)
        node.gone = True
        if node.lookups == 0:
            self._drop(node)

    def move(self, node: Node, new_parent: int, new_name: str, *, pinned_until: float = math.inf) -> None:
        """rename: put ``node`` at ``new_parent``/``new_name`` (an entry there must be removed first)."""
        self.detach(node, tell=False)  # the "put" below moves it on the other mounts (same inode there)
        node.parent, node.name = new_parent, new_name
        self.get(new_parent).children[new_name] = node.ino
        self._touch_dir(new_parent)
        node.pinned_until = max(node.pinned_until, pinned_until)
        self._tell("put", node)

    def set_remote_file(self, node: Node, rf: RemoteFile, *, pinned_until: float) -> None:
        """An upload finished (end.pl links, §6.4/§8.6): the node now is remote file ``rf``."""
        replaced = node.file if node.file is not None and node.file.url != rf.url else None
        if node.file is not None and self._by_url.get(node.file.url) == node.ino:
            del self._by_url[node.file.url]
        if replaced is not None:  # new content of an existing file: the old url leaves the folder
            self._tell_gone(node.parent, replaced.url)
        node.file, node.local_key, node.size = rf, None, rf.size
        node.pinned_until = pinned_until
        self._by_url[rf.url] = node.ino
        self._touch_parent(node)
        self._tell("put", node)

    def _touch_parent(self, node: Node) -> None:
        """The folder holding ``node`` changed; for an orphan (its folder not loaded yet: its
        parent is a placeholder, see :meth:`add_orphan`) that is the folder it waits for."""
        if node.parent in self._nodes:
            self._touch_dir(node.parent)
        elif node.parent <= -_ORPHAN_BASE:
            self.folders_changed([-node.parent - _ORPHAN_BASE])

    def folders_changed(self, folder_ids: Iterable[int]) -> None:
        """Something the journal held for these folders is done (an upload, a move, a mkdir) and
        the journal forgets it: a loaded folder's view is persisted again; the persisted view of
        one not loaded by this mount (its entry waited as an orphan) is marked dirty, re-listed
        before it is served. Found by the fault soak: an upload finished into a folder not loaded
        yet, a kill, and its stale persisted view hid the file."""
        if self.store is None:
            return
        for fid in folder_ids:
            node = self.node_for_folder(fid)
            if node is not None and node.listed_at is not None:
                self._touch_dir(node.ino)
            elif fid >= 0:
                self.store.mark_dirty(fid)

    def set_folder_id(self, node: Node, folder_id: int) -> None:
        """mkdir answered (§2.11 ``folder_id``): a local folder becomes the remote one (a node a
        listing made for that folder meanwhile — an adopted folder — is dropped: one entry)."""
        if node.folder_id is not None and self._by_folder.get(int(node.folder_id)) == node.ino:
            del self._by_folder[int(node.folder_id)]
        other = self._nodes.get(self._by_folder.get(folder_id, 0))
        if other is not None and other is not node:
            p = self._nodes.get(other.parent)
            if p is not None and p.children.get(other.name) == other.ino:
                del p.children[other.name]
                self.notifier.invalidate_entry(p.ino, other.name)
                self._touch_dir(p.ino)
            self._mark_gone(other)
        node.folder_id = FolderId(folder_id)
        self._by_folder[folder_id] = node.ino
        self._touch_parent(node)
        self._touch_dir(node.ino)
        self._tell("put", node, new=True)

    # ------------------------------------------------------------------ changes shared with other mounts
    # A change of ours is told (on_change) as "put" (this entry now has this name in this folder)
    # or "del" (it left this folder); fichierfs.listshare carries it to the other mounts of the
    # account, which apply it to the folders they have listed (apply_shared) instead of re-listing.

    def _tell(self, op: str, node: Node, *, new: bool = False) -> None:
        if self.on_change is None or self._loading:
            return
        parent = self._nodes.get(node.parent)
        if parent is None or parent.folder_id is None or int(parent.folder_id) < 0:
            return
        if node.is_dir:
            if node.folder_id is None or int(node.folder_id) < 0:
                return  # not created remotely yet (mkdir pending): told once it has its id
            key: str | int = int(node.folder_id)
        elif node.file is not None and node.local_key is None:
            key = str(node.file.url)
        else:
            return  # a local staging copy: told once its upload gives it a url
        change: dict[str, Any] = {"op": op, "f": int(parent.folder_id), "k": key, "n": node.name, "t": node.mtime}
        if new:
            change["new"] = True  # a folder 1fichier just created: empty, its content comes as changes
        if op == "put" and node.file is not None:
            rf = node.file
            change["rf"] = [rf.size, None if rf.date is None else rf.date.isoformat(), rf.checksum, rf.content_type,
                            rf.filename]
        self.on_change(change)

    def _tell_gone(self, parent_ino: int, url: str) -> None:
        parent = self._nodes.get(parent_ino)
        if self.on_change is not None and parent is not None and parent.folder_id is not None \
                and int(parent.folder_id) >= 0 and not self._loading:
            self.on_change({"op": "del", "f": int(parent.folder_id), "k": str(url)})

    def apply_shared(self, change: dict[str, Any]) -> bool:
        """Apply a change another mount of the account told (see :meth:`_tell`) to a folder we
        have listed; our own pending or recent changes win (as in :meth:`merge`). True if applied."""
        folder = self.node_for_folder(int(change["f"]))
        if folder is None or folder.listed_at is None or folder.gone or folder.ino in self._incomplete:
            return False  # never listed here: its first listing will show it
        now = self.clock()
        key = change["k"]
        if isinstance(key, int):
            if self._is_hidden(self._hidden_folders, key, now):
                return False
            known = self.node_for_folder(key)
        else:
            if self._is_hidden(self._hidden_urls, key, now):
                return False
            known = self.node_for_url(FileUrl(key))
        if known is not None and (known.pinned_until > now or known.local_key is not None):
            return False
        if change["op"] == "del":
            if known is None or known.parent != folder.ino or folder.children.get(known.name) != known.ino:
                return False
            del folder.children[known.name]
            self.notifier.invalidate_entry(folder.ino, known.name)
            self._touch_dir(folder.ino, listed=True)
            self._mark_gone(known)
            self.shared_applied += 1
            return True
        name = str(change["n"])
        if known is not None:  # moved or renamed: leave its old place
            old = self._nodes.get(known.parent)
            if old is not None and old.children.get(known.name) == known.ino:
                del old.children[known.name]
                self.notifier.invalidate_entry(old.ino, known.name)
                self._touch_dir(old.ino, listed=True)
        taken = folder.children.get(name)
        other = self._nodes.get(taken) if taken is not None and (known is None or taken != known.ino) else None
        if other is not None and not self._pinned_here(other.ino, folder.ino, now):
            # the other mount's newer entry takes the name (as the newest does in a listing); the
            # one here moves aside, and goes when its "del" comes (a replaced file's old url)
            alt = _dup_name(name, other.file.url) if other.file is not None else f"{name} (dup {other.folder_id})"
            del folder.children[name]
            other.name = alt
            folder.children[alt] = other.ino
            self.notifier.invalidate_entry(folder.ino, alt)
            other = None
        if isinstance(key, int):
            if other is not None:
                name = f"{name} (dup {key})"
            child = self._folder_node(key, folder.ino, name, float(change.get("t") or 0.0))
            if change.get("new") and child.listed_at is None:
                child.listed_at = now  # just created (empty): what goes in it comes through this feed
        else:
            size, date, checksum, ctype, filename = change["rf"]
            when = None if date is None else datetime.fromisoformat(date)
            rf = RemoteFile(FileUrl(key), str(filename), int(size), when, checksum, ctype,
                            folder_id=FolderId(int(change["f"])))
            if other is not None:  # our own pending entry keeps the name
                name = _dup_name(name, key)
            child = self._file_node(rf, folder.ino, name)
        folder.children[name] = child.ino
        self.notifier.invalidate_entry(folder.ino, name)
        self._touch_dir(folder.ino, listed=True)
        self.shared_applied += 1
        return True

    def node_for_folder(self, folder_id: int) -> Node | None:
        ino = self._by_folder.get(folder_id)
        return None if ino is None else self._nodes.get(ino)

    def hide_url(self, url: str, until: float = math.inf) -> None:
        """Leave ``url`` out of listings until ``until`` (a pending or recent delete)."""
        self._hidden_urls[url] = until

    def hide_folder(self, folder_id: int, until: float = math.inf) -> None:
        self._hidden_folders[folder_id] = until

    def shadow(self, folder_id: int, remote_name: str, size: int, on: bool = True) -> None:
        """Hide unknown files named ``remote_name`` of ``size`` bytes in a folder: an upload of
        ours is in flight (or was, before a crash) and its result is not known yet."""
        if on:
            self._shadows.add((folder_id, remote_name, size))
        else:
            self._shadows.discard((folder_id, remote_name, size))

    def pin(self, node: Node, until: float) -> None:
        node.pinned_until = until

    def set_size(self, node: Node, size: int) -> None:
        """A local write or truncate changed the file's size (the staging copy is the truth)."""
        node.size = size

    def set_local(self, node: Node, local_key: str, size: int) -> None:
        """The file's content is now a local staging copy ``local_key`` of ``size`` bytes."""
        node.local_key = local_key
        node.size = size

    # ------------------------------------------------------------------ look-ups that may list
    async def lookup(self, parent: int, name: str, *, lane: Lane = Lane.INTERACTIVE) -> Node:
        """The child ``name`` of folder ``parent`` (listing the folder if it never was).

        Raises:
            NoEntry (ENOENT): no such name in the (possibly cached) listing.
        """
        p = await self.ensure_listed(parent, lane=lane)
        if not p.is_dir:
            raise NoEntry(f"inode {parent} is not a folder")
        node = self.get_nowait(parent, name)
        if node is None and (parent in self._incomplete or parent in self._complete_failed):
            node = await self._lookup_unseen(p, name, lane)  # never ENOENT for a file not seen yet
        if node is None:
            raise NoEntry(f"{name!r} not in folder inode {parent}")
        return node

    async def _lookup_unseen(self, p: Node, name: str, lane: Lane) -> Node | None:
        """A name not seen (yet) in folder ``p``, whose capped listing is being completed.

        Rule (NOTES.md, issue 13): ask 1fichier for that very name — ONE ``file/info`` by
        ``folder_id`` + ``filename`` (§2.4): the general 3/s budget, never a listing's 30 s per
        folder, so it answers in about a second even at the real limits, where the folder's
        completion takes one 31 s window per 5,000 files. The file it names is added to the
        partial listing (same url → same inode once complete); #469 is 1fichier's own "no such
        file in that folder": ENOENT, remembered until the folder is complete. Only when the
        question cannot be asked (a flood lock, no network, sub-folders cut by the cap, a
        `` (dup …)`` name meta gives a duplicate) does the lookup wait for the completion, and
        gets EAGAIN after the stall limit.
        """
        from fichierfs.names import NameError_, encode

        if name in self._absent.get(p.ino, ()):
            return None
        try:
            remote = encode(name)
        except NameError_:
            return None  # not a name 1fichier can hold
        if p.ino not in self._subs_cut and " (dup " not in name:  # a dup name is ours (_dup_name), not 1fichier's
            progress = self._progress.get(p.ino)
            # in the lane of the folder's windows, behind them: back-to-back lookups (cp -r of new
            # files) must not hold the windows back (a lane is served first come, first served)
            probe_lane = progress.lane if progress is not None else lane
            try:
                self.probes += 1
                with trio.fail_after(self._stall_limit()):
                    rf: RemoteFile = await self.scheduler.call(
                        self.scheduler.client.file_info_by_name, int(p.folder_id or 0), remote, lane=probe_lane)
            except trio.TooSlowError:
                raise Incomplete(f"{self.path_of(p.ino)} is still being listed (over {CAP} files) and "
                                 f"{name!r} could not be asked within the stall limit") from None
            except NotFound:
                if p.ino in self._incomplete or p.ino in self._complete_failed:
                    self._absent.setdefault(p.ino, set()).add(name)
                return self.get_nowait(p.ino, name)
            except FichierError as exc:
                log.info("%s: %r could not be asked by name (%s): waiting for the folder's listing",
                         self.path_of(p.ino), name, exc)
            else:
                known = self.get_nowait(p.ino, name)  # completed (or created) meanwhile
                if known is not None:
                    return known
                if rf.folder_id is not None and int(rf.folder_id) != int(p.folder_id or 0):
                    return None
                if self._is_hidden(self._hidden_urls, rf.url, self.clock()):
                    return None  # deleted here, the delete is pending
                node = self._file_node(rf, p.ino, name)
                p.children[name] = node.ino
                return node
        await self.wait_complete(p.ino)
        return self.get_nowait(p.ino, name)

    async def resolve_path(self, path: str, *, lane: Lane = Lane.INTERACTIVE) -> Node:
        """Walk ``/a/b`` from the root (used once at mount for ``--remote-folder``).

        Raises:
            NoEntry (ENOENT): a component is missing or is a file.
        """
        node = self.get(ROOT_INODE)
        for part in [p for p in path.split("/") if p]:
            node = await self.lookup(node.ino, part, lane=lane)
            if not node.is_dir:
                raise NoEntry(f"{path}: {part!r} is a file")
        return node

    def rebase(self, node: Node | int) -> None:
        """Make folder ``node`` (or a folder id) the root inode (for ``--remote-folder``); forgets everything else."""
        folder_id = node if isinstance(node, int) else int(node.folder_id or 0)
        self._nodes.clear()
        self._by_folder.clear()
        self._by_url.clear()
        root = Node(ROOT_INODE, True, ROOT_INODE, "", folder_id=FolderId(folder_id), lookups=1)
        self._nodes[ROOT_INODE] = root
        self._by_folder[folder_id] = ROOT_INODE

    # ------------------------------------------------------------------ freshness on demand
    def forget_listing(self, ino: int) -> None:
        """``fichierfs forget``: the listing of folder ``ino`` is no longer trusted.

        It is still served (never an empty folder) but counts as stale and its persisted copy
        is dropped; the next use re-lists it in the background.
        """
        node = self.get(ino)
        if not node.is_dir:
            raise NoEntry(f"inode {ino} is not a folder")
        if node.listed_at is not None:
            node.listed_at = -math.inf
        if self.store is not None and node.folder_id is not None:
            self.store.forget(int(node.folder_id))

    async def refresh_tree(self, ino: int, *, recursive: bool = False, lane: Lane = Lane.INTERACTIVE) -> int:
        """``fichierfs refresh [-r]``: re-list folder ``ino`` now (and, recursively, every known
        listed sub-folder, under the budget). Returns the number of listings made."""
        node = self.get(ino)
        if not node.is_dir:
            ino = node.parent
        todo = [ino]
        n = 0
        while todo:
            cur = todo.pop(0)
            await self.refresh(cur, lane=lane, fresh=True)
            n += 1
            if recursive:
                todo.extend(c.ino for c in self.children(cur) if c.is_dir and int(c.folder_id or 0) >= 0)
        return n

    async def prefetch_tree(self) -> None:
        """``--prefetch-tree``: list every folder not freshly listed (breadth first, BACKGROUND lane:
        after anything a person is waiting for). Errors are logged and the walk goes on."""
        todo = [ROOT_INODE]
        while todo:
            cur = todo.pop(0)
            node = self._nodes.get(cur)
            if node is None or not node.is_dir or node.gone:
                continue
            if node.listed_at is None or not self.is_fresh(node):
                try:
                    await self.refresh(cur, lane=Lane.BACKGROUND)
                except FichierError as exc:
                    log.log(exc.level, "prefetch of %s failed: %s", self.path_of(cur), exc)
            todo.extend(c.ino for c in self.children(cur) if c.is_dir)
        log.info("prefetch: the whole tree is listed (%d inodes)", len(self._nodes))

    def statistics(self) -> dict[str, Any]:
        """Inodes known, folders listed, listings made."""
        return {
            "inodes": len(self._nodes),
            "folders_listed": sum(1 for n in self._nodes.values() if n.is_dir and n.listed_at is not None),
            "listings": self.listings,
            "window_listings": self.window_calls,
            "incomplete_folders": len(self._incomplete),
            "shared_changes_applied": self.shared_applied,
            "incomplete": self.incomplete(),
            "lookups_by_name": self.probes,
        }

    def node_for_url(self, url: FileUrl) -> Node | None:
        ino = self._by_url.get(url)
        return None if ino is None else self._nodes.get(ino)
