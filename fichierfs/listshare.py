"""Folder changes made on one mount applied on the others, without re-listing (issue 14).

1fichier allows one listing of a folder per 30 s (§4), and a mount keeps a listing
``dir_ttl`` seconds: without help, a file created, renamed or removed through mount A shows
on mount B of the same account only when B re-lists. Every remote change A's metadata makes
(:meth:`~fichierfs.meta.MetaCache._tell`: "put" = this file or folder now has this name in
this folder, "del" = it left this folder) is published through the
:class:`~fichierfs.budget.SharedBudget` (a table of the host file, or a Redis stream) in the
account's feed; every mount pulls the feed every ``period`` seconds and applies the changes
to the folders it has listed (:meth:`~fichierfs.meta.MetaCache.apply_shared`), dropping the
kernel's cached entries. Changes are small deltas, applied in order, so two mounts changing one
folder at once never hide each other's change; our own pending changes win, as over a listing.

A listing may have left 1fichier before another mount's change and land after it (or be another
mount's shared copy from just before): the changes received in the last ``replay`` seconds that
concern the folder are applied again, in order, after each listing merged into it.

A change is told when the metadata changes (a rename or delete as soon as it is accepted, an
upload or mkdir when 1fichier gave its url or id): the other mounts show what this one shows.
A mount that never listed the folder lists it when it needs it, as before. While the coordinator
is unreachable nothing is told; the others see the changes at their next listing.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from fichierfs.budget import SharedBudget
from fichierfs.meta import MetaCache
from fichierfs.models import FileUrl
from fichierfs.sharefeed import SharedFeed

__all__ = ["ListShare"]

log = logging.getLogger(__name__)


class ListShare(SharedFeed[dict[str, Any]]):
    """Publishes ``meta``'s changes in ``scope``'s feed and applies the other mounts'; ``nursery.start(share.run)``."""

    def __init__(self, meta: MetaCache, shared: SharedBudget, scope: str, *, period: float = 0.5,
                 replay: float = 65.0) -> None:
        super().__init__("folder changes", period=period, queue=100000, gather=0.05)
        self._meta = meta
        self._shared = shared
        self._feed = f"listing:{scope}"
        self._replay = replay
        self._recent: deque[tuple[float, dict[str, Any]]] = deque(maxlen=20000)
        self.received = 0
        self.replayed = 0
        meta.on_change = self._offer
        meta.on_merged = self._merged

    async def _start(self) -> str:
        cursor, _ = await self._shared.feed_since(self._feed, "")  # from now: older changes are in listings
        return cursor

    async def _pull(self, cursor: str) -> str:
        new, changes = await self._shared.feed_since(self._feed, cursor or "0")
        now = self._meta.clock()
        for change in changes:
            self._recent.append((now, change))
            if self._apply(change):
                self.received += 1
        return new

    async def _publish(self, batch: list[dict[str, Any]]) -> int:
        await self._shared.publish_feed(self._feed, batch)
        return len(batch)

    def _apply(self, change: dict[str, Any]) -> bool:
        try:
            return self._meta.apply_shared(change)
        except (KeyError, TypeError, ValueError) as exc:
            log.debug("folder change %r not applied: %s", change, exc)
            return False

    def _merged(self, folder_id: int) -> None:
        """A listing of ``folder_id`` was merged: the recent changes of that folder win over it."""
        horizon = self._meta.clock() - self._replay
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        folder = self._meta.node_for_folder(folder_id)
        if folder is None:
            return
        folders = {folder_id}  # and the folders created in it since, with what went in them
        for _, change in list(self._recent):
            if change.get("f") in folders or self._in_folder(change.get("k"), folder.ino):
                self.replayed += self._apply(change)
                if change.get("op") == "put" and isinstance(change.get("k"), int):
                    folders.add(change["k"])

    def _in_folder(self, key: Any, ino: int) -> bool:
        node = self._meta.node_for_folder(key) if isinstance(key, int) else \
            self._meta.node_for_url(FileUrl(str(key))) if key is not None else None
        return node is not None and node.parent == ino

    def statistics(self) -> dict[str, Any]:
        return {"published": self.published, "applied": self.received, "replayed": self.replayed}
