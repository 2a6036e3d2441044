"""build_core: the product's one assembly, over the in-process emulator (limits ON, MockClock).

The rigs of the other core tests use it too; these tests pin what it wires from Options and
what it does at start and at exit (remote root, read-only, rate history across processes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from fichierfs.config import Options
from fichierfs.core import budgets_from, build_core
from fichierfs.meta import ROOT_INODE
from fichierfs.scheduler import Budgets
from tests.conftest import API_KEY

MiB = 1 << 20


async def _names(fs, ino: int = ROOT_INODE) -> list[str]:
    fh = await fs.opendir(ino)
    try:
        return [e.name for e in fs.readdir(fh, 0)]
    finally:
        fs.releasedir(fh)


def test_budgets_scale_every_spacing_but_not_the_stall_limit() -> None:
    b = budgets_from(Options(budget_scale=0.1, stall_limit=12.0))
    assert b.min_interval == pytest.approx(Budgets().min_interval * 0.1)
    assert b.same_folder_interval == pytest.approx(Budgets().same_folder_interval * 0.1)
    assert b.stall_limit == 12.0  # a user-facing wait, not an API spacing


async def test_options_reach_every_part(emu, tmp_path: Path, autojump_clock) -> None:
    emu.put_file(0, "a.txt", b"a")
    options = Options(
        read_only=True, dir_cache_time=42.0, statfs_ttl=99.0, token_ttl=77.0, memory_budget=8 * MiB,
        chunk_size=512 << 10, readahead_max=2 * MiB, write_back_delay=9.0, max_uploads=2, budget_scale=2.0,
    )
    async with build_core(options, emu.transport(), API_KEY, store_dir=tmp_path / "s") as core:
        assert core.fs.read_only and core.fs.statfs_ttl == 99.0
        assert core.meta.dir_ttl == 42.0 and core.reader.token_ttl == 77.0
        assert core.cache.chunk_size == 512 << 10 and core.reader.max_chunks == 4
        assert core.writer.delay == 9.0 and core.writer.max_uploads == 2
        assert core.scheduler.budgets == budgets_from(options)
        assert core.fs.policy is not None  # --thumbnails cached (the default) installs the storm policy
        assert (tmp_path / "s" / "store.db").exists()
        # the root is listed before build_core returns (a bad key fails the mount here), once
        assert emu.stats()["calls"]["folder/ls"] == 1
        assert await _names(core.fs) == ["a.txt"]
        assert emu.stats()["calls"]["folder/ls"] == 1


async def test_remote_folder_becomes_the_root(emu, tmp_path: Path, autojump_clock) -> None:
    a = emu.make_folder(0, "a")
    b = emu.make_folder(a, "b")
    emu.put_file(b, "deep.txt", b"deep")
    emu.put_file(0, "top.txt", b"top")
    options = Options(remote_folder="/a/b")
    async with build_core(options, emu.transport(), API_KEY, store_dir=tmp_path / "s") as core:
        assert core.meta.get(ROOT_INODE).folder_id == b
        assert await _names(core.fs) == ["deep.txt"]


async def test_rate_history_keeps_a_remount_under_the_folder_limit(emu, tmp_path: Path, autojump_clock) -> None:
    """A second process listing the root within 30 s of the first would earn a flood lock (§4)."""
    history = tmp_path / "rate.json"
    emu.put_file(0, "x", b"x")
    # without persisted listings (a remount with them lists nothing: test below)
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "s", history=history,
                          persist_metadata=False):
        t_first = trio.current_time()
    saved = json.loads(history.read_text())
    assert saved["history"]["folders"]["0"] < 1.0  # the root was just listed
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "s", history=history,
                          persist_metadata=False):
        t_second = trio.current_time()
    assert t_second - t_first >= Budgets().same_folder_interval - 1.0  # waited out the folder's budget
    assert emu.stats()["calls"]["folder/ls"] == 2 and emu.stats()["flood_locks"] == 0


async def test_writer_runs_only_on_a_writable_mount(emu, tmp_path: Path, autojump_clock) -> None:
    async with build_core(Options(read_only=True), emu.transport(), API_KEY, store_dir=tmp_path / "r") as core:
        assert core.writer._nursery is None  # replayed, not started
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "w") as core:
        assert core.writer._nursery is not None
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "w", start_writer=False) as core:
        assert core.writer._nursery is None


async def test_remount_serves_persisted_listings_without_listing(emu, tmp_path: Path, autojump_clock) -> None:
    d = emu.make_folder(0, "d")
    emu.put_file(d, "x.txt", b"x")
    emu.put_file(0, "top.txt", b"top")
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "s") as core:
        assert await _names(core.fs) == ["d", "top.txt"]
        dd = await core.fs.lookup(ROOT_INODE, "d")
        assert [e.name for e in core.fs.readdir(await core.fs.opendir(dd.ino), 0)] == ["x.txt"]
    listed = emu.stats()["calls"]["folder/ls"]
    async with build_core(Options(), emu.transport(), API_KEY, store_dir=tmp_path / "s") as core:
        assert await _names(core.fs) == ["d", "top.txt"]
        again = await core.fs.lookup(ROOT_INODE, "d")
        assert again.ino == dd.ino  # stable inode
        assert [e.name for e in core.fs.readdir(await core.fs.opendir(again.ino), 0)] == ["x.txt"]
    assert emu.stats()["calls"]["folder/ls"] == listed  # 0 listings on the remount
    assert emu.stats()["calls"]["file/info"] == 1  # the key check
