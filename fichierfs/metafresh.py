"""Freshness of listings (part of MetaCache): stale-while-revalidate and kernel timeouts.

A listing is fresh for ``dir_ttl`` seconds; a stale one is served at once and re-listed in
the background (1fichier lists a folder once per 30 s, §4); only a folder never listed makes
the caller wait. The kernel may cache an entry for what is left of its listing's freshness.
Also the look-ups that may list (``lookup``, ``resolve_path``) and the on-demand re-listings
(``fichierfs forget/refresh``, ``--prefetch-tree``).
"""


from __future__ import annotations

import logging
import math

import trio

from fichierfs.bigfolder import is_capped
from fichierfs.errors import FichierError, NoEntry, NotFound
from fichierfs.inodes import (
    ROOT_INODE,
    Node,
)
from fichierfs.metabig import BigFolders
from fichierfs.models import FolderListing
from fichierfs.scheduler import Lane

log = logging.getLogger("fichierfs.meta")  # one logger for the metadata cache, whatever part logs


class Freshness(BigFolders):
    """Listing on demand, in the background, and how long answers may be cached (module doc)."""

    def attach_nursery(self, nursery: trio.Nursery | None) -> None:
        """Give the cache a nursery for background refreshes of stale listings (None: refresh inline)."""
        self._background = nursery

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
