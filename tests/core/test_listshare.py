"""Two mounts of one account over one host budget file: a folder changed through one mount is
updated on the other without re-listing (fichierfs.listshare), and attributes set on the first
reach files the second never listed (fichierfs.attrshare). Asserted from the emulator's counters."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from fichierfs.budget import HostBudget, namespace
from fichierfs.config import Options
from fichierfs.core import Core, build_core
from fichierfs.meta import ROOT_INODE
from tests.conftest import API_KEY
from tests.core.conftest import listings
from tests.core.write_rig import names, read_all, sync, write_file

MTIME_NS = 981173106789000000  # touch -d '2001-02-03 04:05:06.789'


@asynccontextmanager
async def _two_mounts(emu: Any, tmp_path: Path) -> AsyncIterator[tuple[Core, Core]]:
    """Mounts A and B of one account over one host budget file (two cache dirs)."""
    ns = namespace("http://emulator/v1")
    options = Options(write_back_delay=0.5, dir_cache_time=600.0)
    ha = HostBudget(tmp_path / "host.sqlite3", ns, trio.current_time)
    hb = HostBudget(tmp_path / "host.sqlite3", ns, trio.current_time)
    try:
        async with build_core(options, emu.transport(), API_KEY, store_dir=tmp_path / "a", shared=ha,
                              account="acct") as a, \
                build_core(options, emu.transport(), API_KEY, store_dir=tmp_path / "b", shared=hb,
                           account="acct") as b:
            yield a, b
    finally:
        await ha.aclose()
        await hb.aclose()


async def test_a_change_on_one_mount_updates_the_other_without_listing(emu, tmp_path: Path, write_clock) -> None:
    emu.put_file(0, "keep.txt", b"keep")
    emu.put_file(0, "old.txt", b"old")
    emu.put_file(0, "gone.txt", b"gone")
    async with _two_mounts(emu, tmp_path) as (a, b):
        assert sorted(await names(b.fs)) == ["gone.txt", "keep.txt", "old.txt"]
        assert listings(emu) == 1  # B took A's listing of the root (shared)
        stale = await b.scheduler.call(b.client.folder_ls, 0, files=True, coalesce=False)  # before A's changes
        before = listings(emu)
        new = await write_file(a.fs, ROOT_INODE, "new.txt", b"new content")
        await a.fs.setattr(new, mtime_ns=MTIME_NS, mode=0o600)  # rsync -a / touch -d before the upload
        d = (await a.fs.mkdir(ROOT_INODE, "dir", 0o755)).ino
        await write_file(a.fs, d, "inner.txt", b"inner")
        await a.fs.mkdir(ROOT_INODE, "tmpdir", 0o755)
        await a.fs.rename(ROOT_INODE, "old.txt", ROOT_INODE, "renamed.txt")
        await a.fs.unlink(ROOT_INODE, "gone.txt")
        await write_file(a.fs, ROOT_INODE, "keep.txt", b"kept, new content")  # in place: a new url
        await sync(a.fs)
        await a.fs.rmdir(ROOT_INODE, "tmpdir")
        await sync(a.fs)
        want = ["dir", "keep.txt", "new.txt", "renamed.txt"]
        assert sorted(await names(a.fs)) == want
        with trio.fail_after(30):
            while sorted(await names(b.fs)) != want:
                await trio.sleep(0.2)
        assert listings(emu) == before  # B updated its listing from A's changes: 0 listing calls
        b.meta.merge(ROOT_INODE, stale)  # a listing that left before A's changes lands after them
        assert sorted(await names(b.fs)) == want  # A's recent changes win over it
        bdir = (await b.fs.lookup(ROOT_INODE, "dir")).ino
        with trio.fail_after(30):  # a folder A created: B knows it empty, then gets what went in it
            while await names(b.fs, bdir) != ["inner.txt"]:
                await trio.sleep(0.2)
        ino = (await b.fs.lookup(ROOT_INODE, "new.txt")).ino
        assert await read_all(b.fs, ino) == b"new content"
        with trio.fail_after(30):  # the times and mode set on A reach a file B never listed
            while b.fs.getattr(ino).mtime_ns != MTIME_NS:
                await trio.sleep(0.2)
        assert b.fs.getattr(ino).mode & 0o777 == 0o600
        keep = (await b.fs.lookup(ROOT_INODE, "keep.txt")).ino
        assert await read_all(b.fs, keep) == b"kept, new content"
        renamed = await b.fs.lookup(ROOT_INODE, "renamed.txt")
        assert await read_all(b.fs, renamed.ino) == b"old"
        assert b.meta.statistics()["shared_changes_applied"] >= 5
        assert emu.stats()["flood_locks"] == 0
        assert listings(emu) == before


async def test_a_file_one_mount_uploaded_and_the_other_rewrote_shows_the_new_copy_on_both(
        emu, tmp_path: Path, write_clock) -> None:
    """Breaker (issue 14): A uploads r.txt, B rewrites it (a new url; the old one deleted). A must show B's copy
    under the plain name at once, not keep its own deleted copy for the 300 s pin with B's as "(dup …)"; an
    append on A then builds on B's content and leaves ONE r.txt on 1fichier."""
    async with _two_mounts(emu, tmp_path) as (a, b):
        assert await names(b.fs) == []
        await write_file(a.fs, ROOT_INODE, "r.txt", b"v1")
        await sync(a.fs)
        with trio.fail_after(30):
            while await names(b.fs) != ["r.txt"]:
                await trio.sleep(0.2)
        assert await read_all(b.fs, (await b.fs.lookup(ROOT_INODE, "r.txt")).ino) == b"v1"
        await write_file(b.fs, ROOT_INODE, "r.txt", b"v2-from-B")
        await sync(b.fs)
        with trio.fail_after(30):
            while True:
                shown = await names(a.fs)
                ino = (await a.fs.lookup(ROOT_INODE, "r.txt")).ino
                if shown == ["r.txt"] and await read_all(a.fs, ino) == b"v2-from-B":
                    break
                await trio.sleep(0.2)
        fh = await a.fs.open(ino, os.O_WRONLY | os.O_APPEND)
        a.fs.write(fh, len(b"v2-from-B"), b"+A")
        await a.fs.flush(fh)
        a.fs.release(fh)
        await sync(a.fs)
        assert [(f["filename"], f["size"]) for f in emu.list_files(0)] == [("r.txt", len(b"v2-from-B+A"))]
        assert emu.stats()["flood_locks"] == 0


async def test_a_file_emptied_on_one_mount_leaves_the_other(emu, tmp_path: Path, write_clock) -> None:
    """Breaker (issue 14): `truncate -s 0` on A deletes the remote copy (empty files stay local, §8.8); B must drop
    the entry, not keep listing the old size and fail to read it (ENOENT)."""
    emu.put_file(0, "t.txt", b"t" * 5000)
    async with _two_mounts(emu, tmp_path) as (a, b):
        assert await names(b.fs) == ["t.txt"]
        before = listings(emu)
        ino = (await a.fs.lookup(ROOT_INODE, "t.txt")).ino
        await a.fs.setattr(ino, size=0)  # `truncate -s 0 t.txt`: no open handle
        with trio.fail_after(600):  # it hung: the emptied row was never picked up
            await sync(a.fs)
        assert emu.list_files(0) == []
        assert await names(a.fs) == ["t.txt"]  # still here, empty, on the mount that emptied it
        with trio.fail_after(30):
            while await names(b.fs) != []:
                await trio.sleep(0.2)
        assert listings(emu) == before
