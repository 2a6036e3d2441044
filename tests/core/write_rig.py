"""A vfs with the write side over the in-process emulator; "mounts" come and go over one store.

``Rig.mount()`` builds the core with the product's own :func:`fichierfs.core.build_core` (as
``mount.py`` does: journal replay, root listing) and tears it down like a crash (no drain):
the next ``mount()`` over the same cache dir is a remount after ``kill -9``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import trio

from fichierfs.budget import SharedBudget
from fichierfs.config import Options
from fichierfs.core import build_core
from fichierfs.meta import ROOT_INODE
from fichierfs.scheduler import Budgets
from fichierfs.vfs import Filesystem

MiB = 1 << 20


class Crash(BaseException):
    """A "kill -9" of a rig mount: raised by a test or a crash point to end the mount without draining."""


@contextmanager
def killed() -> Iterator[None]:
    """Expect the block (a rig mount) to end with :class:`Crash`, alone or in trio's exception group. Anything
    else it raises, a failed assertion before the kill included, propagates (``pytest.raises(BaseException)``
    swallowed those), and a block that ends without the kill fails."""
    try:
        yield
    except Crash:
        return
    except BaseExceptionGroup as group:
        crash, rest = group.split(Crash)
        if rest is not None:
            raise rest from None
        if crash is None:
            raise
        return
    raise AssertionError("the mount was expected to end with a kill (Crash)")


class Rig:
    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        api_key: str,
        cache: Path,
        *,
        delay: float = 3.0,
        dir_ttl: float = 600.0,
    ) -> None:
        self.transport = transport
        self.api_key = api_key
        self.cache = cache
        self.options = Options(
            memory_budget=16 * MiB,
            chunk_size=256 << 10,
            readahead_max=4 * MiB,
            dir_cache_time=dir_ttl,
            write_back_delay=delay,
        )

    @asynccontextmanager
    async def mount(self, *, budgets: Budgets | None = None, run_writer: bool = True,
                    shared: SharedBudget | None = None) -> AsyncIterator[Filesystem]:
        # a new process does not know when the last one listed the root: let the per-folder
        # listing window (30 s, §4) pass as a real remount would
        await trio.sleep(31)
        async with build_core(
            self.options,
            self.transport,
            self.api_key,
            store_dir=self.cache,
            budgets=budgets,
            start_writer=run_writer,
            writer_retry=(1.0, 20.0),
            shared=shared,
            account="rig",
        ) as core:
            yield core.fs


async def write_file(fs: Filesystem, parent: int, name: str, data: bytes, *, chunk: int = 128 << 10) -> int:
    """create + write + flush + release; returns the inode."""
    fh, attr = await fs.create(parent, name, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for off in range(0, len(data), chunk):
        fs.write(fh, off, data[off : off + chunk])
    await fs.flush(fh)
    fs.release(fh)
    return attr.ino


async def read_all(fs: Filesystem, ino: int) -> bytes:
    fh = await fs.open(ino, os.O_RDONLY)
    out = bytearray()
    try:
        while True:
            piece = await fs.read(fh, len(out), 1 << 20)
            if not piece:
                return bytes(out)
            out += piece
    finally:
        fs.release(fh)


async def names(fs: Filesystem, ino: int = ROOT_INODE) -> list[str]:
    fh = await fs.opendir(ino)
    try:
        return [e.name for e in fs.readdir(fh, 0)]
    finally:
        fs.releasedir(fh)


async def sync(fs: Filesystem) -> None:
    assert fs.writer is not None
    await fs.writer.wait_drained()
