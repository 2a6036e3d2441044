"""Local mutations of the inode table (part of MetaCache): the writer side's changes.

Updates from our own mutations and their replies (§8.6): the cache changes at once, without
re-listing. Pinned nodes are protected from lagging listings (:mod:`fichierfs.metamerge`).
Entries of folders not listed yet wait as orphans and join the folder's first listing.
"""


from __future__ import annotations

import math
from typing import Any

from fichierfs.inodes import (
    _ORPHAN_BASE,
    Node,
)
from fichierfs.metashare import SharedChanges
from fichierfs.models import FolderId, RemoteFile


class LocalChanges(SharedChanges):
    """create/mkdir/unlink/rename and upload/mkdir answers applied to the table (module doc)."""

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

    def set_folder_id(self, node: Node, folder_id: int) -> None:
        """mkdir answered (§2.11 ``folder_id``): a local folder becomes the remote one (a node a
        listing made for that folder meanwhile — an adopted folder — is dropped: one entry)."""
        if node.folder_id is not None and self._by_folder.get(int(node.folder_id)) == node.ino:
            del self._by_folder[int(node.folder_id)]
        other = self._nodes.get(self._by_folder.get(folder_id, 0))
        if other is not None and other is not node:
            self._take_out(other)
            self._mark_gone(other)
        node.folder_id = FolderId(folder_id)
        self._by_folder[folder_id] = node.ino
        self._touch_parent(node)
        self._touch_dir(node.ino)
        self._tell("put", node, new=True)
