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

A change is told when the metadata changes (a rename or delete as soon as it is accepted, an
upload or mkdir when 1fichier gave its url or id): the other mounts show what this one shows.
A mount that never listed the folder lists it when it needs it, as before. While the coordinator
is unreachable nothing is told; the others see the changes at their next listing.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from fichierfs.budget import SharedBudget
from fichierfs.meta import MetaCache

__all__ = ["ListShare"]

log = logging.getLogger(__name__)


class ListShare:
    """Publishes ``meta``'s changes in ``scope``'s feed and applies the other mounts'; ``nursery.start(share.run)``."""

    def __init__(self, meta: MetaCache, shared: SharedBudget, scope: str, *, period: float = 0.5) -> None:
        self._meta = meta
        self._shared = shared
        self._feed = f"listing:{scope}"
        self._period = period
        self._send, self._recv = trio.open_memory_channel[dict[str, Any]](100000)
        self.published = 0
        self.received = 0
        meta.on_change = self._changed

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
        for change in changes:
            try:
                if self._meta.apply_shared(change):
                    self.received += 1
            except (KeyError, TypeError, ValueError) as exc:
                log.debug("folder change %r not applied: %s", change, exc)
        return new

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
        return {"published": self.published, "applied": self.received}
