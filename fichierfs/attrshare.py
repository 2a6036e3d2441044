"""Attributes set on one mount (``touch -d``, ``chmod``, ``rsync -a``, ``tar -x``) seen on the others.

1fichier keeps no mtime or mode (§2.2–§2.4); each mount keeps them in its journal
(:class:`~fichierfs.store.Store`). With a coordinator they are also published through the
:class:`~fichierfs.budget.SharedBudget` (a Redis stream, or the host file), and every mount
applies the others' changes to its own store, so ``rsync -a`` from a second machine finds the
times it would have set and transfers nothing it need not.

Only keys that name the same thing everywhere are shared: file urls and ``d:<folder id>``
(not ``local:…`` rows of files still being uploaded; their attributes are published once the
upload gives them a url). ``ctime`` stays local.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from fichierfs.budget import SharedBudget
from fichierfs.store import LocalAttrs, Store

__all__ = ["AttrShare"]

log = logging.getLogger(__name__)

SHARED_FIELDS = ("mtime_ns", "mode", "uid", "gid")


def _shareable(key: str) -> bool:
    return key.startswith(("http://", "https://")) or (key.startswith("d:") and key[2:].isdigit())


class AttrShare:
    """Publishes this store's attribute changes and applies the other mounts'; ``nursery.start(share.run)``."""

    def __init__(self, store: Store, shared: SharedBudget, *, period: float = 1.0,
                 on_applied: Callable[[str], None] = lambda key: None) -> None:
        self._store = store
        self._on_applied = on_applied  # the mount drops the kernel's cached attributes of that key
        self._shared = shared
        self._period = period
        self._send, self._recv = trio.open_memory_channel[tuple[str, dict[str, int | None]]](10000)
        self._applying = False
        self.published = 0
        self.applied = 0
        store.on_attrs = self._changed

    def _changed(self, key: str, attrs: LocalAttrs) -> None:
        if self._applying or not _shareable(key):
            return
        values = {f: getattr(attrs, f) for f in SHARED_FIELDS}
        if all(v is None for v in values.values()):
            return
        try:
            self._send.send_nowait((key, values))
        except trio.WouldBlock:
            log.debug("attribute share queue full: %s stays local", key)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cursor = await self._pull("")  # what the other mounts set while this one was away
        task_status.started()
        async with trio.open_nursery() as n:
            n.start_soon(self._publisher)
            while True:
                await trio.sleep(self._period)
                cursor = await self._pull(cursor)

    async def _pull(self, cursor: str) -> str:
        try:
            cursor, changes = await self._shared.attrs_since(cursor)
        except Exception:  # noqa: BLE001 - sharing is best effort; the journal keeps our own
            log.debug("shared attributes not read", exc_info=True)
            return cursor
        if changes:
            self._applying = True
            try:
                for key, values in changes:
                    self._store.set_attrs(key, durable=False, **{f: values.get(f) for f in SHARED_FIELDS
                                                                 if values.get(f) is not None})
                self._store.commit()
                for key, _ in changes:
                    self._on_applied(key)
            finally:
                self._applying = False
            self.applied += len(changes)
        return cursor

    async def _publisher(self) -> None:
        while True:
            key, values = await self._recv.receive()
            batch: dict[str, dict[str, int | None]] = {key: values}
            while True:
                try:
                    k, v = self._recv.receive_nowait()
                except trio.WouldBlock:
                    break
                batch[k] = v
            try:
                await self._shared.publish_attrs(batch)
                self.published += len(batch)
            except Exception:  # noqa: BLE001
                log.debug("attributes not published", exc_info=True)

    def statistics(self) -> dict[str, Any]:
        return {"published": self.published, "applied": self.applied}
