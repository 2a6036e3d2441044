"""The FUSE-free core (vfs) over scheduler + reader + the in-process emulator, limits ON."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator

import pytest
import trio

from fichierfs.config import Options
from fichierfs.core import build_core
from fichierfs.errors import FloodLocked
from fichierfs.meta import ROOT_INODE, NoEntry
from fichierfs.vfs import Filesystem, FsError
from tests.conftest import API_KEY

MiB = 1 << 20


@pytest.fixture
async def fs(emu, tmp_path) -> AsyncIterator[Filesystem]:
    """The product's core (build_core), read-only; the root is listed on first use, after the
    test has put its files in the emulator."""
    options = Options(read_only=True, memory_budget=16 * MiB, chunk_size=1 * MiB, readahead_max=8 * MiB)
    async with build_core(options, emu.transport(), API_KEY, store_dir=tmp_path / "store", list_root=False) as core:
        yield core.fs


async def _names(fs: Filesystem, ino: int) -> list[str]:
    fh = await fs.opendir(ino)
    try:
        return [e.name for e in fs.readdir(fh, 0)]
    finally:
        fs.releasedir(fh)


async def test_browse_and_read(fs: Filesystem, emu, autojump_clock) -> None:
    d = emu.make_folder(0, "photos")
    data = os.urandom(3 * MiB + 123)
    emu.put_file(d, "a.jpg", data)
    emu.put_file(0, "readme.txt", b"hello\n")
    assert await _names(fs, ROOT_INODE) == ["photos", "readme.txt"]
    photos = await fs.lookup(ROOT_INODE, "photos")
    assert photos.mode & 0o040000
    a = await fs.lookup(photos.ino, "a.jpg")
    assert a.size == len(data) and a.mode & 0o100000 and not a.mode & 0o222
    fh = await fs.open(a.ino, os.O_RDONLY)
    assert await fs.read(fh, 0, 4096) == data[:4096]
    assert await fs.read(fh, 2 * MiB - 10, 100) == data[2 * MiB - 10 : 2 * MiB + 90]
    assert await fs.read(fh, len(data) - 5, 4096) == data[-5:]
    assert await fs.read(fh, len(data) + 10, 4096) == b""
    fs.release(fh)
    calls = emu.stats()["calls"]
    assert calls["folder/ls"] == 2 and calls["download/get_token"] == 1 and calls["file/info"] == 0


async def test_readdir_offsets_are_stable(fs: Filesystem, emu, autojump_clock) -> None:
    for i in range(10):
        emu.put_file(0, f"f{i}", b"x")
    fh = await fs.opendir(ROOT_INODE)
    first = list(fs.readdir(fh, 0))[:4]
    rest = list(fs.readdir(fh, first[-1].next_offset))
    assert [e.name for e in first + rest] == [f"f{i}" for i in range(10)]
    fs.releasedir(fh)


async def test_errors(fs: Filesystem, emu, autojump_clock) -> None:
    emu.put_file(0, "file", b"x")
    f = await fs.lookup(ROOT_INODE, "file")
    with pytest.raises(NoEntry) as e:
        await fs.lookup(ROOT_INODE, "nope")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(FsError) as e2:
        await fs.lookup(f.ino, "x")
    assert e2.value.errno == errno.ENOTDIR
    with pytest.raises(FsError) as e3:
        await fs.open(f.ino, os.O_WRONLY)
    assert e3.value.errno == errno.EROFS
    with pytest.raises(FsError) as e4:
        await fs.opendir(f.ino)
    assert e4.value.errno == errno.ENOTDIR
    with pytest.raises(FsError) as e5:
        fs.getxattr(f.ino, "user.other")
    assert e5.value.errno == errno.ENODATA


async def test_xattrs_and_statfs_cached(fs: Filesystem, emu, autojump_clock) -> None:
    url = emu.put_file(0, "x.bin", b"abc")
    x = await fs.lookup(ROOT_INODE, "x.bin")
    assert fs.getxattr(x.ino, "user.fichier.url") == url.encode()
    assert len(fs.getxattr(x.ino, "user.fichier.whirlpool")) == 128
    s1 = await fs.statfs()
    for _ in range(50):
        assert await fs.statfs() == s1
    await trio.sleep(400)
    await fs.statfs()
    assert emu.stats()["calls"]["user/info"] == 2  # once per statfs_ttl (≥ 5 min, §4)


async def test_cached_data_served_while_flood_locked(fs: Filesystem, emu, autojump_clock) -> None:
    data = os.urandom(2 * MiB)
    emu.put_file(0, "cached.bin", data)
    emu.put_file(0, "other.bin", b"other")
    c = await fs.lookup(ROOT_INODE, "cached.bin")
    o = await fs.lookup(ROOT_INODE, "other.bin")
    fh = await fs.open(c.ino, os.O_RDONLY)
    assert await fs.read(fh, 0, 1 * MiB) == data[: 1 * MiB]
    emu.lock_for(3600)  # the account is flood-locked from now on
    emu.inject("download/get_token", "flood")
    fh2 = await fs.open(o.ino, os.O_RDONLY)
    with pytest.raises(FloodLocked) as exc:  # needs a new token: EAGAIN, not a hang
        await fs.read(fh2, 0, 5)
    assert exc.value.errno == errno.EAGAIN
    assert await fs.read(fh, 0, 1 * MiB) == data[: 1 * MiB]  # cached: still served
    assert fs.getattr(c.ino).size == len(data)  # metadata too
    assert await _names(fs, ROOT_INODE) == ["cached.bin", "other.bin"]


async def test_status_document_on_root(fs: Filesystem, emu, autojump_clock) -> None:
    import json

    from fichierfs.vfs import STATUS_XATTR

    emu.put_file(0, "s.txt", b"status")
    await fs.lookup(ROOT_INODE, "s.txt")
    assert STATUS_XATTR in fs.listxattr(ROOT_INODE)
    doc = json.loads(fs.getxattr(ROOT_INODE, STATUS_XATTR))
    assert doc["api"]["calls"]["folder/ls"] == 1
    assert doc["api"]["breaker"] == "closed"
    assert doc["meta"]["listings"] == 1 and "token_calls" in doc["reader"]


async def test_thumbnailer_policy_keeps_to_local_data(fs: Filesystem, emu, autojump_clock, tmp_path) -> None:
    from fichierfs.storm import ProcessPolicy

    proc = tmp_path / "proc"
    for pid, comm in ((100, "tumblerd"), (200, "cp")):
        (proc / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "task" / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "status").write_text(f"Name:\t{comm}\nTgid:\t{pid}\n")
    fs.policy = ProcessPolicy("cached", proc=proc)
    emu.put_file(0, "pic.png", b"\x89PNG" + b"x" * 1000)
    pic = await fs.lookup(ROOT_INODE, "pic.png")
    with pytest.raises(FsError) as e:
        await fs.open(pic.ino, os.O_RDONLY, pid=100)  # a thumbnailer, nothing local: refused
    assert e.value.errno == errno.EACCES
    assert emu.stats()["calls"]["download/get_token"] == 0
    fh = await fs.open(pic.ino, os.O_RDONLY, pid=200)  # an ordinary program downloads it
    assert (await fs.read(fh, 0, 4)) == b"\x89PNG"
    fs.release(fh)
    fh = await fs.open(pic.ino, os.O_RDONLY, pid=100)  # now local: the thumbnailer may read it
    assert (await fs.read(fh, 0, 4)) == b"\x89PNG"
    fs.release(fh)
