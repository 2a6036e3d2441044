"""The inode table of :class:`fichierfs.meta.MetaCache`: nodes and their indexes.

A :class:`Node` per inode, found by inode, by ``folder_id`` (folders) and by ``url`` (files,
§7: the url is a file's identity), so inodes are stable across re-listings; the kernel's
lookup counts (a node gone remotely stays until the kernel forgets it); the tables of urls and
folders hidden from listings (pending or recent local changes) and of uploads in flight.
:class:`InodeTable` also holds the state every part of the cache shares; the parts build on
it one over the other (metamerge → metashare → metalocal → metabig → metafresh → meta).
"""


from __future__ import annotations

import math
import stat as stat_mod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import trio

from fichierfs.attrs import AttrOverlay
from fichierfs.bigfolder import CAP
from fichierfs.errors import NoEntry
from fichierfs.metastore import MetaStore
from fichierfs.models import FileUrl, FolderId, RemoteFile
from fichierfs.scheduler import ApiCaller, Lane

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



class InodeTable:
    """The inode table and the state shared by the parts of :class:`fichierfs.meta.MetaCache`
    (its constructor's arguments are documented there)."""

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

    def __len__(self) -> int:
        return len(self._nodes)

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

    def _register(self, node: Node) -> None:
        self._nodes[node.ino] = node
        if node.is_dir and node.folder_id is not None:
            self._by_folder[int(node.folder_id)] = node.ino
        if node.file is not None and node.local_key is None:
            self._by_url[node.file.url] = node.ino

    def _new_ino(self, key: int | str | None = None) -> int:
        if key is not None and self._preset:
            preset = self._preset.get(key)
            if preset is not None and preset > ROOT_INODE and preset not in self._nodes:
                return preset  # the inode it had at the previous mount (metastore.py)
        ino = self._next_ino
        self._next_ino += 1
        return ino

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

    def _mark_gone(self, node: Node) -> None:
        node.gone = True
        if node.lookups == 0:
            self._drop(node)
        if node.is_dir:
            for child_ino in list(node.children.values()):
                child = self._nodes.get(child_ino)
                if child is not None and child.parent == node.ino:
                    self._mark_gone(child)

    def node_for_folder(self, folder_id: int) -> Node | None:
        ino = self._by_folder.get(folder_id)
        return None if ino is None else self._nodes.get(ino)

    def node_for_url(self, url: FileUrl) -> Node | None:
        ino = self._by_url.get(url)
        return None if ino is None else self._nodes.get(ino)

    def rebase(self, node: Node | int) -> None:
        """Make folder ``node`` (or a folder id) the root inode (for ``--remote-folder``); forgets everything else."""
        folder_id = node if isinstance(node, int) else int(node.folder_id or 0)
        self._nodes.clear()
        self._by_folder.clear()
        self._by_url.clear()
        root = Node(ROOT_INODE, True, ROOT_INODE, "", folder_id=FolderId(folder_id), lookups=1)
        self._nodes[ROOT_INODE] = root
        self._by_folder[folder_id] = ROOT_INODE

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
