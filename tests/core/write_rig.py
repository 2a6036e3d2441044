"""A vfs with the write side over the in-process emulator; "mounts" come and go over one store.

``Rig.mount()`` builds scheduler → meta → reader → store → writeback → Filesystem like
``mount.py`` does (journal replay included) and tears it down like a crash (no drain): the
next ``mount()`` over the same cache dir is a remount after ``kill -9``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from fichierfs.api import FichierClient
from fichierfs.chunks import ChunkCache
from fichierfs.meta import ROOT_INODE, MetaCache
from fichierfs.reader import ReadManager
from fichierfs.scheduler import Budgets, Scheduler
from fichierfs.store import Store
from fichierfs.vfs import Filesystem
from fichierfs.writer import WriteBack

MiB = 1 << 20


class Rig:
    def __init__(self, client: FichierClient, cache: Path, *, delay: float = 3.0, dir_ttl: float = 600.0) -> None:
        self.client = client
        self.cache = cache
        self.delay = delay
        self.dir_ttl = dir_ttl

    @asynccontextmanager
    async def mount(self, *, budgets: Budgets | None = None, run_writer: bool = True) -> AsyncIterator[Filesystem]:
        # a new process does not know when the last one listed the root: let the per-folder
        # listing window (30 s, §4) pass as a real remount would
        await trio.sleep(31)
        sched = Scheduler(self.client, budgets or Budgets(stall_limit=30))
        chunks = ChunkCache(16 * MiB, 256 << 10)
        async with trio.open_nursery() as n:
            await n.start(sched.run)
            rm = ReadManager(sched, chunks, readahead_max=4 * MiB)
            await n.start(rm.run)
            meta = MetaCache(sched, 0, dir_ttl=self.dir_ttl)
            meta.attach_nursery(n)
            store = Store(self.cache / "store.db")
            wb = WriteBack(sched, store, meta, self.cache, delay=self.delay, retry_base=1.0, retry_max=20.0)
            wb.replay()
            await meta.ensure_listed(ROOT_INODE)
            if run_writer:
                await n.start(wb.run)
            fs = Filesystem(meta, rm, sched, read_only=False, writer=wb)
            try:
                yield fs
            finally:
                n.cancel_scope.cancel()
        store.close()


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
