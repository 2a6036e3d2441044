"""DiskCache (issue 15.2): chunks on disk under a limit enforced at every insertion, keyed by URL + whirlpool,
surviving a new instance (a remount); and the reader over it: a re-read after a "remount" costs no call."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import trio
import trio.testing

from fichierfs.chunks import ChunkCache
from fichierfs.diskcache import DiskCache
from fichierfs.reader import ReadManager
from tests.unit.test_reader import CS, URL, FakeScheduler, blob

KiB, MiB = 1 << 10, 1 << 20


async def read_all(rm: ReadManager, url: str, size: int, checksum: str, step: int = 128 * KiB) -> bytes:
    h = rm.open(url, size, checksum)
    out = bytearray()
    try:
        for off in range(0, size, step):
            out += await h.read(off, step)
    finally:
        h.close()
    return bytes(out)


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_limit_is_enforced_at_every_insertion(tmp_path: Path) -> None:
    dc = DiskCache(tmp_path / "c", 10 * CS, CS)
    key = dc.key(URL, "ab" * 64)
    for i in range(25):
        assert dc.put(key, i, bytes([i]) * CS)
        on_disk = sum(p.stat().st_size for p in _files(tmp_path / "c"))
        assert on_disk <= 10 * CS and dc.cached_bytes == on_disk
    st = dc.statistics()
    assert st["chunks"] == 10 and st["evictions"] == 15
    assert dc.get(key, 0) is None and dc.get(key, 24) == bytes([24]) * CS


def test_lru_order_and_contents_survive_a_new_instance(tmp_path: Path) -> None:
    dc = DiskCache(tmp_path / "c", 4 * CS, CS)
    key = dc.key(URL, "cd" * 64)
    for i in range(4):
        dc.put(key, i, bytes([i]) * CS)
        os.utime(dc._path(key, i), (1000 + i, 1000 + i))
    assert dc.get(key, 0) == bytes([0]) * CS  # 0 is now the most recent (mtime touched)
    again = DiskCache(tmp_path / "c", 4 * CS, CS)  # a remount
    assert again.cached_bytes == 4 * CS
    again.put(key, 9, b"x" * CS)  # evicts the least recent: chunk 1
    assert (key, 1) not in again and (key, 0) in again and again.get(key, 0) == bytes([0]) * CS
    smaller = DiskCache(tmp_path / "c", 2 * CS, CS)  # a lower limit applies at start
    assert smaller.cached_bytes == 2 * CS == sum(p.stat().st_size for p in _files(tmp_path / "c"))


def test_another_whirlpool_is_another_key_and_files_are_private(tmp_path: Path) -> None:
    dc = DiskCache(tmp_path / "c", 8 * CS, CS)
    old, new = dc.key(URL, "aa" * 64), dc.key(URL, "bb" * 64)
    assert old != new
    dc.put(old, 0, b"old" * 100)
    assert dc.get(new, 0) is None
    for p in (tmp_path / "c").rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    tmp = dc._dir(old) / ".1.tmp"
    tmp.write_bytes(b"half")  # a crashed write
    DiskCache(tmp_path / "c", 8 * CS, CS)
    assert not tmp.exists()


async def test_reread_after_remount_costs_no_call(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    size = 3 * MiB + 1234
    data = blob(size, 21)
    checksum = "ee" * 64
    sched = FakeScheduler({URL: data})

    def mount() -> ReadManager:
        return ReadManager(sched, ChunkCache(64 * MiB, CS), chunk_size=CS, readahead_max=MiB,
                           disk=DiskCache(tmp_path / "rc", 64 * MiB, CS))

    async with mount() as rm:
        h = rm.open(URL, size, checksum)
        assert await h.read(0, 64 * KiB) == data[: 64 * KiB]  # a head: its first window lands on disk
        h.close()
        assert await read_all(rm, URL, size, checksum) == data
        await trio.sleep(1)
    calls, down = len(sched.calls), sched.downloaded()
    async with mount() as rm:  # remount: empty memory, same cache directory
        rm.open(URL, size, checksum).close()
        assert await read_all(rm, URL, size, checksum, step=100 * KiB) == data
        h = rm.open(URL, size, checksum)
        for off in (2 * MiB + 5, 17, 3 * MiB):  # random reads are served from the disk too
            assert await h.read(off, 4096) == data[off : off + 4096]
        h.close()
        assert rm.statistics()["disk_read_bytes"] >= size
    assert len(sched.calls) == calls and sched.downloaded() == down, "0 token calls, 0 bytes after remount"
    async with mount() as rm:  # the file changed remotely: new whirlpool, never the stale bytes
        sched.files[URL] = changed = blob(size, 22)
        assert await read_all(rm, URL, size, "ff" * 64) == changed
    assert sched.token_calls() > 0 and sched.downloaded() >= down + size
