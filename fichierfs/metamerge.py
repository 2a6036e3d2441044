"""Listings merged into the inode table, and the merged view persisted (part of MetaCache).

A re-list is diffed against the previous one: names that went away or now point elsewhere
are invalidated in the kernel, nodes whose size or date changed get ``invalidate_inode``.
Local changes win over a lagging listing (§8.6): pinned nodes keep their place, hidden
urls/folders are left out. Duplicate names are shown deterministically (module doc of
:mod:`fichierfs.meta`). The view of each changed folder is queued in the
:class:`~fichierfs.metastore.MetaStore` (a folder we changed is marked dirty first).
"""


from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from fichierfs.inodes import (
    ROOT_INODE,
    InodeTable,
    Node,
    _dup_name,
    _epoch,
    _from_epoch,
    _remote_name,
)
from fichierfs.metastore import MetaStore, Snapshot
from fichierfs.models import FolderId, FolderListing, RemoteFile, RemoteFolder
from fichierfs.names import decode

log = logging.getLogger("fichierfs.meta")  # one logger for the metadata cache, whatever part logs


class ListingMerge(InodeTable):
    """Merging listings and persisting the merged view (see module docstring)."""

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

    def _take_out(self, node: Node, *, listed: bool = False) -> None:
        """Take ``node`` out of its parent's children (if it is still there) and tell the kernel: a change
        that did not come through FUSE (a listing, another mount, an adopted folder)."""
        parent = self._nodes.get(node.parent)
        if parent is not None and parent.children.get(node.name) == node.ino:
            del parent.children[node.name]
            self.notifier.invalidate_entry(parent.ino, node.name)
            self._touch_dir(parent.ino, listed=listed)

    def _mark_gone_tree(self, node: Node) -> None:
        if node.ino == ROOT_INODE:
            return
        self._take_out(node)
        self._mark_gone(node)
        if self.store is not None and node.folder_id is not None:
            self.store.forget(int(node.folder_id))

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
