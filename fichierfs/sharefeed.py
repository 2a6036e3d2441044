"""The loop both feeds between mounts share (:mod:`fichierfs.listshare`, :mod:`fichierfs.attrshare`).

Local changes are queued without waiting (a full queue drops the change: the other mounts learn it at
their next listing) and published in batches; the other mounts' changes are pulled every ``period``
seconds from a cursor. Sharing is best effort: a coordinator that is away costs a debug line, never an
error in a file operation.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

import trio

__all__ = ["SharedFeed"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SharedFeed(Generic[T]):
    """Publish queued changes, pull the others'; subclasses say how (``_start``, ``_pull``, ``_publish``).

    Args:
        what: the changes' name in log lines ("folder changes", "attributes").
        period: seconds between two pulls.
        queue: changes that may wait to be published.
        gather: seconds the publisher waits after a first change, so that a burst (rsync, tar -x) goes out
            in one write.
    """

    def __init__(self, what: str, *, period: float, queue: int, gather: float = 0.0) -> None:
        self._what = what
        self._period = period
        self._gather = gather
        self._send, self._recv = trio.open_memory_channel[T](queue)
        self.published = 0

    def _offer(self, change: T) -> None:
        try:
            self._send.send_nowait(change)
        except trio.WouldBlock:
            log.debug("%s queue full: one change not shared (the others see it at their next listing)", self._what)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            cursor = await self._start()
        except Exception:  # noqa: BLE001 - sharing is best effort
            log.debug("%s not read", self._what, exc_info=True)
            cursor = ""
        task_status.started()
        async with trio.open_nursery() as n:
            n.start_soon(self._publisher)
            while True:
                await trio.sleep(self._period)
                try:
                    cursor = await self._pull(cursor)
                except Exception:  # noqa: BLE001
                    log.debug("%s not read", self._what, exc_info=True)

    async def _publisher(self) -> None:
        while True:
            batch = [await self._recv.receive()]
            if self._gather:
                await trio.sleep(self._gather)
            while True:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            try:
                self.published += await self._publish(batch)
            except Exception:  # noqa: BLE001
                log.debug("%s not published", self._what, exc_info=True)

    async def _start(self) -> str:
        """The first cursor (and whatever is applied before the mount is live)."""
        raise NotImplementedError

    async def _pull(self, cursor: str) -> str:
        """Apply the changes after ``cursor``; the new cursor."""
        raise NotImplementedError

    async def _publish(self, batch: list[T]) -> int:
        """Publish ``batch`` (in order); how many changes went out."""
        raise NotImplementedError
