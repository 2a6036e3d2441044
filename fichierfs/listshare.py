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

import trio

from fichierfs.budget import SharedBudget
from fichierfs.meta import MetaCache
from fichierfs.models import FileUrl

__all__ = ["ListShare"]

log = logging.getLogger(__name__)


class ListShare:
    """Publishes ``meta``'s changes in ``scope``'s feed and applies the other mounts'; ``nursery.start(share.run)``."""

    def __init__(self, meta: MetaCache, shared: SharedBudget, scope: str, *, period: float = 0.5,
                 replay: float = 65.0) -> None:
        self._meta = meta
        self._shared = shared
        self._feed = f"listing:{scope}"
        self._period = period
        self._replay = replay
        self._recent: deque[tuple[float, dict[str, Any]]] = deque(maxlen=20000)
        self._send, self._recv = trio.open_memory_channel[dict[str, Any]](100000)
        self.published = 0
        self.received = 0
        self.replayed = 0
        meta.on_change = self._changed
        meta.on_merged = self._merged

    def _changed(self, change: dict[str, Any]) -> None:
        try:
            self._send.send_nowait(change)
        except trio.WouldBlock:
            log.debug("folder change queue full: the other mounts see it at their next listing")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cursor = ""
        try:
            cursor, _ = await self._shared.feed_since(self._feed, "")  # from now: older changes are in listings
        except Exception:  # noqa: BLE001 - sharing is best effort
            log.debug("folder change feed not read", exc_info=True)
        task_status.started()
        async with trio.open_nursery() as n:
            n.start_soon(self._publisher)
            while True:
                await trio.sleep(self._period)
                cursor = await self._pull(cursor)

    async def _pull(self, cursor: str) -> str:
        try:
            new, changes = await self._shared.feed_since(self._feed, cursor or "0")
        except Exception:  # noqa: BLE001
            log.debug("folder change feed not read", exc_info=True)
            return cursor
        now = self._meta.clock()
        for change in changes:
            self._recent.append((now, change))
            if self._apply(change):
                self.received += 1
        return new

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

    async def _publisher(self) -> None:
        while True:
            batch = [await self._recv.receive()]
            await trio.sleep(0.05)  # a burst (rsync, tar -x) goes out in one write
            while True:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                await self._shared.publish_feed(self._feed, batch)
                self.published += len(batch)
            except Exception:  # noqa: BLE001
                log.debug("folder changes not published", exc_info=True)

    def statistics(self) -> dict[str, Any]:
        return {"published": self.published, "applied": self.received, "replayed": self.replayed}
