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

from fichierfs.budget import SharedBudget
from fichierfs.sharefeed import SharedFeed
from fichierfs.store import LocalAttrs, Store

__all__ = ["AttrShare"]

log = logging.getLogger(__name__)

SHARED_FIELDS = ("mtime_ns", "mode", "uid", "gid")


def _shareable(key: str) -> bool:
    return key.startswith(("http://", "https://")) or (key.startswith("d:") and key[2:].isdigit())


class AttrShare(SharedFeed[tuple[str, dict[str, int | None]]]):
    """Publishes this store's attribute changes and applies the other mounts'; ``nursery.start(share.run)``."""

    def __init__(self, store: Store, shared: SharedBudget, *, period: float = 1.0,
                 on_applied: Callable[[str], None] = lambda key: None) -> None:
        super().__init__("attributes", period=period, queue=10000)
        self._store = store
        self._on_applied = on_applied  # the mount drops the kernel's cached attributes of that key
        self._shared = shared
        self._applying = False
        self.applied = 0
        store.on_attrs = self._changed

    def _changed(self, key: str, attrs: LocalAttrs) -> None:
        if self._applying or not _shareable(key):
            return
        values = {f: getattr(attrs, f) for f in SHARED_FIELDS}
        if any(v is not None for v in values.values()):
            self._offer((key, values))

    async def _start(self) -> str:
        return await self._pull("")  # what the other mounts set while this one was away

    async def _pull(self, cursor: str) -> str:
        cursor, changes = await self._shared.attrs_since(cursor)
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

    async def _publish(self, batch: list[tuple[str, dict[str, int | None]]]) -> int:
        latest = dict(batch)  # the last values of each key
        await self._shared.publish_attrs(latest)
        return len(latest)

    def statistics(self) -> dict[str, Any]:
        return {"published": self.published, "applied": self.applied}
